/** The page refuses to run a model too large for onnxruntime-web's wasm memory, before reading any byte (no Chromium needed). */
import { describe, expect, it } from "vitest";
import { MAX_RUN_BYTES, openModel, parseInputIds } from "../../web/src/run/run-onnx.js";

/** A Blob-like of a given size whose bytes must never be read. */
function sized(size: number): Blob {
  return {
    size,
    arrayBuffer: () => {
      throw new Error("read");
    },
  } as unknown as Blob;
}

describe("running models on the page: limits", () => {
  it("a model and data over the limit are refused with ARG_INVALID, nothing read", async () => {
    const model = { path: "model.onnx", blob: sized(1000) };
    const err = await openModel({
      model,
      files: [model, { path: "model.onnx.data", blob: sized(MAX_RUN_BYTES) }],
    }).then(
      () => undefined,
      (e: unknown) => e as { code: string; path: string },
    );
    expect(err?.code).toBe("ARG_INVALID");
    expect(err?.path).toBe("model.onnx");
  });

  it("input ids: integers separated by spaces or commas", () => {
    expect(parseInputIds(" 1, 5 9\t13 ")).toEqual([1, 5, 9, 13]);
    for (const bad of ["", "1 -2", "1.5", "a"])
      expect(() => parseInputIds(bad), bad).toThrow(expect.objectContaining({ code: "ARG_INVALID" }));
  });
});

/**
 * The page's merge (mergeModelFiles of verakit/merge over Blobs) in Node (Blobs exist here too), on hostile and
 * broken inputs: each refusal has the code and message `vera merge` gives for the same files, and nothing is
 * produced.
 */
import { copyFileSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { createReferenceBackend, type ComputeBackend } from "../../src/compute/index.js";
import { VeraError } from "../../src/errors.js";
import { importPeft, peftBaseFromOnnx } from "../../src/peft/index.js";
import { parseSafetensors } from "../../src/safetensors/index.js";
import { listLinearWeights, readOnnxModel } from "../../src/onnx/index.js";
import { cliReady, ROOT, tmp, vera } from "./page.js";
import { mergeModelFiles } from "../../src/merge/core/index.js";
import { pathFileAccess, type PathFile } from "../../src/peft/load/memory-file-access.js";

const ONNX = join(ROOT, "fixtures", "onnx");
const ADAPTER = join(ONNX, "adapters", "llama");

/** The files of a folder as the page sees them. */
function folder(dir: string): PathFile[] {
  return readdirSync(dir).map((n) => ({ path: n, file: new Blob([readFileSync(join(dir, n))]) }));
}

/** The llama adapter imported against the model's shapes, as the page and `vera merge` do for a PEFT folder. */
function adapterFor(modelBytes: Uint8Array) {
  const weights = listLinearWeights({ model: readOnnxModel({ bytes: modelBytes }) });
  const peftWeights = parseSafetensors(new Uint8Array(readFileSync(join(ADAPTER, "adapter_model.safetensors"))));
  return importPeft({
    config: readFileSync(join(ADAPTER, "adapter_config.json"), "utf8"),
    weights: peftWeights,
    base: peftBaseFromOnnx({ weights, peftWeights, label: "model.onnx" }),
  }).adapter;
}

/** A copy of llama-dynamo with its files changed by `edit`. */
function brokenCopy(edit: (dir: string) => void): string {
  const dir = join(tmp(), "model");
  mkdirSync(dir);
  for (const n of ["model.onnx", "model.onnx.data"]) copyFileSync(join(ONNX, "llama-dynamo", n), join(dir, n));
  edit(dir);
  return dir;
}

async function pageError(dir: string, backend: ComputeBackend = createReferenceBackend(), signal?: AbortSignal) {
  const files = folder(dir);
  const bytes = new Uint8Array(readFileSync(join(dir, "model.onnx")));
  try {
    await mergeModelFiles({
      files: pathFileAccess(files),
      model: "model.onnx",
      adapter: adapterFor(bytes),
      backend,
      ...(signal ? { signal } : {}),
    });
  } catch (e) {
    if (e instanceof Error && "code" in e) return { code: (e as VeraError).code, message: e.message };
    throw e;
  }
  throw new Error("the merge did not fail");
}

function cliError(dir: string): { code: string; message: string } {
  const r = vera(["merge", join(dir, "model.onnx"), ADAPTER, "-o", join(tmp(), "out.onnx"), "--json"]);
  return JSON.parse(r.stdout).error;
}

describe.skipIf(!cliReady())("the page's merge on broken inputs, against vera merge", () => {
  it("a data file cut short: MERGE_DATA_RANGE", async () => {
    const dir = brokenCopy((d) => {
      const data = readFileSync(join(d, "model.onnx.data"));
      writeFileSync(join(d, "model.onnx.data"), data.subarray(0, 1000));
    });
    const cli = cliError(dir);
    expect(cli.code).toBe("MERGE_DATA_RANGE");
    expect(await pageError(dir)).toEqual({ code: cli.code, message: cli.message });
  });

  it("an external data location leaving the model's folder: IO_UNSAFE_PATH", async () => {
    const dir = brokenCopy((d) => {
      const m = readFileSync(join(d, "model.onnx"));
      // same length, so the protobuf stays well-formed
      writeFileSync(
        join(d, "model.onnx"),
        Buffer.from(m.toString("latin1").split("model.onnx.data").join("../el.onnx.data"), "latin1"),
      );
    });
    const cli = cliError(dir);
    expect(cli.code).toBe("IO_UNSAFE_PATH");
    expect(await pageError(dir)).toEqual({ code: cli.code, message: cli.message });
  });

  it("a backend failure (MERGE_OVERFLOW) and a cancel between weights stop the merge; nothing is produced", async () => {
    const dir = join(ONNX, "llama-dynamo");
    const overflow: ComputeBackend = {
      name: "overflowing",
      merge: async (tasks) => {
        throw new VeraError("MERGE_OVERFLOW", `merged values of ${tasks[0]!.name} overflow`, {
          path: tasks[0]!.name,
        });
      },
    };
    expect((await pageError(dir, overflow)).code).toBe("MERGE_OVERFLOW");
    const ac = new AbortController();
    const ref = createReferenceBackend();
    let calls = 0;
    const stopAfterOne: ComputeBackend = {
      name: "reference",
      merge: async (tasks) => {
        if (++calls === 2) ac.abort();
        return ref.merge(tasks);
      },
    };
    expect(await pageError(dir, stopAfterOne, ac.signal)).toEqual({
      code: "MERGE_ABORTED",
      message: "merge cancelled; no output was written and the input is unchanged",
    });
    expect(calls).toBe(2);
  });
});

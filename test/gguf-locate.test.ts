import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  bytesSource,
  decodeTensor,
  GgmlType,
  GgufErrorCode,
  ggufTensorRanges,
  locateGgufWeights,
  permuteQkRows,
  readGguf,
  writeGguf,
  type GgufValue,
} from "../src/gguf/index.js";
import { loadGgufLoraInputs } from "../src/node/gguf-file.js";
import { asFloat32, parseSafetensors, tensorBytes } from "../src/safetensors/parse.js";

const DIR = join(import.meta.dirname, "..", "fixtures", "gguf");
const BASE = join(DIR, "llama", "base-f32.gguf");
const code = (f: () => unknown) => {
  try {
    f();
  } catch (e) {
    return { code: (e as { code?: string }).code, message: (e as Error).message };
  }
  return { code: "ok", message: "" };
};
const llamaMeta: [string, GgufValue][] = [
  ["general.architecture", { type: 8, value: "llama" }],
  ["llama.attention.head_count", { type: 4, value: 4 }],
];

describe("GGUF container stage for merges: locate the adapted weights", () => {
  it("locates every module of the fixture adapter at the bytes holding its (permuted) HF weight", async () => {
    const bytes = new Uint8Array(readFileSync(BASE));
    const file = await readGguf({ source: bytesSource(bytes) });
    const { adapter } = await loadGgufLoraInputs({ adapter: join(DIR, "vera"), base: BASE });
    const plan = locateGgufWeights({ file, modules: adapter.modules });
    expect(plan.weights).toHaveLength(14);
    const st = parseSafetensors(new Uint8Array(readFileSync(join(DIR, "llama", "model.safetensors"))));
    for (const w of plan.weights) {
      const hf = asFloat32(tensorBytes(st, `${w.module}.weight`));
      const expected = w.permuteHeads
        ? permuteQkRows({ data: hf, rows: w.ne[1]!, rowLength: w.ne[0]!, nHead: w.permuteHeads })
        : hf;
      const got = decodeTensor(bytes.subarray(w.start, w.end), GgmlType.F32);
      expect(Buffer.from(got.buffer).equals(Buffer.from(expected.slice().buffer)), w.name).toBe(true);
    }
    expect(plan.weights.filter((w) => w.permuteHeads).map((w) => [w.name, w.permuteHeads])).toEqual([
      ["blk.0.attn_k.weight", 2],
      ["blk.0.attn_q.weight", 4],
      ["blk.1.attn_k.weight", 2],
      ["blk.1.attn_q.weight", 4],
    ]);
    const all = ggufTensorRanges(file);
    expect(all).toHaveLength(file.tensors.length);
    expect(all.every((r) => r.end <= bytes.byteLength && !r.quantized)).toBe(true);
  });

  it("refuses quantized weights: merge into the F16 GGUF, then quantize with llama.cpp", async () => {
    const bytes = writeGguf({
      metadata: llamaMeta,
      tensors: [
        { name: "blk.0.attn_q.weight", type: GgmlType.Q8_0, ne: [32, 32], data: new Uint8Array(34 * 32) },
        { name: "blk.0.attn_v.weight", type: GgmlType.F16, ne: [32, 32], data: new Uint8Array(2 * 32 * 32) },
      ],
    });
    const file = await readGguf({ source: bytesSource(bytes) });
    const q = { name: "model.layers.0.self_attn.q_proj", inFeatures: 32, outFeatures: 32 };
    const v = { name: "model.layers.0.self_attn.v_proj", inFeatures: 32, outFeatures: 32 };
    const r = code(() => locateGgufWeights({ file, modules: [q, v] }));
    expect(r.code).toBe(GgufErrorCode.GGUF_QUANTIZED);
    expect(r.message).toContain("blk.0.attn_q.weight (Q8_0)");
    expect(r.message).toContain("merge into the F16 GGUF, then quantize with llama.cpp");
    expect(locateGgufWeights({ file, modules: [v] }).weights.map((w) => [w.name, w.dtype])).toEqual([
      ["blk.0.attn_v.weight", "F16"],
    ]);
  });

  it("names modules without a weight (tied lm_head included), refuses other shapes and unknown architectures", async () => {
    const bytes = writeGguf({
      metadata: llamaMeta,
      tensors: [
        { name: "token_embd.weight", type: GgmlType.F32, ne: [32, 8], data: new Uint8Array(4 * 256) },
        { name: "blk.0.ffn_up.weight", type: GgmlType.F32, ne: [32, 48], data: new Uint8Array(4 * 32 * 48) },
      ],
    });
    const file = await readGguf({ source: bytesSource(bytes) });
    const r = code(() =>
      locateGgufWeights({
        file,
        modules: [
          { name: "lm_head", inFeatures: 32, outFeatures: 8 },
          { name: "model.layers.0.mlp.down_proj", inFeatures: 48, outFeatures: 32 },
        ],
      }),
    );
    expect(r.code).toBe(GgufErrorCode.GGUF_MODULE_UNSUPPORTED);
    expect(r.message).toContain("lm_head (output.weight is absent: tied to token_embd)");
    expect(r.message).toContain("model.layers.0.mlp.down_proj (blk.0.ffn_down.weight absent)");
    expect(
      code(() =>
        locateGgufWeights({ file, modules: [{ name: "model.layers.0.mlp.up_proj", inFeatures: 48, outFeatures: 32 }] }),
      ).code,
    ).toBe(GgufErrorCode.GGUF_BASE_MISMATCH);
    const mamba = await readGguf({
      source: bytesSource(
        writeGguf({ metadata: [["general.architecture", { type: 8, value: "mamba" }]], tensors: [] }),
      ),
    });
    expect(code(() => locateGgufWeights({ file: mamba, modules: [] })).code).toBe(
      GgufErrorCode.GGUF_UNKNOWN_ARCHITECTURE,
    );
  });
});

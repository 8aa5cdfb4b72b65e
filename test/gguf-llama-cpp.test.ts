import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getLlama, LlamaLogLevel, type Llama, type LlamaModel } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bytesSource, exportGgufLora, locateGgufWeights, permuteQkRows, readGguf } from "../src/gguf/index.js";
import { mergeGguf } from "../src/merge/index.js";
import { projectionsFor } from "../src/projections/for-adapter.js";
import { loadGgufLoraInputs } from "../src/node/gguf-file.js";
import { llamaCppLogProbs, logSoftmax } from "./llama-cpp-helpers.js";

/**
 * A real consumer: llama.cpp (node-llama-cpp's prebuilt binary, CPU) loads the gguf-py Llama base and the
 * adapter verakit writes; its next-token log-probabilities are compared with PEFT's (fixtures/gguf/logits.json).
 * The KV cache is kept in F32 (llama.cpp's default F16 cache alone moves log-probs by ~4e-3 here).
 */
const DIR = join(import.meta.dirname, "..", "fixtures", "gguf");
const BASE = join(DIR, "llama", "base-f32.gguf");
const logits = JSON.parse(readFileSync(join(DIR, "logits.json"), "utf8")) as {
  tokens: number[];
  base: number[][];
  vera: number[][];
};
const tmp = mkdtempSync(join(tmpdir(), "vk-llama-"));
const QWEN = join(DIR, "qwen2");
const qwenLogits = JSON.parse(readFileSync(join(QWEN, "logits.json"), "utf8")) as typeof logits;
let llama: Llama;
let model: LlamaModel;
let qwen: LlamaModel;

// Loading llama.cpp's native library and the model is a process-level start (about 2 s on this 2-core machine,
// more when it is loaded): it gets its own 60 s limit. Every test below runs under the default 5 s.
beforeAll(async () => {
  llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
  model = await llama.loadModel({ modelPath: BASE });
  qwen = await llama.loadModel({ modelPath: join(QWEN, "base-f32.gguf") });
}, 60_000);
afterAll(async () => {
  await model?.dispose();
  await qwen?.dispose();
  await llama?.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

/** llama.cpp's next-token log-probabilities at every position, with or without a LoRA adapter file. */
async function logProbs(lora?: string, on: LlamaModel = model, tokens = logits.tokens): Promise<number[][]> {
  return llamaCppLogProbs({ model: on, tokens, vocab: logits.base[0]!.length, ...(lora ? { lora } : {}) });
}

function maxDiff(a: number[][], b: number[][]): number {
  let d = 0;
  a.forEach((row, i) => {
    const ref = logSoftmax(b[i]!);
    row.forEach((x, j) => (d = Math.max(d, Math.abs(x - ref[j]!))));
  });
  return d;
}

async function exported(type: "f32" | "f16", dir = DIR, base = BASE): Promise<string> {
  const inputs = await loadGgufLoraInputs({ adapter: join(dir, "vera"), base });
  const path = join(tmp, `adapter-${type}-${inputs.base.architecture}.gguf`);
  writeFileSync(path, exportGgufLora({ adapter: inputs.adapter, base: inputs.base, type }).bytes);
  return path;
}

describe("llama.cpp (node-llama-cpp 3.21.1) runs the exported GGUF LoRA", () => {
  it("the base alone gives PEFT's base log-probabilities (max |diff| < 1e-4 over 10 positions x 288 tokens)", async () => {
    expect(maxDiff(await logProbs(), logits.base)).toBeLessThan(1e-4);
  });

  it("base + f32 adapter gives PEFT's VeRA log-probabilities (< 1e-4), far from the base's (> 1)", async () => {
    const got = await logProbs(await exported("f32"));
    expect(maxDiff(got, logits.vera)).toBeLessThan(1e-4);
    expect(maxDiff(got, logits.base)).toBeGreaterThan(1);
  });

  it("base + f16 adapter agrees with PEFT to the f16 rounding of lora_a / lora_b (< 1e-2)", async () => {
    const got = await logProbs(await exported("f16"));
    expect(maxDiff(got, logits.vera)).toBeLessThan(1e-2);
  });

  it("a GGUF merged at the weights locateGgufWeights finds (delta permuted where it says) gives PEFT's VeRA log-probs", async () => {
    const bytes = new Uint8Array(readFileSync(BASE));
    const file = await readGguf({ source: bytesSource(bytes) });
    const { adapter } = await loadGgufLoraInputs({ adapter: join(DIR, "vera"), base: BASE });
    const plan = locateGgufWeights({ file, modules: adapter.modules });
    const { A, B } = projectionsFor(adapter);
    const r = adapter.rank;
    for (const w of plan.weights) {
      const m = adapter.modules.find((x) => x.name === w.module)!;
      const [nIn, nOut] = [m.inFeatures, m.outFeatures];
      let delta: Float32Array = new Float32Array(nOut * nIn);
      for (let o = 0; o < nOut; o++)
        for (let i = 0; i < nIn; i++) {
          let s = 0;
          for (let k = 0; k < r; k++) s += B[o * r + k]! * m.lambdaD[k]! * A[k * adapter.maxIn + i]!;
          delta[o * nIn + i] = m.lambdaB[o]! * s;
        }
      if (w.permuteHeads) delta = permuteQkRows({ data: delta, rows: nOut, rowLength: nIn, nHead: w.permuteHeads });
      const weight = new Float32Array(bytes.buffer, bytes.byteOffset + w.start, nOut * nIn);
      for (let j = 0; j < weight.length; j++) weight[j] = weight[j]! + delta[j]!;
    }
    const path = join(tmp, "merged.gguf");
    writeFileSync(path, bytes);
    const merged = await llama.loadModel({ modelPath: path });
    try {
      expect(maxDiff(await logProbs(undefined, merged), logits.vera)).toBeLessThan(1e-4);
    } finally {
      await merged.dispose();
    }
  });

  for (const [name, base, adapter, ref] of [
    ["llama (q/k permuted)", BASE, join(DIR, "vera"), logits],
    ["qwen2", join(QWEN, "base-f32.gguf"), join(QWEN, "vera"), qwenLogits],
  ] as const)
    it(`${name}: the GGUF vera merge writes (mergeGguf, the shared merge stages) gives PEFT's VeRA log-probs (< 1e-4)`, async () => {
      const path = join(tmp, `vera-merge-${name.split(" ")[0]}.gguf`);
      await mergeGguf({ model: base, adapter, output: path, durable: false });
      const merged = await llama.loadModel({ modelPath: path });
      try {
        const got = await logProbs(undefined, merged, ref.tokens);
        expect(maxDiff(got, ref.vera)).toBeLessThan(1e-4);
        expect(maxDiff(got, ref.base)).toBeGreaterThan(1);
      } finally {
        await merged.dispose();
      }
    });

  describe("a split GGUF (3 parts) merged by mergeGguf", () => {
    let parts: LlamaModel | undefined;
    let whole: LlamaModel | undefined;
    // two merges and two more model loads: a start of their own, like the one above
    beforeAll(async () => {
      const out = join(tmp, "vera-merge-split");
      await mergeGguf({
        model: join(DIR, "llama-split", "base-f32-00001-of-00003.gguf"),
        adapter: join(DIR, "vera"),
        output: out,
        durable: false,
      });
      const single = join(tmp, "vera-merge-single.gguf");
      await mergeGguf({ model: BASE, adapter: join(DIR, "vera"), output: single, durable: false });
      parts = await llama.loadModel({ modelPath: join(out, "base-f32-00001-of-00003.gguf") });
      whole = await llama.loadModel({ modelPath: single });
    }, 60_000);
    afterAll(async () => {
      await parts?.dispose();
      await whole?.dispose();
    });

    it("loads by its first part and gives the merged single file's log-probs (and PEFT's)", async () => {
      const got = await logProbs(undefined, parts!);
      const want = await logProbs(undefined, whole!);
      let d = 0;
      got.forEach((row, i) => row.forEach((x, j) => (d = Math.max(d, Math.abs(x - want[i]![j]!)))));
      expect(d).toBeLessThan(1e-6);
      expect(maxDiff(got, logits.vera)).toBeLessThan(1e-4);
    });
  });

  it("qwen2 (q/k not permuted, q/k/v biases): base alone and base + f32 adapter give PEFT's log-probs (< 1e-4)", async () => {
    const base = join(QWEN, "base-f32.gguf");
    expect(maxDiff(await logProbs(undefined, qwen, qwenLogits.tokens), qwenLogits.base)).toBeLessThan(1e-4);
    const got = await logProbs(await exported("f32", QWEN, base), qwen, qwenLogits.tokens);
    expect(maxDiff(got, qwenLogits.vera)).toBeLessThan(1e-4);
    expect(maxDiff(got, qwenLogits.base)).toBeGreaterThan(1);
  });
});

/**
 * A real consumer of the fused-QKV GGUF files: llama.cpp (node-llama-cpp's prebuilt binary, CPU) loads the zoo's
 * GPT-NeoX, Bloom and Falcon base.gguf (fixtures/zoo/generate.py, convert_hf_to_gguf's layouts: attn_qkv rows
 * reordered), the GGUF `vera merge` writes from the PEFT adapter, and base + the GGUF LoRA `export-gguf-lora` writes;
 * their next-token log-probabilities are compared with PEFT's logits (logits.safetensors). This checks the q/k/v row
 * order the way llama.cpp reads it, not only against merged.gguf.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getLlama, LlamaLogLevel, type Llama } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { exportGgufLora } from "../src/gguf/export-gguf-lora.js";
import { mergeGguf } from "../src/merge/index.js";
import { loadGgufLoraInputs } from "../src/node/gguf-file.js";
import { asFloat32, parseSafetensors, tensorBytes } from "../src/safetensors/parse.js";
import { llamaCppLogProbs, logSoftmax } from "./llama-cpp-helpers.js";

const ZOO = join(import.meta.dirname, "..", "fixtures", "zoo");
const tmp = mkdtempSync(join(tmpdir(), "vk-llama-zoo-"));
let llama: Llama;

// loading llama.cpp's native library is a process-level start: its own 60 s limit, as in gguf-llama-cpp.test.ts
beforeAll(async () => {
  llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
}, 60_000);
afterAll(async () => {
  await llama?.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

/** PEFT's logits of the family's first sequence, as log-softmax rows. */
function reference(family: string, which: "peft" | "base"): { ids: number[]; rows: number[][] } {
  const dir = join(ZOO, family);
  const c = JSON.parse(readFileSync(join(dir, "case.json"), "utf8")) as {
    inputs: Array<{ data: number[] }>;
    logits_shape: [number, number, number];
  };
  const f = parseSafetensors(new Uint8Array(readFileSync(join(dir, "logits.safetensors"))));
  const all = asFloat32(tensorBytes(f, which).slice());
  const [, seq, vocab] = c.logits_shape;
  const rows = [];
  for (let i = 0; i < seq; i++) {
    rows.push(logSoftmax([...all.subarray(i * vocab, (i + 1) * vocab)]));
  }
  return { ids: c.inputs[0]!.data.slice(0, seq), rows };
}

/** llama.cpp's next-token log-probabilities at every position of `ids`, with a LoRA file or none. */
async function logProbs(model: string, ids: number[], vocab: number, lora?: string): Promise<number[][]> {
  const m = await llama.loadModel({ modelPath: model });
  try {
    return await llamaCppLogProbs({ model: m, tokens: ids, vocab, ...(lora ? { lora } : {}) });
  } finally {
    await m.dispose();
  }
}

function maxDiff(a: number[][], b: number[][]): number {
  let d = 0;
  a.forEach((row, i) => row.forEach((x, j) => (d = Math.max(d, Math.abs(x - b[i]![j]!)))));
  return d;
}

// llama.cpp's float32 kernels against torch's: Bloom (ALiBi, embedding layernorm) is 6e-4 off on the base alone
const TOLERANCE: Record<string, number> = { gpt_neox: 2e-4, falcon: 2e-4, bloom: 1.5e-3 };

describe("llama.cpp (node-llama-cpp) runs the zoo's fused-QKV GGUF files", () => {
  for (const family of ["gpt_neox", "bloom", "falcon"]) {
    const tol = TOLERANCE[family]!;
    it(`${family}: base.gguf gives PEFT's base log-probs; the vera merge and base + GGUF LoRA give PEFT's adapted ones`, async () => {
      const dir = join(ZOO, family);
      const base = reference(family, "base");
      const peft = reference(family, "peft");
      const vocab = base.rows[0]!.length;
      expect(maxDiff(await logProbs(join(dir, "base.gguf"), base.ids, vocab), base.rows)).toBeLessThan(tol);
      // the adapter moves the log-probs far beyond the tolerance, so a wrong row order would show
      expect(maxDiff(peft.rows, base.rows)).toBeGreaterThan(20 * tol);

      const merged = join(tmp, `${family}-merged.gguf`);
      await mergeGguf({ model: join(dir, "base.gguf"), adapter: join(dir, "adapter"), output: merged, durable: false });
      expect(maxDiff(await logProbs(merged, peft.ids, vocab), peft.rows)).toBeLessThan(tol);

      const inputs = await loadGgufLoraInputs({ adapter: join(dir, "adapter"), base: join(dir, "base.gguf") });
      const lora = join(tmp, `${family}-lora.gguf`);
      writeFileSync(lora, exportGgufLora({ adapter: inputs.adapter, base: inputs.base, type: "f32" }).bytes);
      expect(maxDiff(await logProbs(join(dir, "base.gguf"), peft.ids, vocab, lora), peft.rows)).toBeLessThan(tol);
    });
  }
});

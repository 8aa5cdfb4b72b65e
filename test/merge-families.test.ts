/**
 * Merges of real PEFT VeRA adapters that carry more than VeRA vectors (a modules_to_save head,
 * trainable biases) or target fused weights by their own names (fixtures/families, see generate.py
 * and MANIFEST.json): into the dynamo ONNX export (run in onnxruntime-node against PEFT's logits) and
 * into the safetensors checkpoint (against PEFT's merge_and_unload + save_pretrained tensors).
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { mergeCheckpoint, mergeOnnx, type MergeReport } from "../src/merge/index.js";
import { parseSafetensors } from "../src/safetensors/parse.js";
import { maxAbsDiff, runModel } from "./onnx-helpers.js";

const FAMILIES = join(__dirname, "../fixtures/families");
const work = mkdtempSync(join(tmpdir(), "vera-families-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

interface FamilyReference {
  input: { name: string; dtype: "int64" | "float32"; shape: number[]; data: number[] };
  reference: number[];
  base: number[];
  adapterKeys: string[];
}

function reference(c: string): FamilyReference {
  return JSON.parse(readFileSync(join(FAMILIES, c, "reference.json"), "utf8")) as FamilyReference;
}

async function logits(model: string, ref: FamilyReference): Promise<Float32Array> {
  const [out] = await runModel(model, { inputs: [ref.input], outputs: ["logits"] });
  return out!;
}

const CASES = ["roberta-seqcls", "vit-cls", "phi3", "gpt-neox"];

describe("ONNX merge of real PEFT adapters with heads, biases and fused modules", () => {
  for (const c of CASES)
    it(`${c}: merged logits within 1e-4 of PEFT's`, async () => {
      const ref = reference(c);
      const model = join(FAMILIES, c, "model.onnx");
      const base = await logits(model, ref);
      expect(maxAbsDiff([base], [ref.base])).toBeLessThan(1e-4);
      // the adapter moves the logits: a merge that dropped part of it would show
      expect(maxAbsDiff([base], [ref.reference])).toBeGreaterThan(0.1);
      const out = join(work, c, "merged.onnx");
      const report: MergeReport = await mergeOnnx({ model, adapter: join(FAMILIES, c, "adapter"), output: out });
      const merged = await logits(out, ref);
      expect(maxAbsDiff([merged], [ref.reference])).toBeLessThan(1e-4);
      const carried = ref.adapterKeys.filter((k) => !/vera_(lambda_[bd]|A|B)$/.test(k));
      expect(report.carried.map((r) => r.tensor).sort()).toEqual(carried.sort());
    });
});

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
import { parseSafetensors, tensorBytes } from "../src/safetensors/parse.js";
import { maxAbsDiff, runModel } from "./onnx-helpers.js";
import { bytesSource, decodeTensor, readGguf } from "../src/gguf/index.js";
import { mergeGguf } from "../src/merge/index.js";

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

/** Every tensor of two safetensors files as float32 values, by name. */
function f32Tensors(path: string): Map<string, Float32Array> {
  const f = parseSafetensors(new Uint8Array(readFileSync(path)));
  const out = new Map<string, Float32Array>();
  for (const [name, info] of f.tensors) {
    expect(info.dtype).toBe("F32");
    const b = tensorBytes(f, name).slice();
    out.set(name, new Float32Array(b.buffer, 0, b.byteLength / 4));
  }
  return out;
}

describe("checkpoint merge of real PEFT adapters with heads, biases and fused modules", () => {
  for (const c of CASES)
    it(`${c}: every merged tensor equals PEFT's merge_and_unload (float rounding)`, async () => {
      const out = join(work, c, "checkpoint");
      const report = await mergeCheckpoint({
        model: join(FAMILIES, c, "base"),
        adapter: join(FAMILIES, c, "adapter"),
        output: out,
      });
      const ours = f32Tensors(join(out, "model.safetensors"));
      const peft = f32Tensors(join(FAMILIES, c, "merged.safetensors"));
      const base = f32Tensors(join(FAMILIES, c, "base", "model.safetensors"));
      expect([...ours.keys()].sort()).toEqual([...peft.keys()].sort());
      let changed = 0;
      for (const [name, want] of peft) {
        const got = ours.get(name)!;
        const b = base.get(name)!;
        let err = 0;
        let moved = 0;
        for (let i = 0; i < want.length; i++) {
          err = Math.max(err, Math.abs(got[i]! - want[i]!));
          moved = Math.max(moved, Math.abs(want[i]! - b[i]!));
        }
        expect(err, name).toBeLessThan(1e-6);
        if (moved > 0) changed++;
      }
      expect(changed).toBe(report.weights);
      const carried = reference(c).adapterKeys.filter((k) => !/vera_(lambda_[bd]|A|B)$/.test(k));
      expect(report.carried.map((r) => r.tensor).sort()).toEqual(carried.sort());
    });
});

describe("GGUF merge of a real PEFT adapter with trainable biases and a saved lm_head", () => {
  it("qwen2: q/v weights merged, their biases and output.weight replaced, each as PEFT's merge_and_unload", async () => {
    const dir = join(FAMILIES, "qwen2-gguf");
    const out = join(work, "qwen2.gguf");
    const report = await mergeGguf({
      model: join(FAMILIES, "..", "gguf", "qwen2", "base-f32.gguf"),
      adapter: join(dir, "adapter"),
      output: out,
    });
    expect(report.carried.map((c) => c.target).sort()).toEqual([
      "blk.0.attn_q.bias",
      "blk.0.attn_v.bias",
      "blk.1.attn_q.bias",
      "blk.1.attn_v.bias",
      "output.weight",
    ]);
    const bytes = new Uint8Array(readFileSync(out));
    const gguf = await readGguf({ source: bytesSource(bytes) });
    const peft = f32Tensors(join(dir, "merged.safetensors"));
    const name = (hf: string): string => {
      if (hf === "lm_head.weight") return "output.weight";
      const m = /^model\.layers\.(\d+)\.self_attn\.([qv])_proj\.(weight|bias)$/.exec(hf)!;
      return `blk.${m[1]}.attn_${m[2]}.${m[3]}`;
    };
    expect(peft.size).toBe(9);
    for (const [hf, want] of peft) {
      const t = gguf.tensors.find((x) => x.name === name(hf))!;
      const start = gguf.dataOffset + t.offset;
      const got = decodeTensor(bytes.subarray(start, start + t.byteLength), t.type);
      expect(maxAbsDiff([got], [want]), hf).toBeLessThan(1e-6);
    }
  });
});

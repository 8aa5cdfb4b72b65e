/**
 * A BERT GGUF (the zoo's, written as convert_hf_to_gguf.py's BertModel writes it: no pooler, the classifier as `cls`):
 * the zoo's sequence-classification adapter trains the pooler, which the GGUF does not have, so every GGUF path refuses
 * it by name (zoo.test.ts); the same adapter's encoder modules alone merge into llama.cpp's `blk.N.attn_q`, ... with
 * PEFT's merge_and_unload() tensors (merged.gguf, the same conversion of PEFT's merged model).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { VeraAdapter } from "../src/format/types.js";
import type { GgufFile } from "../src/gguf/types.js";
import { mergeGguf } from "../src/merge/index.js";
import { readVeraFile, writeVeraFile } from "../src/node/files.js";
import { readGgufFile } from "../src/node/gguf-file.js";
import { loadAdapterFromPath } from "../src/node/load-adapter.js";
import { readBaseShapes } from "../src/node/read-base-shapes.js";
import { useTempDirs } from "./temp-helpers.js";

const tmp = useTempDirs("vera-gguf-bert-");
const BERT = join(__dirname, "../fixtures/zoo/bert");

async function tensors(path: string): Promise<Map<string, Float32Array>> {
  const file: GgufFile = await readGgufFile(path);
  const bytes = readFileSync(path);
  const out = new Map<string, Float32Array>();
  for (const t of file.tensors) {
    const at = bytes.byteOffset + file.dataOffset + t.offset;
    out.set(t.name, new Float32Array(bytes.buffer.slice(at, at + t.byteLength)));
  }
  return out;
}

describe("BERT GGUF", () => {
  it("the encoder modules merge into llama.cpp's names with merge_and_unload()'s tensors; the rest is untouched", async () => {
    const { adapter } = await loadAdapterFromPath({
      path: join(BERT, "adapter"),
      readBase: () => readBaseShapes({ path: join(BERT, "base") }),
    });
    // without the pooler (not in the GGUF) and the classifier head (carried): the encoder's six modules
    const encoder: VeraAdapter = { ...adapter, modules: adapter.modules.filter((m) => m.name.includes(".encoder.")) };
    delete encoder.extraTensors;
    expect(encoder.modules.length).toBe(6);
    const file = join(tmp(), "encoder.vera.safetensors");
    await writeVeraFile(file, encoder);
    expect((await readVeraFile(file)).modules.length).toBe(6);
    const out = join(tmp(), "merged.gguf");
    await mergeGguf({ model: join(BERT, "base.gguf"), adapter: file, output: out, durable: false });
    const [got, base, want] = await Promise.all([out, join(BERT, "base.gguf"), join(BERT, "merged.gguf")].map(tensors));
    const adapted = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_up", "ffn_down"].map((t) => `blk.0.${t}.weight`);
    for (const [name, g] of got) {
      if (!adapted.includes(name)) {
        expect([name, Buffer.from(g.buffer).equals(Buffer.from(base.get(name)!.buffer))]).toEqual([name, true]);
        continue;
      }
      const ref = want.get(name)!;
      let scale = 0;
      let err = 0;
      ref.forEach((x, i) => ((scale = Math.max(scale, Math.abs(x))), (err = Math.max(err, Math.abs(g[i]! - x)))));
      expect(err / scale).toBeLessThan(1e-5);
      expect(base.get(name)!.some((x, i) => x !== g[i])).toBe(true);
    }
  });
});

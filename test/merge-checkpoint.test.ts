/**
 * Merging into safetensors checkpoints (transformers save_pretrained with several shards, made by
 * fixtures/safetensors/generate.py): the merged tensors are PEFT's merge_and_unload ones, every
 * other byte is the base's, and bad checkpoints are refused before anything is written.
 * (fixtures/safetensors/verify_merge.py loads a merged folder in transformers and compares logits.)
 */
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { createAdapter } from "../src/format/create.js";
import { mergeCheckpoint, MergeErrorCode } from "../src/merge/index.js";
import { loadAdapterFromPath } from "../src/node/load-adapter.js";
import { readBaseShapes } from "../src/node/read-base-shapes.js";
import { bf16BitsToF32 } from "../src/numeric/half.js";
import { parseSafetensors, tensorBytes, type SafetensorsFile } from "../src/safetensors/parse.js";
import { veraError } from "./error-helpers.js";

const FIX = join(__dirname, "..", "fixtures", "safetensors");
const MANIFEST = JSON.parse(readFileSync(join(FIX, "MANIFEST.json"), "utf8")) as {
  cases: Record<string, { dtype: string; target_modules: string[] }>;
};
const root = mkdtempSync(join(tmpdir(), "vera-merge-checkpoint-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const fresh = (): string => join(root, `case-${n++}`);

/** Every shard of a checkpoint folder, parsed. */
function shards(dir: string): Map<string, SafetensorsFile> {
  const out = new Map<string, SafetensorsFile>();
  for (const f of readdirSync(dir).sort())
    if (f.endsWith(".safetensors")) out.set(f, parseSafetensors(new Uint8Array(readFileSync(join(dir, f)))));
  return out;
}

function values(file: SafetensorsFile, name: string): number[] {
  const b = tensorBytes(file, name);
  const dtype = file.tensors.get(name)!.dtype;
  if (dtype === "F32") return [...new Float32Array(b.slice().buffer)];
  return [...new Uint16Array(b.slice().buffer)].map((x) => bf16BitsToF32(x));
}

function listing(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir).sort() : [];
}

describe("vera merge into a sharded transformers checkpoint", () => {
  for (const c of Object.keys(MANIFEST.cases)) {
    it(`${c}: PEFT's merged tensors, every other byte the base's, same files`, async () => {
      const base = join(FIX, c, "base");
      const out = fresh();
      const r = await mergeCheckpoint({ model: base, adapter: join(FIX, c, "adapter"), output: out, durable: false });
      expect(listing(out)).toEqual(listing(base));
      for (const f of readdirSync(base).filter((x) => !x.endsWith(".safetensors")))
        expect(readFileSync(join(out, f)).equals(readFileSync(join(base, f)))).toBe(true);
      const targets = MANIFEST.cases[c]!.target_modules.map((t) => `.${t}.weight`);
      const adapted = (name: string): boolean => targets.some((t) => name.endsWith(t));
      const b = shards(base);
      const o = shards(out);
      const peft = shards(join(FIX, c, "peft-merged"));
      let merged = 0;
      let worst = 0;
      for (const [f, bf] of b) {
        const of = o.get(f)!;
        const bytes = readFileSync(join(out, f));
        expect(bytes.length).toBe(readFileSync(join(base, f)).length);
        // header (and so tensor order and metadata) byte for byte
        expect(bytes.subarray(0, bf.dataStart).equals(readFileSync(join(base, f)).subarray(0, bf.dataStart))).toBe(
          true,
        );
        for (const name of bf.tensors.keys()) {
          const same = Buffer.from(tensorBytes(of, name)).equals(Buffer.from(tensorBytes(bf, name)));
          if (!adapted(name)) {
            expect({ name, same }).toEqual({ name, same: true });
            continue;
          }
          merged++;
          expect({ name, same }).toEqual({ name, same: false });
          const mine = values(of, name);
          const ref = values([...peft.values()].find((p) => p.tensors.has(name))!, name);
          // float32: error relative to 1e-2 + |ref| (the weights are ~0.02); bfloat16: relative to |ref|
          const floor = MANIFEST.cases[c]!.dtype === "float32" ? 1e-2 : 1e-30;
          for (let i = 0; i < mine.length; i++)
            worst = Math.max(worst, Math.abs(mine[i]! - ref[i]!) / (floor + Math.abs(ref[i]!)));
        }
      }
      expect(merged).toBe(r.weights);
      // float32: PEFT's float32 arithmetic against ours (one rounding); bfloat16: at most one unit in the last place
      expect(worst).toBeLessThan(MANIFEST.cases[c]!.dtype === "float32" ? 1e-5 : 2 ** -7);
    });
  }

  it("in place: only the shards holding adapted weights change, to the same bytes as a merge to a new folder", async () => {
    const dir = fresh();
    cpSync(join(FIX, "llama-bf16", "base"), dir, { recursive: true });
    const out = fresh();
    const adapter = join(FIX, "llama-bf16", "adapter");
    await mergeCheckpoint({ model: dir, adapter, output: out, durable: false });
    const stats = new Map(listing(dir).map((f) => [f, statSync(join(dir, f))]));
    const r = await mergeCheckpoint({ model: dir, adapter, inPlace: true, durable: false });
    const changed = new Set(r.modules.map((m) => m.storage.split("@")[0]));
    expect(r.files.map((f) => f.split("/").pop()).sort()).toEqual([...changed].sort());
    // every file keeps its inode (ranges are written in place); files without adapted weights are never opened to write
    for (const [f, st] of stats) {
      const now = statSync(join(dir, f));
      expect({ f, ino: now.ino }).toEqual({ f, ino: st.ino });
      if (!changed.has(f))
        expect({ f, mtime: now.mtimeMs, ctime: now.ctimeMs }).toEqual({ f, mtime: st.mtimeMs, ctime: st.ctimeMs });
    }
    for (const f of listing(out))
      expect({ f, same: readFileSync(join(dir, f)).equals(readFileSync(join(out, f))) }).toEqual({ f, same: true });
    expect(listing(dir)).toEqual(listing(out));
  });

  it("a single .safetensors file: the output is a file; modules in other shards are left out with skipMissing", async () => {
    const out = join(fresh(), "merged.safetensors");
    const shard = join(FIX, "llama-f32", "base", "model-00001-of-00003.safetensors");
    // the adapter's module shapes come from the whole checkpoint; the file alone holds only some of them
    const { adapter } = await loadAdapterFromPath({
      path: join(FIX, "llama-f32", "adapter"),
      base: await readBaseShapes({ path: join(FIX, "llama-f32", "base") }),
    });
    const r = await mergeCheckpoint({
      model: shard,
      adapter,
      output: out,
      skipMissing: true,
      durable: false,
    });
    expect(r.weights).toBeGreaterThan(0);
    expect(r.skipped.length).toBeGreaterThan(0);
    expect(r.files).toEqual([out]);
    expect(statSync(out).size).toBe(statSync(shard).size);
  });
});

describe("bad checkpoints are refused with a typed error, nothing written", () => {
  const adapter = join(FIX, "llama-f32", "adapter");
  function broken(edit: (dir: string) => void): string {
    const dir = fresh();
    cpSync(join(FIX, "llama-f32", "base"), dir, { recursive: true });
    edit(dir);
    return dir;
  }
  const index = (dir: string): { weight_map: Record<string, string> } =>
    JSON.parse(readFileSync(join(dir, "model.safetensors.index.json"), "utf8"));
  const writeIndex = (dir: string, v: unknown): void =>
    writeFileSync(join(dir, "model.safetensors.index.json"), JSON.stringify(v));

  const cases: Array<[string, (dir: string) => void, string]> = [
    [
      "a missing shard",
      (d) => rmSync(join(d, "model-00002-of-00003.safetensors")),
      MergeErrorCode.MERGE_CHECKPOINT_INDEX,
    ],
    [
      "an index that places a tensor in the wrong shard",
      (d) => {
        const i = index(d);
        const [t, s] = Object.entries(i.weight_map).find(([, s]) => s === "model-00001-of-00003.safetensors")!;
        i.weight_map[t] = s.replace("00001", "00002");
        writeIndex(d, i);
      },
      MergeErrorCode.MERGE_CHECKPOINT_INDEX,
    ],
    [
      "an index that does not list a tensor a shard holds",
      (d) => {
        const i = index(d);
        delete i.weight_map[Object.keys(i.weight_map)[0]!];
        writeIndex(d, i);
      },
      MergeErrorCode.MERGE_CHECKPOINT_INDEX,
    ],
    [
      "one tensor name in two shards",
      (d) => {
        // shard 3 becomes a copy of shard 1: its tensors are then in two shards
        cpSync(join(d, "model-00001-of-00003.safetensors"), join(d, "model-00003-of-00003.safetensors"));
      },
      MergeErrorCode.MERGE_CHECKPOINT_INDEX,
    ],
    [
      "a shard name with a path in the index",
      (d) => {
        const i = index(d);
        for (const k of Object.keys(i.weight_map))
          if (i.weight_map[k]!.includes("00002")) i.weight_map[k] = "../x.safetensors";
        writeIndex(d, i);
      },
      "IO_UNSAFE_PATH",
    ],
    [
      "a truncated shard",
      (d) => {
        const f = join(d, "model-00002-of-00003.safetensors");
        writeFileSync(f, readFileSync(f).subarray(0, statSync(f).size - 100));
      },
      "ST_",
    ],
    [
      "a folder without a checkpoint",
      (d) => rmSync(join(d, "model.safetensors.index.json")),
      MergeErrorCode.MERGE_CONTAINER_UNKNOWN,
    ],
  ];
  for (const [what, edit, code] of cases)
    it(what, async () => {
      const dir = broken(edit);
      const before = listing(dir);
      const out = fresh();
      const e = await veraError(mergeCheckpoint({ model: dir, adapter, output: out, durable: false }));
      expect(e.code.startsWith(code)).toBe(true);
      expect(listing(out)).toEqual([]);
      expect(listing(dir)).toEqual(before);
    });

  it("an adapter for another model: its modules are not in the checkpoint (MERGE_WEIGHT_NOT_FOUND)", async () => {
    const out = fresh();
    const e = await veraError(
      mergeCheckpoint({
        model: join(FIX, "llama-f32", "base"),
        adapter: join(FIX, "gpt2-f32", "adapter"),
        output: out,
        durable: false,
      }),
    );
    expect(e.code).toMatch(/^(MERGE_WEIGHT_NOT_FOUND|PEFT_)/);
    expect(listing(out)).toEqual([]);
  });

  it("an adapter module whose shape disagrees with the checkpoint's weight (MERGE_WEIGHT_SHAPE)", async () => {
    const out = fresh();
    const wrong = createAdapter({
      modules: [{ name: "model.layers.0.self_attn.k_proj", inFeatures: 32, outFeatures: 32 }], // k_proj is 32 -> 16 (GQA)
      rank: 4,
      seed: 1,
    });
    const e = await veraError(
      mergeCheckpoint({ model: join(FIX, "llama-f32", "base"), adapter: wrong, output: out, durable: false }),
    );
    expect(e.code).toBe(MergeErrorCode.MERGE_WEIGHT_SHAPE);
    expect(e.path).toBe("model.layers.0.self_attn.k_proj.weight");
    expect(listing(out)).toEqual([]);
  });

  it("refuses to write over the input folder without in-place", async () => {
    const dir = broken(() => {});
    const e = await veraError(mergeCheckpoint({ model: dir, adapter, output: dir, durable: false }));
    expect(e.code).toBe(MergeErrorCode.MERGE_OUTPUT_CONFLICT);
  });
});

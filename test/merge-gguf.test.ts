/**
 * Merging into GGUF model files (fixtures/gguf: tiny Llama and Qwen2 F32 bases written by gguf-py, PEFT VeRA
 * adapters, torch float64 reference deltas in llama.cpp's row order): the merged tensors are base + delta, every
 * other byte is the base's, and bad models are refused before anything is written. llama.cpp runs the merged
 * files in test/gguf-llama-cpp.test.ts.
 */
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parseArgs } from "node:util";
import mergeCommand from "../src/cli/commands/merge.js";
import type { VeraError } from "../src/errors.js";
import { createAdapter } from "../src/format/create.js";
import type { VeraAdapter } from "../src/format/types.js";
import {
  bytesSource,
  decodeTensor,
  encodeTensor,
  GgmlType,
  readGguf,
  writeGguf,
  type GgufFile,
  type GgufValue,
} from "../src/gguf/index.js";
import { mergeGguf, MergeErrorCode } from "../src/merge/index.js";
import { parseSafetensors, tensorBytes } from "../src/safetensors/parse.js";
import { veraError } from "./error-helpers.js";

const FIX = join(import.meta.dirname, "..", "fixtures", "gguf");
const LLAMA = join(FIX, "llama", "base-f32.gguf");
const QWEN = join(FIX, "qwen2", "base-f32.gguf");
const root = mkdtempSync(join(tmpdir(), "vera-merge-gguf-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
/** A fresh empty folder. */
const fresh = (): string => {
  const d = join(root, `case-${n++}`);
  mkdirSync(d);
  return d;
};

const read = (path: string): Promise<GgufFile> => readGguf({ source: bytesSource(new Uint8Array(readFileSync(path))) });

/** The fixture's reference deltas (F64, GGUF row order) by tensor name. */
function referenceDeltas(path: string): Map<string, Float64Array> {
  const st = parseSafetensors(new Uint8Array(readFileSync(path)));
  return new Map([...st.tensors.keys()].map((k) => [k, new Float64Array(tensorBytes(st, k).slice().buffer)]));
}

function tensorOf(
  bytes: Uint8Array,
  file: GgufFile,
  name: string,
): { values: Float32Array; start: number; end: number } {
  const t = file.tensors.find((x) => x.name === name)!;
  const start = file.dataOffset + t.offset;
  return {
    values: decodeTensor(bytes.subarray(start, start + t.byteLength), t.type),
    start,
    end: start + t.byteLength,
  };
}

/**
 * Check a merged file against its base: each reference tensor is base + delta within `rel` of its magnitude (plus
 * one step of the stored type at that size), every byte outside the merged tensors is the base's. Returns the
 * largest error found.
 */
function expectMerged(base: Uint8Array, merged: Uint8Array, deltas: Map<string, Float64Array>, rel: number): number {
  expect(merged.byteLength).toBe(base.byteLength);
  let worst = 0;
  const file = readGgufSync(base);
  const mask = new Uint8Array(base.byteLength);
  for (const [name, delta] of deltas) {
    const b = tensorOf(base, file, name);
    const m = tensorOf(merged, file, name);
    mask.fill(1, b.start, b.end);
    let changed = 0;
    for (let i = 0; i < delta.length; i++) {
      const want = b.values[i]! + delta[i]!;
      const err = Math.abs(m.values[i]! - want);
      worst = Math.max(worst, err / Math.max(1, Math.abs(want)));
      if (err > rel * Math.max(1, Math.abs(want))) throw new Error(`${name}[${i}]: ${m.values[i]} vs ${want}`);
      if (m.values[i] !== b.values[i]) changed++;
    }
    expect(changed, name).toBeGreaterThan(delta.length / 2);
  }
  let other = 0;
  for (let i = 0; i < base.byteLength; i++) if (!mask[i] && base[i] !== merged[i]) other++;
  expect(other).toBe(0);
  return worst;
}

/** The header of in-memory GGUF bytes (gguf-py files and the writer's keep it in the first chunk). */
let headers = new Map<Uint8Array, GgufFile>();
function readGgufSync(bytes: Uint8Array): GgufFile {
  const f = headers.get(bytes);
  if (!f) throw new Error("internal: header not read");
  return f;
}
async function withHeader(bytes: Uint8Array): Promise<Uint8Array> {
  headers.set(bytes, await readGguf({ source: bytesSource(bytes) }));
  return bytes;
}
afterAll(() => void (headers = new Map()));

/** The llama base rewritten by verakit's writer: metadata and tensors edited, data re-encoded where asked. */
async function rebuild(
  edit: {
    metadata?: (m: Map<string, GgufValue>) => void;
    type?: (name: string, ne: number[]) => "f32" | "f16" | "bf16" | "q8_0";
    drop?: string;
  } = {},
): Promise<Uint8Array> {
  const bytes = new Uint8Array(readFileSync(LLAMA));
  const file = await read(LLAMA);
  const metadata = new Map(file.metadata);
  edit.metadata?.(metadata);
  metadata.delete("general.alignment");
  const tensors = file.tensors
    .filter((t) => t.name !== edit.drop)
    .map((t) => {
      const values = tensorOf(bytes, file, t.name).values;
      const type = edit.type?.(t.name, t.ne) ?? "f32";
      return {
        name: t.name,
        ne: t.ne,
        type: { f32: GgmlType.F32, f16: GgmlType.F16, bf16: GgmlType.BF16, q8_0: GgmlType.Q8_0 }[type],
        data: encodeTensor(values, t.ne[0]!, type, t.name),
      };
    });
  return writeGguf({ metadata, tensors, alignment: file.alignment });
}

const adapterOf = (base: string): string => join(base, "..", "..", base.includes("qwen2") ? "qwen2/vera" : "vera");

describe("vera merge into a GGUF model", () => {
  for (const [label, base, ref] of [
    ["llama (q/k rows permuted)", LLAMA, join(FIX, "reference.safetensors")],
    ["qwen2 (q/k not permuted)", QWEN, join(FIX, "qwen2", "reference.safetensors")],
  ] as const) {
    it(`${label}, F32: tensors are base + PEFT's delta to f32 rounding, every other byte the base's`, async () => {
      const out = join(fresh(), "merged.gguf");
      const report = await mergeGguf({ model: base, adapter: adapterOf(base), output: out, durable: false });
      expect(report.weights).toBe(14);
      expect(report.adapterSource).toBe("peft");
      const permuted = report.modules.filter((m) => m.source.includes("permuted")).map((m) => m.initializer);
      expect(permuted).toEqual(
        base === LLAMA
          ? ["blk.0.attn_k.weight", "blk.0.attn_q.weight", "blk.1.attn_k.weight", "blk.1.attn_q.weight"]
          : [],
      );
      const worst = expectMerged(
        await withHeader(new Uint8Array(readFileSync(base))),
        new Uint8Array(readFileSync(out)),
        referenceDeltas(ref),
        1e-6,
      );
      expect(worst).toBeLessThan(1e-6);
    });
  }

  for (const type of ["f16", "bf16"] as const) {
    it(`${type} weights merge in their own type (base + delta to one rounding of ${type})`, async () => {
      const dir = fresh();
      const base = join(dir, `base-${type}.gguf`);
      const bytes = await withHeader(
        await rebuild({ type: (name, ne) => (ne.length === 2 && name.startsWith("blk.") ? type : "f32") }),
      );
      writeFileSync(base, bytes);
      const out = join(dir, "merged.gguf");
      const report = await mergeGguf({ model: base, adapter: join(FIX, "vera"), output: out, durable: false });
      expect(new Set(report.modules.map((m) => m.dtype))).toEqual(new Set([type.toUpperCase()]));
      // one rounding to the stored type: 2^-11 (f16) or 2^-8 (bf16) of the magnitude
      expectMerged(
        bytes,
        new Uint8Array(readFileSync(out)),
        referenceDeltas(join(FIX, "reference.safetensors")),
        type === "f16" ? 2 ** -11 : 2 ** -8,
      );
    });
  }

  it("--in-place gives the same bytes as a merge to a new file, and leaves no other file", async () => {
    const dir = fresh();
    const copy = join(dir, "model.gguf");
    copyFileSync(LLAMA, copy);
    const out = join(fresh(), "merged.gguf");
    await mergeGguf({ model: LLAMA, adapter: join(FIX, "vera"), output: out, durable: false });
    const report = await mergeGguf({ model: copy, adapter: join(FIX, "vera"), inPlace: true, durable: false });
    expect(report.inPlace).toBe(true);
    expect(Buffer.compare(readFileSync(copy), readFileSync(out))).toBe(0);
    expect(readdirSync(dir)).toEqual(["model.gguf"]);
  });

  it("a dry run reports the plan and writes nothing", async () => {
    const dir = fresh();
    const report = await mergeGguf({
      model: LLAMA,
      adapter: join(FIX, "vera"),
      output: join(dir, "x.gguf"),
      dryRun: true,
    });
    expect(report.bytesMerged).toBe(2 * 4 * (32 * 32 * 2 + 16 * 32 * 2 + 48 * 32 * 3));
    expect(readdirSync(dir)).toEqual([]);
  });

  it("a cancelled merge leaves nothing behind", async () => {
    const dir = fresh();
    const ac = new AbortController();
    const e = await veraError(
      mergeGguf({
        model: LLAMA,
        adapter: join(FIX, "vera"),
        output: join(dir, "merged.gguf"),
        signal: ac.signal,
        onProgress: (ev) => void (ev.type === "planned" && ac.abort()),
      }),
    );
    expect(e.code).toBe(MergeErrorCode.MERGE_ABORTED);
    expect(readdirSync(dir)).toEqual([]);
  });
});

describe("bad GGUF input: typed errors naming file and tensor, nothing written", () => {
  /** Merge `bytes` (written as `name`) with the llama adapter; the output folder must stay empty. */
  async function refused(
    bytes: Uint8Array,
    name = "model.gguf",
    adapter: Parameters<typeof mergeGguf>[0]["adapter"] = join(FIX, "vera"),
  ): Promise<VeraError> {
    const dir = fresh();
    const model = join(dir, name);
    writeFileSync(model, bytes);
    const outDir = fresh();
    const e = await veraError(mergeGguf({ model, adapter, output: join(outDir, "merged.gguf"), durable: false }));
    expect(readdirSync(outDir)).toEqual([]);
    expect(readdirSync(dir)).toEqual([name]);
    return e;
  }

  it("a quantized weight: GGUF_QUANTIZED, merge into the F16 GGUF then quantize", async () => {
    const e = await refused(await rebuild({ type: (name) => (name === "blk.1.attn_q.weight" ? "q8_0" : "f32") }));
    expect(e.code).toBe("GGUF_QUANTIZED");
    expect(e.message).toContain("blk.1.attn_q.weight (Q8_0)");
    expect(e.message).toContain("merge into the F16 GGUF, then quantize with llama.cpp");
    expect(e.message).toContain("model.gguf");
  });

  it("an unknown architecture asks for a mapping; with one, the mapped weights merge", async () => {
    const bytes = await rebuild({
      metadata: (m) => {
        m.set("general.architecture", { type: 8, value: "mystery" });
        for (const [k, v] of [...m]) if (k.startsWith("llama.")) m.set(k.replace(/^llama\./, "mystery."), v);
      },
    });
    const e = await refused(bytes);
    expect(e.code).toBe("GGUF_UNKNOWN_ARCHITECTURE");
    expect(e.message).toContain('"mystery"');
    const dir = fresh();
    const model = join(dir, "m.gguf");
    writeFileSync(model, bytes);
    const mapping = join(dir, "mapping.json");
    writeFileSync(
      mapping,
      JSON.stringify({
        "model.layers.{bid}.self_attn.v_proj": "blk.{bid}.attn_v",
        "model.layers.{bid}.mlp.down_proj": "blk.{bid}.ffn_down",
      }),
    );
    const only = createAdapter({
      modules: [{ name: "model.layers.1.self_attn.v_proj", inFeatures: 32, outFeatures: 16 }],
      rank: 4,
      seed: 3,
    });
    only.modules[0]!.lambdaB.fill(0.5);
    const report = await mergeGguf({ model, adapter: only, mapping, output: join(dir, "out.gguf"), durable: false });
    expect(report.modules.map((m) => [m.initializer, m.matchedBy])).toEqual([["blk.1.attn_v.weight", "mapping"]]);
    expect(report.modules[0]!.maxAbsDelta).toBeGreaterThan(0);
  });

  it("a truncated file: GGUF_TENSOR_RANGE or GGUF_TRUNCATED naming the file", async () => {
    const bytes = new Uint8Array(readFileSync(LLAMA));
    for (const cut of [100, bytes.byteLength - 1000]) {
      const e = await refused(bytes.subarray(0, cut), "cut.gguf");
      expect(["GGUF_TRUNCATED", "GGUF_TENSOR_RANGE", "GGUF_COUNT"]).toContain(e.code);
      expect(e.message).toContain("cut.gguf");
    }
  });

  it("lm_head on a model whose output is tied to token_embd: GGUF_MODULE_UNSUPPORTED", async () => {
    const tied = createAdapter({ modules: [{ name: "lm_head", inFeatures: 32, outFeatures: 288 }], rank: 4 });
    const e = await refused(await rebuild({ drop: "output.weight" }), "tied.gguf", tied);
    expect(e.code).toBe("GGUF_MODULE_UNSUPPORTED");
    expect(e.message).toContain("tied to token_embd");
  });

  it("a trained embed_tokens on a quantized token_embd: MERGE_CARRIED_TENSOR naming the tensor", async () => {
    const bytes = await rebuild({ type: (name) => (name === "token_embd.weight" ? "q8_0" : "f32") });
    const e = await refused(bytes, "model.gguf", withEmbeddings());
    expect(e.code).toBe("MERGE_CARRIED_TENSOR");
    expect(e.message).toContain("base_model.model.model.embed_tokens.weight");
    expect(e.message).toContain("token_embd.weight is Q8_0");
  });

  it("a trained embed_tokens on a model whose output is tied to token_embd: MERGE_CARRIED_TENSOR", async () => {
    const e = await refused(await rebuild({ drop: "output.weight" }), "tied.gguf", withEmbeddings());
    expect(e.code).toBe("MERGE_CARRIED_TENSOR");
    expect(e.message).toContain("token_embd.weight is also the model's output");
  });

  it("two tensors of one name: GGUF_DUPLICATE naming it", async () => {
    const bytes = new Uint8Array(readFileSync(LLAMA));
    const file = await read(LLAMA);
    const head = Buffer.from(bytes.subarray(0, file.dataOffset));
    const at = head.lastIndexOf("blk.0.attn_k.weight");
    bytes.set(Buffer.from("blk.0.attn_v.weight"), at);
    const e = await refused(bytes);
    expect(e.code).toBe("GGUF_DUPLICATE");
    expect(e.message).toContain("blk.0.attn_v.weight");
  });

  it("a part of a split GGUF without its other parts: GGUF_SPLIT (test/merge-gguf-split.test.ts merges whole ones)", async () => {
    const e = await refused(new Uint8Array(readFileSync(LLAMA)), "model-00001-of-00002.gguf");
    expect(e.code).toBe("GGUF_SPLIT");
    expect(e.message).toContain("model-00002-of-00002.gguf");
    const counted = await rebuild({ metadata: (m) => m.set("split.count", { type: 2, value: 3 }) });
    expect((await refused(counted)).message).toContain("split.count 3");
  });
});

/** The llama fixture's shapes: one adapted module and a trained embedding table (modules_to_save embed_tokens). */
const EMBEDDINGS = Float32Array.from({ length: 288 * 32 }, (_, i) => Math.sin(i * 0.37) * 0.8);
function withEmbeddings(): VeraAdapter {
  const a = createAdapter({
    modules: [{ name: "model.layers.1.self_attn.v_proj", inFeatures: 32, outFeatures: 16 }],
    rank: 4,
    seed: 3,
  });
  a.modules[0]!.lambdaB.fill(0.5);
  const data = new Uint8Array(EMBEDDINGS.buffer.slice(0));
  a.training = { modules_to_save: ["embed_tokens"] };
  a.extraTensors = [{ name: "base_model.model.model.embed_tokens.weight", dtype: "F32", shape: [288, 32], data }];
  return a;
}

describe("a trained embed_tokens (modules_to_save) replaces token_embd.weight", () => {
  for (const type of ["f32", "f16", "bf16"] as const)
    it(`${type}: token_embd holds the adapter's table in the model's dtype; the other tensors are the base's`, async () => {
      const dir = fresh();
      const model = join(dir, "model.gguf");
      const base = await rebuild({ type: (name) => (name === "token_embd.weight" ? type : "f32") });
      writeFileSync(model, base);
      const out = join(dir, "merged.gguf");
      const report = await mergeGguf({ model, adapter: withEmbeddings(), output: out, durable: false });
      expect(report.carried.map((c) => [c.target, c.param, c.dtype])).toEqual([
        ["token_embd.weight", "model.embed_tokens.weight", type.toUpperCase()],
      ]);
      const bytes = new Uint8Array(readFileSync(out));
      const before = await read(model);
      const after = await read(out);
      const gtype = { f32: GgmlType.F32, f16: GgmlType.F16, bf16: GgmlType.BF16 }[type];
      const want = decodeTensor(encodeTensor(EMBEDDINGS, 32, type, "want"), gtype);
      expect([...tensorOf(bytes, after, "token_embd.weight").values]).toEqual([...want]);
      for (const t of before.tensors) {
        if (t.name === "token_embd.weight" || t.name === "blk.1.attn_v.weight") continue;
        const a = tensorOf(base, before, t.name);
        const b = tensorOf(bytes, after, t.name);
        expect([t.name, Buffer.from(b.values.buffer).equals(Buffer.from(a.values.buffer))]).toEqual([t.name, true]);
      }
    });
});

describe("vera merge MODEL.gguf ADAPTER -o OUT.gguf (the merge command, in process)", () => {
  /** The command as the CLI's main runs it (main itself runs on import, so it is not imported here). */
  async function cli(args: string[]): Promise<{ code: number; json: Record<string, unknown> }> {
    const argv = [...args, "--backend", "reference", "--no-fsync", "--json"];
    const { values, positionals } = parseArgs({
      args: argv,
      options: { ...mergeCommand.options, json: { type: "boolean" }, debug: { type: "boolean" } },
      allowPositionals: true,
    });
    const lines: string[] = [];
    const ctx = { out: (l: string) => lines.push(l), err: () => {}, json: true, debug: false, isTTY: false, env: {} };
    const code = await mergeCommand.run({ values: values as Record<string, unknown>, positionals }, ctx);
    return { code, json: JSON.parse(lines.join("\n")) as Record<string, unknown> };
  }

  it("detects the container from the magic and writes the same bytes as mergeGguf", async () => {
    const dir = fresh();
    const model = join(dir, "model.bin"); // no .gguf suffix: the magic decides
    copyFileSync(LLAMA, model);
    const { code, json } = await cli([model, join(FIX, "vera"), "-o", join(dir, "out.gguf")]);
    expect(code).toBe(0);
    expect(json.weights).toBe(14);
    const lib = join(dir, "lib.gguf");
    await mergeGguf({ model: LLAMA, adapter: join(FIX, "vera"), output: lib, durable: false });
    expect(Buffer.compare(readFileSync(join(dir, "out.gguf")), readFileSync(lib))).toBe(0);
  });

  it("a quantized weight throws GGUF_QUANTIZED (the CLI exits 1) and writes nothing", async () => {
    const dir = fresh();
    const model = join(dir, "q.gguf");
    writeFileSync(model, await rebuild({ type: (name) => (name === "blk.0.attn_v.weight" ? "q8_0" : "f32") }));
    const e = await veraError(cli([model, join(FIX, "vera"), "-o", join(dir, "out.gguf")]));
    expect(e.code).toBe("GGUF_QUANTIZED");
    expect(readdirSync(dir)).toEqual(["q.gguf"]);
  });

  it("--skip-missing and --untie are usage errors for a GGUF", async () => {
    for (const flag of ["--skip-missing", "--untie"])
      await expect(cli([LLAMA, join(FIX, "vera"), "-o", join(fresh(), "o.gguf"), flag])).rejects.toThrow(/GGUF|ONNX/);
  });
});

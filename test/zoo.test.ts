/**
 * The model zoo: every family a VeRA user trains (fixtures/zoo, made by real transformers + PEFT: generate.py) through
 * every path, with the library functions the CLI calls. Each cell's expectation comes from one table,
 * fixtures/zoo/expectations.json: `exact` (PEFT's function within tolerance), `refuse:CODE` (a typed VeraError with
 * that code) or `n/a` (the exporter itself fails on the family; its error is in case.json). Cells listed in its
 * `known_wrong` are what verakit gets wrong today: they run with `it.fails`, so they must still be wrong, and start
 * failing the run once fixed (then their entry goes). README.md's support table is rendered from the same table.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { isVeraError } from "../src/errors.js";
import type { VeraAdapter } from "../src/format/types.js";
import { exportGgufLora } from "../src/gguf/export-gguf-lora.js";
import type { GgufFile } from "../src/gguf/types.js";
import { mergeCheckpoint, mergeGguf, mergeOnnx } from "../src/merge/index.js";
import { loadGgufLoraInputs, readGgufFile } from "../src/node/gguf-file.js";
import { readVeraFile, writeVeraFile } from "../src/node/files.js";
import { loadAdapterFromPath } from "../src/node/load-adapter.js";
import { readBaseShapes } from "../src/node/read-base-shapes.js";
import { expandToLora } from "../src/peft/expand-to-lora.js";
import { exportPeft } from "../src/peft/export-peft.js";
import { isPveraSamplingTensor, PVERA_LOGVAR_A, PVERA_LOGVAR_D_PREFIX } from "../src/peft/pvera-keys.js";
import { asFloat32, parseSafetensors, tensorBytes, type SafetensorsFile } from "../src/safetensors/parse.js";
import {
  adapterFeeds,
  readGraftSpec,
  readOnnxAdapterFile,
  writeOnnxAdapter,
  type FeedTensor,
} from "../src/serve/index.js";
import { graftOnnxFile } from "../src/serve/node/index.js";
import { loadOrt } from "./onnx-helpers.js";
import { renderSupportTable, SUPPORT_TABLE_BEGIN, SUPPORT_TABLE_END } from "../fixtures/zoo/table.mjs";

const ZOO = join(__dirname, "..", "fixtures", "zoo");
const TABLE = JSON.parse(readFileSync(join(ZOO, "expectations.json"), "utf8")) as Expectations;
const work = mkdtempSync(join(tmpdir(), "vera-zoo-"));
const measured: Record<string, string> = {};
afterAll(() => {
  rmSync(work, { recursive: true, force: true });
  // ZOO_MEASURE=FILE writes each cell's measured error (for the known_wrong notes and the report)
  if (process.env["ZOO_MEASURE"]) writeFileSync(process.env["ZOO_MEASURE"], JSON.stringify(measured, null, 1));
});

interface Expectations {
  paths: Record<string, string>;
  families: Record<string, Record<string, string>>;
  known_wrong: Record<string, string>;
}
interface CaseInput {
  name: string;
  dtype: "int64" | "float32";
  shape: number[];
  data: number[];
}
interface ZooCase {
  family: string;
  inputs: CaseInput[];
  logits_shape: number[];
  exports: Array<{ file: string; ok: boolean; error?: string }>;
  modules: Record<string, [number, number]>;
  adapter: { r: number };
}

let n = 0;
function fresh(name: string): string {
  const dir = join(work, `${n++}`);
  mkdirSync(dir);
  return join(dir, name);
}
const PREFIX = "base_model.model.";

function loadCase(family: string): ZooCase & { dir: string } {
  const dir = join(ZOO, family);
  return { ...(JSON.parse(readFileSync(join(dir, "case.json"), "utf8")) as ZooCase), dir };
}
const readSt = (path: string): SafetensorsFile => parseSafetensors(new Uint8Array(readFileSync(path)));
const f32 = (f: SafetensorsFile, name: string): Float32Array => asFloat32(tensorBytes(f, name).slice());
function peftLogits(c: { dir: string }): { peft: Float32Array; base: Float32Array } {
  const f = readSt(join(c.dir, "logits.safetensors"));
  return { peft: f32(f, "peft"), base: f32(f, "base") };
}

function maxAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return Number.isNaN(m) ? Infinity : m;
}

/** Run a model in onnxruntime-node (CPU, optimizations off) on the case's inputs plus extra float feeds. */
async function runLogits(path: string, c: ZooCase, feeds: Record<string, FeedTensor> = {}): Promise<Float32Array> {
  const ort = await loadOrt();
  const session = await ort.InferenceSession.create(path, {
    graphOptimizationLevel: "disabled",
    executionProviders: ["cpu"],
    logSeverityLevel: 3,
  });
  try {
    const all: Record<string, import("onnxruntime-node").Tensor> = {};
    for (const i of c.inputs)
      all[i.name] =
        i.dtype === "int64"
          ? new ort.Tensor("int64", BigInt64Array.from(i.data.map((x) => BigInt(x))), i.shape)
          : new ort.Tensor("float32", Float32Array.from(i.data), i.shape);
    for (const [k, t] of Object.entries(feeds)) all[k] = new ort.Tensor(t.type, t.data, t.dims);
    const out = await session.run(all);
    return out["logits"]!.data as Float32Array;
  } finally {
    await session.release();
  }
}

/** The adapter as `vera import-peft DIR --base BASE` reads it: BASE the checkpoint folder, or the ONNX export served. */
async function imported(c: { dir: string }, base = "base"): Promise<VeraAdapter> {
  const path = join(c.dir, "adapter");
  return (await loadAdapterFromPath({ path, readBase: () => readBaseShapes({ path: join(c.dir, base) }) })).adapter;
}

/** Logits within 1e-4 of PEFT's; the measured error is kept for the report. */
function expectPeft(cell: string, got: Float32Array, want: Float32Array): void {
  const err = maxAbs(got, want);
  measured[cell] = `max |logits - PEFT's| ${err.toExponential(2)}`;
  expect(err).toBeLessThan(1e-4);
}

/**
 * The tensor-name prefix of the adapter's type: `vera`, or `pvera` for PEFT's PVeRA (pvera_A (2r, max_in), lambda_d
 * (2r,): the first r rows / entries are the mean, all that acts in eval mode without sampling).
 */
function kindOf(c: { dir: string }): "vera" | "pvera" {
  const cfg = JSON.parse(readFileSync(join(c.dir, "adapter", "adapter_config.json"), "utf8")) as { peft_type: string };
  return cfg.peft_type === "PVERA" ? "pvera" : "vera";
}

/** PEFT's tensors that are not the adapter's own vectors and projections (modules_to_save, trained biases). */
function otherTensors(peft: SafetensorsFile): string[] {
  return [...peft.tensors.keys()].filter((k) => !/\.p?vera_lambda_[bd]$|^base_model\.p?vera_[AB]$/.test(k));
}

/** The VeRA delta (out, in) of module `m` from PEFT's own file: diag(b) B[:out, :] diag(d[:r]) A[:r, :in]. */
function veraDelta(peft: SafetensorsFile, kind: string, m: string, inF: number, outF: number, r: number): Float64Array {
  const A = f32(peft, `base_model.${kind}_A`);
  const B = f32(peft, `base_model.${kind}_B`);
  const maxIn = A.length / (kind === "pvera" ? 2 * r : r);
  const d = f32(peft, `${PREFIX}${m}.${kind}_lambda_d`);
  const b = f32(peft, `${PREFIX}${m}.${kind}_lambda_b`);
  const out = new Float64Array(outF * inF);
  for (let o = 0; o < outF; o++)
    for (let k = 0; k < r; k++) {
      const s = b[o]! * B[o * r + k]! * d[k]!;
      for (let i = 0; i < inF; i++) out[o * inF + i]! += s * A[k * maxIn + i]!;
    }
  return out;
}

type Cell = (c: ZooCase & { dir: string }, cell: string) => Promise<void>;

const CELLS: Record<string, Cell> = {
  /** import-peft: every adapted module with PEFT's shapes and vectors, every other tensor carried. */
  async import(c, cell) {
    const a = await imported(c);
    const peft = readSt(join(c.dir, "adapter", "adapter_model.safetensors"));
    const got = Object.fromEntries(a.modules.map((m) => [m.name, [m.inFeatures, m.outFeatures]]));
    expect(got).toEqual(c.modules);
    const kind = kindOf(c);
    for (const m of a.modules) {
      const d = [...f32(peft, `${PREFIX}${m.name}.${kind}_lambda_d`)];
      // PVeRA: the whole d, or its mean half
      expect([d, d.slice(0, c.adapter.r)]).toContainEqual([...m.lambdaD]);
      expect([...m.lambdaB]).toEqual([...f32(peft, `${PREFIX}${m.name}.${kind}_lambda_b`)]);
    }
    const others = otherTensors(peft);
    const all = a.extraTensors ?? [];
    const carried = new Map(all.filter((t) => !isPveraSamplingTensor(t.name)).map((t) => [t.name, t]));
    expect([...carried.keys()].sort()).toEqual(others.sort());
    for (const k of others)
      expect(Buffer.from(carried.get(k)!.data).equals(Buffer.from(tensorBytes(peft, k)))).toBe(true);
    // PVeRA: the log-variance halves (unused in eval mode) are carried for export, bit for bit
    const halves = new Map(all.filter((t) => isPveraSamplingTensor(t.name)).map((t) => [t.name, t]));
    const want = new Map<string, Uint8Array>();
    if (kind === "pvera") {
      const A = tensorBytes(peft, "base_model.pvera_A");
      want.set(PVERA_LOGVAR_A, A.slice(A.length / 2));
      for (const m of a.modules) {
        const d = tensorBytes(peft, `${PREFIX}${m.name}.pvera_lambda_d`);
        want.set(PVERA_LOGVAR_D_PREFIX + m.name, d.slice(d.length / 2));
      }
    }
    expect([...halves.keys()].sort()).toEqual([...want.keys()].sort());
    for (const [k, v] of want) expect(Buffer.from(halves.get(k)!.data).equals(Buffer.from(v))).toBe(true);
    measured[cell] = `${a.modules.length} modules, ${others.length} carried tensors`;
  },
  /** import-peft, then export-peft: PEFT's tensors back, names and bits. */
  async "export-peft"(c, cell) {
    const file = fresh("a.vera.safetensors");
    await writeVeraFile(file, await imported(c));
    const back = exportPeft({ adapter: await readVeraFile(file) });
    const peft = readSt(join(c.dir, "adapter", "adapter_model.safetensors"));
    const ours = parseSafetensors(back.safetensors);
    expect([...ours.tensors.keys()].sort()).toEqual([...peft.tensors.keys()].sort());
    for (const k of peft.tensors.keys()) {
      expect(ours.tensors.get(k)!.dtype).toBe(peft.tensors.get(k)!.dtype);
      expect(Buffer.from(tensorBytes(ours, k)).equals(Buffer.from(tensorBytes(peft, k)))).toBe(true);
    }
    const cfg = JSON.parse(back.configJson) as Record<string, unknown>;
    const orig = JSON.parse(readFileSync(join(c.dir, "adapter", "adapter_config.json"), "utf8")) as Record<
      string,
      unknown
    >;
    for (const f of ["r", "projection_prng_key", "task_type", "bias", "fan_in_fan_out", "modules_to_save"])
      expect([f, cfg[f]]).toEqual([f, orig[f]]);
    expect((cfg["target_modules"] as string[]).slice().sort()).toEqual((orig["target_modules"] as string[]).sort());
    measured[cell] = `${peft.tensors.size} tensors bit-identical`;
  },
  /** expand-lora: each module's LoRA delta is the VeRA delta computed from PEFT's file; other tensors carried. */
  async "expand-lora"(c, cell) {
    const res = expandToLora({ adapter: await imported(c) });
    const lora = parseSafetensors(res.safetensors);
    const cfg = JSON.parse(res.configJson) as { r: number; lora_alpha: number };
    const peft = readSt(join(c.dir, "adapter", "adapter_model.safetensors"));
    let worst = 0;
    for (const [m, [inF, outF]] of Object.entries(c.modules)) {
      const A = f32(lora, `${PREFIX}${m}.lora_A.weight`);
      const B = f32(lora, `${PREFIX}${m}.lora_B.weight`);
      const r = A.length / inF;
      expect(B.length).toBe(outF * r);
      const want = veraDelta(peft, kindOf(c), m, inF, outF, c.adapter.r);
      let scale = 0;
      for (const x of want) scale = Math.max(scale, Math.abs(x));
      for (let o = 0; o < outF; o++)
        for (let i = 0; i < inF; i++) {
          let s = 0;
          for (let k = 0; k < r; k++) s += B[o * r + k]! * A[k * inF + i]!;
          s *= cfg.lora_alpha / cfg.r;
          worst = Math.max(worst, Math.abs(s - want[o * inF + i]!) / Math.max(scale, 1e-12));
        }
    }
    for (const k of otherTensors(peft))
      expect(Buffer.from(tensorBytes(lora, k)).equals(Buffer.from(tensorBytes(peft, k)))).toBe(true);
    measured[cell] = `max relative |LoRA delta - VeRA delta| ${worst.toExponential(2)}`;
    expect(worst).toBeLessThan(1e-5);
  },
  /** merge into the transformers checkpoint: PEFT merge_and_unload's tensors, under the checkpoint's names. */
  async "merge-checkpoint"(c, cell) {
    const out = fresh("merged");
    await mergeCheckpoint({ model: join(c.dir, "base"), adapter: join(c.dir, "adapter"), output: out, durable: false });
    const got = readSt(join(out, "model.safetensors"));
    const want = readSt(join(c.dir, "merged", "model.safetensors"));
    expect([...got.tensors.keys()].sort()).toEqual([...want.tensors.keys()].sort());
    let worst = 0;
    let worstName = "";
    for (const k of want.tensors.keys()) {
      const w = f32(want, k);
      let scale = 0;
      for (const x of w) scale = Math.max(scale, Math.abs(x));
      const e = maxAbs(f32(got, k), w) / Math.max(scale, 1e-12);
      if (e > worst) [worst, worstName] = [e, k];
    }
    measured[cell] =
      `max relative |tensor - merge_and_unload's| ${worst.toExponential(2)}${worst ? ` (${worstName})` : ""}`;
    expect(worst).toBeLessThan(1e-5);
  },
  /** merge into the GGUF base: the tensors of merged.gguf (merge_and_unload's model through the same conversion). */
  async "gguf-merge"(c, cell) {
    const out = fresh("merged.gguf");
    await mergeGguf({ model: join(c.dir, "base.gguf"), adapter: join(c.dir, "adapter"), output: out, durable: false });
    const got = await ggufTensors(out);
    const want = await ggufTensors(join(c.dir, "merged.gguf"));
    expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
    let worst = 0;
    for (const [k, w] of want) worst = Math.max(worst, relErr(got.get(k)!.data, w.data));
    measured[cell] = `max relative |tensor - merged.gguf's| ${worst.toExponential(2)}`;
    expect(worst).toBeLessThan(1e-5);
  },
  /** export-gguf-lora: per base tensor, alpha / r * lora_b @ lora_a is merged.gguf's tensor minus base.gguf's. */
  async "gguf-lora"(c, cell) {
    const inputs = await loadGgufLoraInputs({ adapter: join(c.dir, "adapter"), base: join(c.dir, "base.gguf") });
    const res = exportGgufLora({ adapter: inputs.adapter, base: inputs.base });
    const file = fresh("lora.gguf");
    writeFileSync(file, res.bytes);
    const lora = await ggufTensors(file);
    const base = await ggufTensors(join(c.dir, "base.gguf"));
    const merged = await ggufTensors(join(c.dir, "merged.gguf"));
    const adapted = [...merged.keys()].filter((k) => relErr(base.get(k)!.data, merged.get(k)!.data) > 0);
    expect(res.report.modules.map((m) => m.tensor).sort()).toEqual(adapted.sort());
    let worst = 0;
    for (const t of adapted) {
      const A = lora.get(`${t}.lora_a`)!;
      const B = lora.get(`${t}.lora_b`)!;
      const [inF, r] = A.ne as [number, number];
      const outF = B.ne[1]!;
      const want = merged.get(t)!.data.map((x, i) => x - base.get(t)!.data[i]!);
      const got = new Float64Array(outF * inF);
      for (let o = 0; o < outF; o++)
        for (let k = 0; k < r; k++) {
          const s = (B.data[o * r + k]! * res.report.alpha) / r;
          for (let i = 0; i < inF; i++) got[o * inF + i]! += s * A.data[k * inF + i]!;
        }
      worst = Math.max(worst, relErr(got, want));
    }
    measured[cell] = `max relative |LoRA delta - (merged.gguf - base.gguf)| ${worst.toExponential(2)}`;
    expect(worst).toBeLessThan(1e-4);
  },
  "merge-onnx": (c, cell) => mergeOnnxCell(c, cell, "model.onnx"),
  "merge-onnx-legacy": (c, cell) => mergeOnnxCell(c, cell, "legacy.onnx"),
  /** graft with default flags, fed the imported adapter's vectors from onnxruntime-node; zero vectors are the base. */
  async graft(c, cell) {
    const out = fresh("model.onnx");
    await graftOnnxFile({ model: join(c.dir, "model.onnx"), adapter: join(c.dir, "adapter"), output: out });
    const spec = readGraftSpec({ bytes: new Uint8Array(readFileSync(out)) });
    const ref = peftLogits(c);
    const none = await runLogits(out, c, adapterFeeds({ adapter: null, spec }).feeds);
    const got = await runLogits(out, c, adapterFeeds({ adapter: await imported(c, "model.onnx"), spec }).feeds);
    const baseErr = maxAbs(none, ref.base);
    const err = maxAbs(got, ref.peft);
    measured[cell] = `max |logits - PEFT's| ${err.toExponential(2)}; zero feeds vs base ${baseErr.toExponential(2)}`;
    expect(baseErr).toBeLessThan(1e-5);
    expect(err).toBeLessThan(1e-4);
  },
  /**
   * export-onnx-adapter for a grafted model: the file's parameters, fed as the inputs they name, give PEFT's logits.
   * (onnxruntime-node 1.30 has no LoraAdapter API: onnxruntime's own reading of the file is not exercised here.)
   */
  async "onnx-adapter"(c, cell) {
    const out = fresh("model.onnx");
    const g = await graftOnnxFile({
      model: join(c.dir, "model.onnx"),
      adapter: join(c.dir, "adapter"),
      output: out,
      defaults: false,
    });
    const file = writeOnnxAdapter({ adapter: await imported(c, "model.onnx"), spec: g.spec });
    const feeds: Record<string, FeedTensor> = {};
    for (const p of readOnnxAdapterFile(file.bytes).parameters) {
      expect(p.dtype).toBe("float32");
      feeds[p.name] = { type: "float32", dims: p.dims, data: Float32Array.from(p.data) };
    }
    expectPeft(cell, await runLogits(out, c, feeds), peftLogits(c).peft);
  },
};

/** Every F32 tensor of a GGUF file, by name, as (out, in) row-major values. */
async function ggufTensors(path: string): Promise<Map<string, { ne: number[]; data: Float32Array }>> {
  const file: GgufFile = await readGgufFile(path);
  const bytes = readFileSync(path);
  const out = new Map<string, { ne: number[]; data: Float32Array }>();
  for (const t of file.tensors) {
    expect([t.name, t.type]).toEqual([t.name, 0]);
    const at = file.dataOffset + t.offset;
    out.set(t.name, {
      ne: t.ne,
      data: new Float32Array(bytes.buffer.slice(bytes.byteOffset + at, bytes.byteOffset + at + t.byteLength)),
    });
  }
  return out;
}

/** Largest |a - b| over all elements, relative to max |b|. */
function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let scale = 0;
  for (let i = 0; i < b.length; i++) scale = Math.max(scale, Math.abs(b[i]!));
  return maxAbs(a, b) / Math.max(scale, 1e-12);
}

async function mergeOnnxCell(c: ZooCase & { dir: string }, cell: string, model: string): Promise<void> {
  const out = fresh("model.onnx");
  await mergeOnnx({ model: join(c.dir, model), adapter: join(c.dir, "adapter"), output: out, durable: false });
  expectPeft(cell, await runLogits(out, c), peftLogits(c).peft);
}

/** A cell's body for its expectation: the path's check, a typed refusal, or the exporter's recorded failure. */
function body(family: string, path: string, expectation: string): () => Promise<void> {
  const cell = `${family}/${path}`;
  return async () => {
    const c = loadCase(family);
    if (expectation === "n/a") {
      const file = path.startsWith("gguf") ? "base.gguf" : path === "merge-onnx-legacy" ? "legacy.onnx" : "model.onnx";
      const e = c.exports.find((x) => x.file === file);
      expect(e?.ok).toBe(false);
      expect(e?.error).toBeTruthy();
      return;
    }
    const run = CELLS[path];
    if (!run) throw new Error(`no check for path ${path}`);
    if (expectation === "exact") {
      try {
        await run(c, cell);
      } catch (e) {
        measured[cell] ??= `${isVeraError(e) ? e.code : "untyped"}: ${(e as Error).message.slice(0, 300)}`;
        throw e;
      }
      return;
    }
    const code = /^refuse:([A-Z_]+)$/.exec(expectation)?.[1];
    if (!code) throw new Error(`bad expectation ${expectation} for ${cell}`);
    const err = await run(c, cell).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isVeraError(err) ? err.code : String(err)).toBe(code);
  };
}

describe("the zoo's expectation table", () => {
  it("covers every family folder and every path, and names only real cells as known wrong", () => {
    const cells = Object.entries(TABLE.families).flatMap(([f, row]) => Object.keys(row).map((p) => `${f}/${p}`));
    for (const [f, row] of Object.entries(TABLE.families)) {
      expect(Object.keys(row).sort()).toEqual(Object.keys(TABLE.paths).sort());
      expect(loadCase(f).family).toBe(f);
    }
    const manifest = JSON.parse(readFileSync(join(ZOO, "MANIFEST.json"), "utf8")) as { families: object };
    expect(Object.keys(TABLE.families).sort()).toEqual(Object.keys(manifest.families).sort());
    for (const k of Object.keys(TABLE.known_wrong)) expect(cells).toContain(k);
  });

  it("README.md's support table is the one rendered from it", () => {
    const readme = readFileSync(join(__dirname, "..", "README.md"), "utf8");
    const start = readme.indexOf(SUPPORT_TABLE_BEGIN);
    const end = readme.indexOf(SUPPORT_TABLE_END);
    expect(start).toBeGreaterThan(0);
    expect(readme.slice(start, end + SUPPORT_TABLE_END.length)).toBe(renderSupportTable(TABLE));
  });
});

for (const [family, row] of Object.entries(TABLE.families))
  describe(family, () => {
    for (const [path, expectation] of Object.entries(row)) {
      const wrong = TABLE.known_wrong[`${family}/${path}`];
      if (wrong) it.fails(`${path}: KNOWN WRONG today (${wrong})`, body(family, path, expectation));
      else it(`${path}: ${expectation}`, body(family, path, expectation));
    }
  });

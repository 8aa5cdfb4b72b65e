/**
 * Merges real PEFT VeRA adapters into ONNX models made by real exporters (fixtures/onnx, see
 * generate.py and MANIFEST.json), runs base and merged models in onnxruntime-node, and compares
 * with the PEFT reference. Also proves the output differs from the input only in merged weights.
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { mergeOnnx, type MergeReport } from "../src/merge/index.js";
import { readPeftFolder } from "../src/node/peft-folder.js";
import { importPeft } from "../src/peft/import-peft.js";
import { baseShapesFromOnnx } from "../src/peft/base-shapes-from-onnx.js";
import { createAdapter } from "../src/format/create.js";
import { listLinearWeights, readInlineValues, readOnnxModel } from "../src/onnx/index.js";
import {
  f32Bytes,
  FIXTURES,
  fixtureManifest,
  loadReference,
  maxAbsDiff,
  modelProto,
  perOutput,
  rng,
  runModel,
  type FixtureReference,
} from "./onnx-helpers.js";

const manifest = fixtureManifest();
const cases = Object.keys(manifest.cases).filter((c) => c !== "quantized");
const work = mkdtempSync(join(tmpdir(), "vera-merge-fx-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

// An independent protobuf field walker (not src/onnx's), for the byte-identity checks.
interface F {
  field: number;
  start: number;
  end: number;
  dataStart: number;
  dataEnd: number;
}
function walk(b: Uint8Array, start: number, end: number): F[] {
  const out: F[] = [];
  let p = start;
  const vint = (): number => {
    let v = 0;
    let m = 1;
    for (;;) {
      const x = b[p++]!;
      v += (x & 0x7f) * m;
      m *= 128;
      if (x < 0x80) return v;
    }
  };
  while (p < end) {
    const s = p;
    const t = vint();
    const wire = t & 7;
    let ds = p;
    if (wire === 0) vint();
    else if (wire === 1) p += 8;
    else if (wire === 5) p += 4;
    else if (wire === 2) {
      const n = vint();
      ds = p;
      p += n;
    } else throw new Error(`wire type ${wire}`);
    out.push({ field: Math.floor(t / 8), start: s, end: p, dataStart: wire === 2 ? ds : s, dataEnd: p });
  }
  return out;
}
const eq = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && a.every((x, i) => x === b[i]);
const td = new TextDecoder();
function tensorName(b: Uint8Array, f: F): string {
  const n = walk(b, f.dataStart, f.dataEnd).find((x) => x.field === 8)!;
  return td.decode(b.subarray(n.dataStart, n.dataEnd));
}

/**
 * Every byte of the output .onnx outside the merged initializers' value fields (raw_data 9,
 * float_data 4, int32_data 5) equals the input's: same top-level fields, same graph fields, same
 * initializer fields apart from those value fields. Value fields of merged weights must change.
 */
function expectOnlyWeightsChanged(a: Uint8Array, b: Uint8Array, merged: Set<string>): number {
  const ta = walk(a, 0, a.length);
  const tb = walk(b, 0, b.length);
  expect(tb.map((f) => f.field)).toEqual(ta.map((f) => f.field));
  let changed = 0;
  ta.forEach((fa, i) => {
    const fb = tb[i]!;
    if (fa.field !== 7) return expect(eq(a.subarray(fa.start, fa.end), b.subarray(fb.start, fb.end))).toBe(true);
    const ga = walk(a, fa.dataStart, fa.dataEnd);
    const gb = walk(b, fb.dataStart, fb.dataEnd);
    expect(gb.map((f) => f.field)).toEqual(ga.map((f) => f.field));
    ga.forEach((x, j) => {
      const y = gb[j]!;
      const same = eq(a.subarray(x.start, x.end), b.subarray(y.start, y.end));
      if (x.field !== 5 || !merged.has(tensorName(a, x)))
        return expect(same, `graph field ${x.field} #${j}`).toBe(true);
      const xa = walk(a, x.dataStart, x.dataEnd);
      const xb = walk(b, y.dataStart, y.dataEnd);
      expect(xb.map((f) => f.field)).toEqual(xa.map((f) => f.field));
      let valuesChanged = false;
      xa.forEach((u, k) => {
        const v = xb[k]!;
        const s = eq(a.subarray(u.start, u.end), b.subarray(v.start, v.end));
        if ([4, 5, 9].includes(u.field)) valuesChanged ||= !s;
        else expect(s, `tensor field ${u.field}`).toBe(true);
      });
      expect(valuesChanged, tensorName(a, x)).toBe(true);
      changed++;
    });
  });
  return changed;
}

/** External data files: equal outside the merged tensors' ranges, different inside each. */
function expectDataOnlyWeightsChanged(dirA: string, dirB: string, report: MergeReport): number {
  const ranges = new Map<string, Array<[number, number]>>();
  const model = readOnnxModel({ bytes: new Uint8Array(readFileSync(report.model)) });
  const byName = new Map(model.graphs.flatMap((g) => g.initializers).map((t) => [t.name, t]));
  for (const m of report.modules) {
    const t = byName.get(m.initializer)!;
    if (t.storage.kind !== "external") continue;
    const list = ranges.get(t.storage.location) ?? [];
    const len = t.dims.reduce((x, y) => x * y, 1) * (m.dtype === "F32" ? 4 : 2);
    if (!list.some(([s]) => s === (t.storage as { offset: number }).offset))
      list.push([t.storage.offset, t.storage.offset + len]);
    ranges.set(t.storage.location, list);
  }
  let checked = 0;
  for (const f of readdirSync(dirA)) {
    if (f === "model.onnx" || f.endsWith(".json")) continue;
    const a = new Uint8Array(readFileSync(join(dirA, f)));
    const b = new Uint8Array(readFileSync(join(dirB, f)));
    expect(b.length, f).toBe(a.length);
    const mask = new Uint8Array(a.length);
    for (const [s, e] of ranges.get(f) ?? []) {
      mask.fill(1, s, e);
      expect(eq(a.subarray(s, e), b.subarray(s, e)), `${f} [${s}, ${e}) should change`).toBe(false);
      checked++;
    }
    for (let i = 0; i < a.length; i++)
      if (!mask[i] && a[i] !== b[i]) throw new Error(`${f}: byte ${i} changed outside merged weights`);
  }
  return checked;
}

describe("merge into exported fixtures (onnxruntime-node vs PEFT reference)", () => {
  it("has the fixture cases the issue asks for", () => {
    for (const c of [
      "llama-dynamo",
      "llama-dynamo-wrapped",
      "gpt2-dynamo",
      "gpt2-dynamo-wrapped",
      "legacy-llama-folded",
      "legacy-llama-unfolded-wrapped",
      "legacy-gpt2-folded",
      "legacy-llama-fp16",
      "genai-fused",
    ])
      expect(cases).toContain(c);
    expect(manifest.tools.legacy_torch).toMatch(/^1\.13/);
  });

  for (const c of cases) {
    it(`${c}: merged logits within 1e-4 of the reference, only merged weights changed`, async () => {
      const ref = loadReference(c);
      const dir = join(FIXTURES, c);
      const out = join(work, c, "model.onnx");
      const report = await mergeOnnx({
        model: join(dir, "model.onnx"),
        adapter: join(dir, ref.adapter),
        output: out,
        durable: false,
      });
      const adapterCfg = JSON.parse(readFileSync(join(dir, ref.adapter, "adapter_config.json"), "utf8")) as {
        target_modules: string[];
      };
      // every adapted module merged, each with a non-zero delta
      expect(report.modules.length).toBeGreaterThan(0);
      for (const m of report.modules) {
        expect(adapterCfg.target_modules.some((t) => m.module.endsWith(t))).toBe(true);
        expect(m.maxAbsDelta).toBeGreaterThan(0);
      }
      const base = await runModel(join(dir, "model.onnx"), ref);
      const merged = await runModel(out, ref);
      const want = perOutput(ref, "reference");
      expect(maxAbsDiff(base, perOutput(ref, "base"))).toBeLessThan(1e-4);
      expect(maxAbsDiff(base, want)).toBeGreaterThan(1e-2); // the adapter matters
      expect(maxAbsDiff(merged, want)).toBeLessThan(1e-4);
      // byte identity
      const a = new Uint8Array(readFileSync(join(dir, "model.onnx")));
      const b = new Uint8Array(readFileSync(out));
      const inline = new Set(report.modules.filter((m) => !m.storage.startsWith("external")).map((m) => m.initializer));
      const changed = expectOnlyWeightsChanged(a, b, inline);
      expect(changed).toBe(inline.size);
      const ext = expectDataOnlyWeightsChanged(dir, join(work, c), report);
      expect(changed + ext).toBe(report.weights);
    });
  }

  it("legacy-llama-fp16: stays close to PEFT's float32 logits and covers every storage kind", async () => {
    const ref = loadReference("legacy-llama-fp16");
    const kinds = new Set(Object.values(ref.storage!).map((s) => s.kind));
    expect([...kinds].sort()).toEqual(["bf16_raw", "f16_int32", "f16_raw", "f32_float_data"]);
    const out = join(work, "fp16-b", "model.onnx");
    const report = await mergeOnnx({
      model: join(FIXTURES, "legacy-llama-fp16", "model.onnx"),
      adapter: join(FIXTURES, "adapters", "tiny-llama"),
      output: out,
      durable: false,
    });
    expect(new Set(report.modules.map((m) => m.storage))).toEqual(new Set(["raw_data", "int32_data", "float_data"]));
    const merged = await runModel(out, ref);
    // half-precision weights: the PEFT float32 logits are only approximately reachable
    expect(maxAbsDiff(merged, [ref.peft_reference!])).toBeLessThan(2e-2);
  });

  it("an adapter on the tied lm_head: refused as shared, then merged with untie (the embedding keeps its weight)", async () => {
    const dir = join(FIXTURES, "legacy-llama-unfolded-wrapped");
    const ref = JSON.parse(readFileSync(join(dir, "reference.untie.json"), "utf8")) as FixtureReference;
    const model = join(dir, "model.onnx");
    const adapter = join(dir, ref.adapter);
    await expect(mergeOnnx({ model, adapter, output: join(work, "tied-refused", "model.onnx") })).rejects.toMatchObject(
      { code: "ONNX_SHARED_WEIGHT" },
    );
    const out = join(work, "untie", "model.onnx");
    const report = await mergeOnnx({ model, adapter, output: out, untie: true, durable: false });
    const head = report.modules.find((m) => m.module === "lm_head")!;
    expect(head.untiedFrom).toBe("m.model.embed_tokens.weight");
    expect(head.initializer).toBe("m.model.embed_tokens.weight.untied");
    expect(report.warnings.join()).toMatch(/own merged copy/);
    const merged = await runModel(out, ref);
    expect(maxAbsDiff(await runModel(model, ref), perOutput(ref, "reference"))).toBeGreaterThan(1e-2);
    expect(maxAbsDiff(merged, perOutput(ref, "reference"))).toBeLessThan(1e-4);
    // the shared data file keeps every original byte; the untied copy is appended after them
    const a = new Uint8Array(readFileSync(join(dir, "m.model.embed_tokens.weight")));
    const b = new Uint8Array(readFileSync(join(work, "untie", "m.model.embed_tokens.weight")));
    expect(eq(b.subarray(0, a.length), a)).toBe(true);
    expect(b.length).toBeGreaterThanOrEqual(a.length + a.length);
    // and the model gained exactly one initializer
    const before = readOnnxModel({ bytes: new Uint8Array(readFileSync(model)) }).graphs[0]!.initializers.length;
    expect(readOnnxModel({ bytes: new Uint8Array(readFileSync(out)) }).graphs[0]!.initializers.length).toBe(before + 1);
  });

  it("untie with inline weights: the Gather keeps the original, the MatMul reads the merged copy", async () => {
    const vocab = 10;
    const hidden = 6;
    const r = rng(3);
    const emb = Array.from({ length: vocab * hidden }, () => r());
    const src = join(work, "tied-inline.onnx");
    writeFileSync(
      src,
      modelProto({
        nodes: [
          { opType: "Gather", inputs: ["emb.weight", "ids"], outputs: ["h"], name: "/emb/Gather" },
          {
            opType: "Transpose",
            inputs: ["emb.weight"],
            outputs: ["embT"],
            name: "/lm_head/Transpose",
            attributes: [{ name: "perm", ints: [1, 0] }],
          },
          { opType: "MatMul", inputs: ["h", "embT"], outputs: ["logits"], name: "/lm_head/MatMul" },
        ],
        initializers: [{ name: "emb.weight", dims: [vocab, hidden], dataType: 1, raw: f32Bytes(emb) }],
        inputs: [{ name: "ids", elemType: 7, shape: [1, 3] }],
        outputs: [
          { name: "logits", elemType: 1, shape: [1, 3, vocab] },
          { name: "h", elemType: 1, shape: [1, 3, hidden] },
        ],
      }),
    );
    const adapter = createAdapter({
      modules: [{ name: "lm_head", inFeatures: hidden, outFeatures: vocab }],
      rank: 3,
      seed: 9,
    });
    adapter.modules[0]!.lambdaB.forEach((_, i, a) => (a[i] = r()));
    const out = join(work, "tied-inline-merged.onnx");
    await mergeOnnx({ model: src, adapter, output: out, untie: true, durable: false });
    const io = {
      inputs: [{ name: "ids", dtype: "int64" as const, shape: [1, 3], data: [1, 4, 9] }],
      outputs: ["logits", "h"],
    };
    const [l0, h0] = await runModel(src, io);
    const [l1, h1] = await runModel(out, io);
    expect(maxAbsDiff([h1!], [h0!])).toBe(0); // the embedding is untouched
    // logits = h @ (W + delta)^T: recompute with the merged copy read back from the output
    const m = readOnnxModel({ bytes: new Uint8Array(readFileSync(out)) });
    const copy = m.graphs[0]!.initializers.find((t) => t.name === "emb.weight.untied")!;
    const w = new Float32Array(readInlineValues(m.bytes, copy, "F32").buffer);
    expect(maxAbsDiff([w], [Float32Array.from(emb)])).toBeGreaterThan(1e-3);
    const want = new Float32Array(3 * vocab);
    for (let t = 0; t < 3; t++)
      for (let v = 0; v < vocab; v++)
        for (let k = 0; k < hidden; k++) want[t * vocab + v]! += h0![t * hidden + k]! * w[v * hidden + k]!;
    expect(maxAbsDiff([l1!], [want])).toBeLessThan(1e-5);
    expect(maxAbsDiff([l1!], [l0!])).toBeGreaterThan(1e-3);
  });

  it("a verakit adapter object gives the same merged model as the PEFT folder", async () => {
    const dir = join(FIXTURES, "gpt2-dynamo");
    const bytes = new Uint8Array(readFileSync(join(dir, "model.onnx")));
    const folder = await readPeftFolder({ dir: join(FIXTURES, "adapters", "gpt2") });
    const { adapter } = importPeft({
      config: folder.configText,
      weights: folder.weights,
      base: baseShapesFromOnnx({ weights: listLinearWeights({ model: readOnnxModel({ bytes }) }) }),
    });
    const o1 = join(work, "obj", "model.onnx");
    const o2 = join(work, "dir", "model.onnx");
    await mergeOnnx({ model: join(dir, "model.onnx"), adapter, output: o1, durable: false });
    await mergeOnnx({
      model: join(dir, "model.onnx"),
      adapter: join(FIXTURES, "adapters", "gpt2"),
      output: o2,
      durable: false,
    });
    expect(
      eq(
        new Uint8Array(readFileSync(join(work, "obj", "model.onnx.data"))),
        new Uint8Array(readFileSync(join(work, "dir", "model.onnx.data"))),
      ),
    ).toBe(true);
  });
});

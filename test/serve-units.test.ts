/**
 * graftOnnx, adapterFeeds and readGraftSpec without a runtime: the graft is additive (every original byte of every
 * initializer is unchanged), refusals carry the locator's or the serving codes, feeds are shaped and checked.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { bundleForBrowser } from "./bundle-helpers.js";
import { beforeAll, describe, expect, it } from "vitest";
import { VeraError } from "../src/errors.js";
import type { VeraAdapter } from "../src/format/types.js";
import { OnnxErrorCode, readOnnxModel, type OnnxModel } from "../src/onnx/index.js";
import {
  baseFeeds,
  checkFeeds,
  adapterFeeds,
  encodeGraftSpec,
  GRAFT_METADATA_KEY,
  graftInputNames,
  graftOnnx,
  readGraftSpec,
  ServeErrorCode,
} from "../src/serve/index.js";
import { caseAdapter, loadCase } from "./serve-helpers.js";

const onnxFixture = (p: string): string => join(__dirname, "../fixtures/onnx", p);
const codeOf = (f: () => unknown): string => {
  try {
    f();
  } catch (e) {
    if (e instanceof VeraError) return e.code;
    throw e;
  }
  throw new Error("did not throw");
};

let llama: ReturnType<typeof loadCase>;
let model: OnnxModel;
let a1: VeraAdapter;
let r4: VeraAdapter;
beforeAll(async () => {
  llama = loadCase("llama-dynamo");
  model = readOnnxModel({ bytes: new Uint8Array(readFileSync(llama.modelPath)) });
  a1 = await caseAdapter(llama, "a1");
  r4 = await caseAdapter(llama, "r4");
});

describe("graftOnnx", () => {
  it("leaves every original initializer's bytes identical and only appends (inputs, initializers, nodes, metadata)", () => {
    const g = graftOnnx({ model, adapter: a1 });
    const after = readOnnxModel({ bytes: g.bytes });
    const byName = new Map(after.graphs[0]!.initializers.map((t) => [t.name, t]));
    const before = model.graphs[0]!.initializers;
    expect(before.length).toBeGreaterThan(10);
    for (const t of before) {
      const u = byName.get(t.name)!;
      expect(u, t.name).toBeDefined();
      expect(
        Buffer.compare(model.bytes.subarray(t.span.start, t.span.end), g.bytes.subarray(u.span.start, u.span.end)),
      ).toBe(0);
    }
    // the original nodes are all there, in order; grafted ones come in between
    const names = after.graphs[0]!.nodes.map((n) => n.name);
    let k = 0;
    for (const n of model.graphs[0]!.nodes) {
      k = names.indexOf(n.name, k);
      expect(k, n.name).toBeGreaterThanOrEqual(0);
    }
    // one Slice per distinct size, projections stored once
    const proj = after.graphs[0]!.initializers.filter((t) => /^verakit\.graft\.vera_[AB]_t$/.test(t.name));
    expect(proj.map((t) => t.dims)).toEqual([
      [a1.maxIn, a1.rank],
      [a1.rank, a1.maxOut],
    ]);
    const sizes = new Set([
      ...a1.modules.map((m) => `A${m.inFeatures}`),
      ...a1.modules.map((m) => `B${m.outFeatures}`),
    ]);
    const full = [`A${a1.maxIn}`, `B${a1.maxOut}`].filter((s) => sizes.has(s)).length;
    expect(
      after.graphs[0]!.nodes.filter((n) => n.opType === "Slice" && n.inputs[0]!.startsWith("verakit.graft.vera_"))
        .length,
    ).toBe(sizes.size - full);
    // the record
    expect(readGraftSpec({ bytes: g.bytes })).toEqual(g.spec);
    expect(g.spec.modules.map((m) => m.name)).toEqual(a1.modules.map((m) => m.name));
    expect(g.modules.every((m) => m.activations === "FLOAT")).toBe(true);
  });

  it("declares d and b as plain inputs; with defaults: true, also initializers (d = ones, b = zeros)", () => {
    const g = graftOnnx({ model, adapter: a1, batched: true, defaults: true });
    const m = readOnnxModel({ bytes: g.bytes });
    const { d, b } = graftInputNames(a1.modules[0]!.name);
    expect(m.graphs[0]!.inputs).toEqual(expect.arrayContaining([d, b]));
    const dt = m.graphs[0]!.initializers.find((t) => t.name === d)!;
    const bt = m.graphs[0]!.initializers.find((t) => t.name === b)!;
    expect(dt.dims).toEqual([1, a1.rank]);
    expect(bt.dims).toEqual([1, a1.modules[0]!.outFeatures]);
    const raw = (t: typeof dt): Float32Array =>
      t.storage.kind === "raw"
        ? new Float32Array(g.bytes.slice(t.storage.start, t.storage.end).buffer)
        : new Float32Array();
    expect([...raw(dt)].every((x) => x === 1)).toBe(true);
    expect([...raw(bt)].every((x) => Object.is(x, 0))).toBe(true);
    const plain = readOnnxModel({ bytes: graftOnnx({ model, adapter: a1 }).bytes });
    expect(plain.graphs[0]!.inputs).toEqual(expect.arrayContaining([d, b]));
    expect(plain.graphs[0]!.initializers.some((t) => t.name === d || t.name === b)).toBe(false);
  });

  it("refuses what it cannot graft, with the merge's codes or SERVE_GRAPH_UNSUPPORTED", async () => {
    const grafted = readOnnxModel({ bytes: graftOnnx({ model, adapter: a1 }).bytes });
    expect(codeOf(() => graftOnnx({ model: grafted, adapter: a1 }))).toBe(ServeErrorCode.SERVE_GRAPH_UNSUPPORTED);
    expect(codeOf(() => graftOnnx({ model, adapter: a1, dtype: "f16" }))).toBe(ServeErrorCode.SERVE_GRAPH_UNSUPPORTED);
    // stored projections are grafted as they are, but not of the wrong size
    const stored: VeraAdapter = { ...a1, storedProjections: { A: new Float32Array(1), B: new Float32Array(1) } };
    expect(codeOf(() => graftOnnx({ model, adapter: stored }))).toBe(ServeErrorCode.SERVE_GRAPH_UNSUPPORTED);
    const missing: VeraAdapter = {
      ...a1,
      modules: [...a1.modules, { ...a1.modules[0]!, name: "model.layers.9.mlp.up_proj" }],
    };
    expect(codeOf(() => graftOnnx({ model, adapter: missing }))).toBe(OnnxErrorCode.ONNX_MODULE_NOT_FOUND);
    const skipped = graftOnnx({ model, adapter: missing, skipMissing: true });
    expect(skipped.skipped).toEqual(["model.layers.9.mlp.up_proj"]);
    expect(skipped.spec.modules.length).toBe(a1.modules.length);
    const wrongShape: VeraAdapter = {
      ...a1,
      modules: a1.modules.map((m, i) => (i === 0 ? { ...m, inFeatures: m.inFeatures + 1 } : m)),
    };
    expect(codeOf(() => graftOnnx({ model, adapter: wrongShape }))).toBe(OnnxErrorCode.ONNX_SHAPE_MISMATCH);
    // 8-bit quantized weights (MatMulInteger / DynamicQuantizeMatMul: the activations are quantized too) and fused q/k/v
    const tiny = await caseAdapter(
      { modelPath: onnxFixture("legacy-llama-folded/model.onnx"), adapterDir: onnxFixture("adapters") },
      "tiny-llama",
    );
    const int8 = readOnnxModel({ bytes: new Uint8Array(readFileSync(onnxFixture("quantized/int8.onnx"))) });
    expect(codeOf(() => graftOnnx({ model: int8, adapter: tiny }))).toBe(OnnxErrorCode.ONNX_QUANTIZED);
    const fused = readOnnxModel({ bytes: new Uint8Array(readFileSync(onnxFixture("genai-fused/model.onnx"))) });
    expect(codeOf(() => graftOnnx({ model: fused, adapter: tiny }))).toBe(ServeErrorCode.SERVE_GRAPH_UNSUPPORTED);
  });
});

describe("adapterFeeds", () => {
  it("gives float32 tensors for every grafted module; rows of zeros for null; missing modules are zeros and reported", () => {
    const spec = graftOnnx({ model, adapter: a1, batched: true }).spec;
    const partial: VeraAdapter = { ...a1, modules: a1.modules.slice(1) };
    const f = adapterFeeds({ adapters: [a1, null, partial], spec });
    expect(f.batch).toBe(3);
    expect(f.missing).toEqual([{ index: 2, modules: [a1.modules[0]!.name] }]);
    expect(Object.keys(f.feeds).length).toBe(2 * spec.modules.length);
    const m0 = a1.modules[0]!;
    const { d, b } = graftInputNames(m0.name);
    expect(f.feeds[d]!.dims).toEqual([3, a1.rank]);
    expect(f.feeds[b]!.dims).toEqual([3, m0.outFeatures]);
    expect(f.feeds[b]!.type).toBe("float32");
    expect(f.feeds[d]!.data.subarray(0, a1.rank)).toEqual(m0.lambdaD);
    expect(f.feeds[b]!.data.subarray(0, m0.outFeatures)).toEqual(m0.lambdaB);
    expect([...f.feeds[b]!.data.subarray(m0.outFeatures)].every((x) => x === 0)).toBe(true);
    const m1 = a1.modules[1]!;
    expect(f.feeds[graftInputNames(m1.name).b]!.data.subarray(2 * m1.outFeatures)).toEqual(m1.lambdaB);
  });

  it("refuses mismatched adapters, lists for unbatched graphs, empty lists and adapters with modules not grafted", () => {
    const spec = graftOnnx({ model, adapter: a1 }).spec;
    const batchedSpec = { ...spec, batched: true };
    expect(codeOf(() => adapterFeeds({ adapter: r4, spec }))).toBe(ServeErrorCode.SERVE_SPEC_MISMATCH);
    const otherSeed: VeraAdapter = { ...a1, prng: { ...a1.prng, seed: a1.prng.seed + 1n } };
    try {
      adapterFeeds({ adapters: [a1, otherSeed], spec: batchedSpec });
      throw new Error("accepted");
    } catch (e) {
      expect((e as VeraError).code).toBe(ServeErrorCode.SERVE_SPEC_MISMATCH);
      expect((e as VeraError).path).toBe("adapters[1].prng.seed");
    }
    const bf16: VeraAdapter = { ...a1, projectionRounding: "bf16" };
    expect(codeOf(() => adapterFeeds({ adapter: bf16, spec }))).toBe(ServeErrorCode.SERVE_SPEC_MISMATCH);
    const extra: VeraAdapter = { ...a1, modules: [...a1.modules, { ...a1.modules[0]!, name: "lm_head" }] };
    expect(codeOf(() => adapterFeeds({ adapter: extra, spec }))).toBe(ServeErrorCode.SERVE_MODULE_NOT_GRAFTED);
    expect(codeOf(() => adapterFeeds({ adapters: [a1], spec }))).toBe(ServeErrorCode.SERVE_FEEDS);
    expect(codeOf(() => adapterFeeds({ adapters: [], spec: batchedSpec }))).toBe(ServeErrorCode.SERVE_FEEDS);
    expect(codeOf(() => adapterFeeds({ spec }))).toBe(ServeErrorCode.SERVE_FEEDS);
    expect(codeOf(() => adapterFeeds({ adapter: a1, spec, sessionInputs: ["input_ids"] }))).toBe(
      ServeErrorCode.SERVE_FEEDS,
    );
  });
});

describe("readGraftSpec", () => {
  it("reads the record from bytes or metadata; a model without one is SERVE_NOT_GRAFTED", () => {
    const g = graftOnnx({ model, adapter: a1 });
    expect(readGraftSpec({ metadata: { [GRAFT_METADATA_KEY]: encodeGraftSpec(g.spec) } })).toEqual(g.spec);
    expect(codeOf(() => readGraftSpec({ bytes: model.bytes }))).toBe(ServeErrorCode.SERVE_NOT_GRAFTED);
    expect(codeOf(() => readGraftSpec({ metadata: { [GRAFT_METADATA_KEY]: "{" } }))).toBe(
      ServeErrorCode.SERVE_NOT_GRAFTED,
    );
  });
});

describe("the serving core bundles for browsers", () => {
  it("src/serve/index.ts has no Node built-ins", async () => {
    const r = await bundleForBrowser(join(__dirname, "../src/serve/index.ts"));
    expect(
      Object.keys(r.metafile!.inputs).filter((i) => i.startsWith("node:") || i.includes("onnxruntime-node")),
    ).toEqual([]);
  });
});

describe("checkFeeds and baseFeeds", () => {
  it("refuse (SERVE_FEEDS) a missing vector, a wrong shape, mixed batch sizes and a feed the session does not take", () => {
    const spec = graftOnnx({ model, adapter: a1, batched: true }).spec;
    const good = adapterFeeds({ adapters: [a1, null], spec }).feeds;
    expect(() => checkFeeds({ spec, feeds: good })).not.toThrow();
    expect(baseFeeds({ spec, batch: 2 }).feeds).toEqual(adapterFeeds({ adapters: [null, null], spec }).feeds);
    const { d, b } = graftInputNames(spec.modules[0]!.name);
    const without = { ...good };
    delete without[d];
    const paths = (f: () => unknown): string[] => {
      try {
        f();
      } catch (e) {
        expect((e as VeraError).code).toBe(ServeErrorCode.SERVE_FEEDS);
        return (e as VeraError).issues.map((i) => i.path ?? "");
      }
      return [];
    };
    expect(paths(() => checkFeeds({ spec, feeds: without }))).toEqual([d]);
    expect(paths(() => checkFeeds({ spec, feeds: { ...good, [b]: { dims: [2, 3] } } }))).toEqual([b]);
    expect(
      paths(() => checkFeeds({ spec, feeds: { ...good, [b]: { dims: [3, spec.modules[0]!.outFeatures] } } })),
    ).toEqual([b]);
    expect(paths(() => checkFeeds({ spec, feeds: good, sessionInputs: ["input_ids"] }))).toHaveLength(1);
    expect(codeOf(() => baseFeeds({ spec: { ...spec, batched: false }, batch: 2 }))).toBe(ServeErrorCode.SERVE_FEEDS);
  });
});

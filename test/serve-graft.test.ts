/**
 * Grafted models from real exports (fixtures/serve: torch dynamo Llama and GPT-2 Conv1D, a legacy TorchScript Llama,
 * a float16 Llama) run in onnxruntime-node against PEFT's logits for three real PEFT VeRA adapters per model.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { VeraAdapter } from "../src/format/types.js";
import { adapterFeeds, readGraftSpec, ServeErrorCode, type GraftSpec } from "../src/serve/index.js";
import { graftOnnxFile } from "../src/serve/node/index.js";
import { loadOrt } from "./onnx-helpers.js";
import { caseAdapter, loadCase, maxDiff, maxDiffRows, peftLogits, runLogits } from "./serve-helpers.js";

const work = mkdtempSync(join(tmpdir(), "vera-serve-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function bitsEqual(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

interface Loaded {
  c: ReturnType<typeof loadCase>;
  adapters: VeraAdapter[];
  peft: Record<string, Float32Array>;
}
async function load(name: string): Promise<Loaded> {
  const c = loadCase(name);
  const adapters = await Promise.all(c.adapters.map((a) => caseAdapter(c, a)));
  return { c, adapters, peft: peftLogits(name) };
}

let n = 0;
async function graft(
  l: Loaded,
  opts: { batched?: boolean; dtype?: "f32" | "f16"; defaults?: boolean } = {},
): Promise<{ path: string; spec: GraftSpec }> {
  const path = join(work, `g${n++}`, "model.onnx");
  const r = await graftOnnxFile({ model: l.c.modelPath, adapter: join(l.c.adapterDir, "a1"), output: path, ...opts });
  return { path, spec: r.spec };
}

const F32_CASES = ["llama-dynamo", "gpt2-dynamo-wrapped", "legacy-llama-unfolded"];

describe.each(F32_CASES)("%s (float32)", (name) => {
  let l: Loaded;
  let plain: { path: string; spec: GraftSpec };
  let withDefaults: { path: string; spec: GraftSpec };
  beforeAll(async () => {
    l = await load(name);
    plain = await graft(l);
    withDefaults = await graft(l, { defaults: true });
  });

  it("a run without feeds (inputs with defaults) is the base model, bit for bit", async () => {
    const base = await runLogits(l.c.modelPath, l.c.input_ids);
    const grafted = await runLogits(withDefaults.path, l.c.input_ids);
    expect(bitsEqual(grafted, base)).toBe(true);
    expect(maxDiff(grafted, l.peft.base!)).toBeLessThan(1e-5);
  });

  it("feeds for no adapter are the base model, bit for bit; the same graph records its spec", async () => {
    const spec = readGraftSpec({ bytes: new Uint8Array(readFileSync(plain.path)) });
    expect(spec).toEqual(plain.spec);
    const base = await runLogits(l.c.modelPath, l.c.input_ids);
    const grafted = await runLogits(plain.path, l.c.input_ids, adapterFeeds({ adapter: null, spec }).feeds);
    expect(bitsEqual(grafted, base)).toBe(true);
  });

  it("each adapter's feeds give its PEFT logits within 1e-4 (one graph, adapters swapped per run)", async () => {
    for (let i = 0; i < l.adapters.length; i++) {
      const f = adapterFeeds({ adapter: l.adapters[i]!, spec: plain.spec });
      expect(f.missing).toEqual([]);
      const got = await runLogits(plain.path, l.c.input_ids, f.feeds);
      const want = l.peft[`a${i + 1}`]!;
      expect(maxDiff(got, want)).toBeLessThan(1e-4);
      // and the adapter does change the output (the test could not pass with the branch ignored)
      expect(maxDiff(want, l.peft.base!)).toBeGreaterThan(1e-2);
    }
  });

  it("an adapter of another rank is refused (SERVE_SPEC_MISMATCH)", async () => {
    const r4 = await caseAdapter(l.c, "r4");
    expect(() => adapterFeeds({ adapter: r4, spec: plain.spec })).toThrowError(
      expect.objectContaining({ code: ServeErrorCode.SERVE_SPEC_MISMATCH }),
    );
  });
});

describe.each(["llama-dynamo", "gpt2-dynamo-wrapped"])("%s --batched", (name) => {
  it("4 sequences with 3 different adapters and one without: each row is that adapter's PEFT logits", async () => {
    const l = await load(name);
    const g = await graft(l, { batched: true });
    expect(l.c.input_ids.length).toBe(4);
    const f = adapterFeeds({ adapters: [l.adapters[0]!, l.adapters[1]!, l.adapters[2]!, null], spec: g.spec });
    expect(f.batch).toBe(4);
    const got = await runLogits(g.path, l.c.input_ids, f.feeds);
    const row = got.length / 4;
    for (let i = 0; i < 3; i++) expect(maxDiffRows(got, l.peft[`a${i + 1}`]!, row, i)).toBeLessThan(1e-4);
    expect(maxDiffRows(got, l.peft.base!, row, 3)).toBeLessThan(1e-5);
    // A different order gives the same rows, permuted.
    const f2 = adapterFeeds({ adapters: [null, l.adapters[2]!, l.adapters[0]!, l.adapters[1]!], spec: g.spec });
    const got2 = await runLogits(g.path, l.c.input_ids, f2.feeds);
    expect(maxDiffRows(got2, l.peft.base!, row, 0)).toBeLessThan(1e-5);
    expect(maxDiffRows(got2, l.peft.a3!, row, 1)).toBeLessThan(1e-4);
    expect(maxDiffRows(got2, l.peft.a1!, row, 2)).toBeLessThan(1e-4);
    expect(maxDiffRows(got2, l.peft.a2!, row, 3)).toBeLessThan(1e-4);
  });

  it("with defaults, a run without feeds is the base model for the whole batch, bit for bit", async () => {
    const l = await load(name);
    const g = await graft(l, { batched: true, defaults: true });
    const base = await runLogits(l.c.modelPath, l.c.input_ids);
    expect(bitsEqual(await runLogits(g.path, l.c.input_ids), base)).toBe(true);
  });
});

describe("llama-dynamo-fp16 (float16 weights and activations)", () => {
  // Measured with this fixture (PEFT on the float16 model in torch CPU; onnxruntime's float16 base alone is 2.4e-4
  // from it): f32 branch (Casts) <= 6.8e-4, f16 branch <= 5.8e-4. Bound: 2e-3.
  const TOL = 2e-3;
  it.each(["f32", "f16"] as const)(
    "branch %s: feeds for no adapter = the base; each adapter within tolerance",
    async (dtype) => {
      const l = await load("llama-dynamo-fp16");
      const g = await graft(l, { dtype });
      expect(g.spec.dtype).toBe(dtype);
      const base = await runLogits(l.c.modelPath, l.c.input_ids);
      const none = await runLogits(g.path, l.c.input_ids, adapterFeeds({ adapter: null, spec: g.spec }).feeds);
      expect(bitsEqual(none, base)).toBe(true);
      const fp32 = peftLogits("llama-dynamo");
      for (let i = 0; i < 3; i++) {
        const got = await runLogits(
          g.path,
          l.c.input_ids,
          adapterFeeds({ adapter: l.adapters[i]!, spec: g.spec }).feeds,
        );
        expect(maxDiff(got, l.peft[`a${i + 1}`]!)).toBeLessThan(TOL);
        expect(maxDiff(got, fp32[`a${i + 1}`]!)).toBeLessThan(TOL);
      }
    },
  );

  it.each(["f32", "f16"] as const)("branch %s, batched: rows of 3 adapters and none", async (dtype) => {
    const l = await load("llama-dynamo-fp16");
    const g = await graft(l, { dtype, batched: true });
    const base = await runLogits(l.c.modelPath, l.c.input_ids);
    const feeds = adapterFeeds({ adapters: [l.adapters[0]!, l.adapters[1]!, l.adapters[2]!, null], spec: g.spec });
    const got = await runLogits(g.path, l.c.input_ids, feeds.feeds);
    const row = got.length / 4;
    for (let i = 0; i < 3; i++) expect(maxDiffRows(got, l.peft[`a${i + 1}`]!, row, i)).toBeLessThan(TOL);
    expect(maxDiffRows(got, base, row, 3)).toBe(0);
  });
});

describe("a target whose weight is tied to the embedding (legacy export, lm_head)", () => {
  it("is grafted on its MatMul's output alone (no untying): PEFT's logits within 1e-4", async () => {
    const c = loadCase("legacy-llama-unfolded");
    const ref = JSON.parse(
      readFileSync(join(__dirname, "../fixtures/onnx/legacy-llama-unfolded-wrapped/reference.untie.json"), "utf8"),
    ) as { adapter: string; reference: number[] };
    const adapterDir = join(__dirname, "../fixtures/onnx/legacy-llama-unfolded-wrapped", ref.adapter);
    const path = join(work, `g${n++}`, "model.onnx");
    const r = await graftOnnxFile({ model: c.modelPath, adapter: adapterDir, output: path });
    expect(r.modules.map((m) => m.module)).toContain("lm_head");
    const adapter = await caseAdapter(
      { modelPath: c.modelPath, adapterDir: join(adapterDir, "..") },
      "tiny-llama-head",
    );
    const got = await runLogits(path, c.input_ids, adapterFeeds({ adapter, spec: r.spec }).feeds);
    expect(maxDiff(got, ref.reference)).toBeLessThan(1e-4);
  });
});

describe("a 4-bit model (MatMulNBits, which a merge refuses)", () => {
  it("is grafted without touching its weights: no adapter = the q4 base bit for bit; an adapter moves it to PEFT's", async () => {
    const fx = join(__dirname, "../fixtures/onnx");
    const ref = JSON.parse(readFileSync(join(fx, "legacy-llama-folded/reference.json"), "utf8")) as {
      inputs: Array<{ data: number[] }>;
      reference: number[];
      base: number[];
    };
    const ids = [ref.inputs[0]!.data];
    const modelPath = join(fx, "quantized/q4.onnx");
    const adapter = await caseAdapter({ modelPath, adapterDir: join(fx, "adapters") }, "tiny-llama");
    const path = join(work, `g${n++}`, "model.onnx");
    const r = await graftOnnxFile({ model: modelPath, adapter, output: path });
    expect(r.modules.filter((m) => m.opType === "MatMulNBits").length).toBe(14);
    const base = await runLogits(modelPath, ids);
    expect(bitsEqual(await runLogits(path, ids, adapterFeeds({ adapter: null, spec: r.spec }).feeds), base)).toBe(true);
    const got = await runLogits(path, ids, adapterFeeds({ adapter, spec: r.spec }).feeds);
    // Measured: the q4 base is 0.099 from PEFT's float base, the grafted q4 0.138 from PEFT's adapted logits, while the
    // adapter moves the logits by 0.62: the branch carries the adapter, quantization error stays what it was.
    const quantization = maxDiff(base, ref.base);
    const effect = maxDiff(ref.reference, ref.base);
    expect(maxDiff(got, ref.reference)).toBeLessThan(2 * quantization);
    expect(maxDiff(got, ref.reference)).toBeLessThan(effect / 3);
  });
});

describe("onnxruntime-node and inputs with defaults", () => {
  it("the session lists only inputs without an initializer; adapterFeeds({sessionInputs}) refuses feeds it would drop", async () => {
    const l = await load("llama-dynamo");
    const g = await graft(l, { defaults: true });
    const ort = await loadOrt();
    const s = await ort.InferenceSession.create(g.path, { logSeverityLevel: 3 });
    try {
      expect(s.inputNames).toEqual(["input_ids"]);
      expect(() => adapterFeeds({ adapter: l.adapters[0]!, spec: g.spec, sessionInputs: s.inputNames })).toThrowError(
        expect.objectContaining({ code: ServeErrorCode.SERVE_FEEDS }),
      );
    } finally {
      await s.release();
    }
    const p = await graft(l);
    const s2 = await ort.InferenceSession.create(p.path, { logSeverityLevel: 3 });
    try {
      expect(s2.inputNames.length).toBe(1 + 2 * p.spec.modules.length);
      expect(adapterFeeds({ adapter: l.adapters[0]!, spec: p.spec, sessionInputs: s2.inputNames }).batch).toBe(1);
    } finally {
      await s2.release();
    }
  });
});

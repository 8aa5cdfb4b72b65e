/**
 * `.onnx_adapter` files for ONNX models in both forms: the VeRA vectors of a grafted graph and the LoRA weights of an
 * Olive ExtractAdapters graph. fixtures/engines/check_onnx_adapters.py ran onnxruntime 1.30 on graphs built with the
 * real base weights and real PEFT adapters, with the files `vera export-onnx-adapter` wrote, against numpy's float64
 * x (W + delta)^T; these tests check that the library still writes those exact files and refuses what would not fit.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { VeraAdapter } from "../src/format/types.js";
import { loadAdapterFromPath } from "../src/node/load-adapter.js";
import { readBaseShapes } from "../src/node/read-base-shapes.js";
import { projectionsFor } from "../src/projections/for-adapter.js";
import { f16BitsToF32 } from "../src/numeric/half.js";
import { GRAFT_METADATA_KEY, graftSpecOf, parseGraftSpec, type GraftSpec } from "../src/serve/graft-spec.js";
import { readOnnxAdapterFile } from "../src/serve/onnx-adapter-file.js";
import { writeOnnxAdapter } from "../src/serve/write-onnx-adapter.js";
import { readOnnxModelInputs, type OnnxModelInput } from "../src/serve/write-onnx-adapter-inputs.js";
import { graftOnnx } from "../src/serve/graft-onnx.js";
import { readGraftSpec } from "../src/serve/read-graft-spec.js";
import { readOnnxModel } from "../src/onnx/read-onnx-model.js";
import { caseAdapter, loadCase } from "./serve-helpers.js";
import { findLoraInputs, oliveLoraInputNames, writeOnnxLoraAdapter } from "../src/serve/write-onnx-adapter-lora.js";
import { useTempDirs } from "./temp-helpers.js";
import { errorCode as code } from "./error-helpers.js";

const tempDir = useTempDirs("vera-oa-");

const ENGINES = join(__dirname, "../fixtures/engines");
const PEFT = join(__dirname, "../fixtures/peft");
const CASES = [
  { name: "llama-gqa-sp", base: "llama" },
  { name: "gpt2-conv1d", base: "gpt2" },
];
const file = (c: string, f: string) => new Uint8Array(readFileSync(join(ENGINES, c, f)));
const load = async (c: (typeof CASES)[number]) =>
  (
    await loadAdapterFromPath({
      path: join(PEFT, "adapters", c.name),
      readBase: () => readBaseShapes({ path: join(PEFT, "bases", c.base, "config.json") }),
    })
  ).adapter;
interface FormCheck {
  max_abs_diff_vs_numpy_float64: number;
  max_abs_diff_no_adapter_vs_base: number;
  max_abs_adapter_effect: number;
  inputs_fed: string[];
}

describe("export-onnx-adapter against onnxruntime (fixtures/engines)", () => {
  for (const c of CASES) {
    it(`${c.name}: writes the VeRA and the LoRA file onnxruntime ran, each reproducing the VeRA delta`, async () => {
      const adapter = await load(c);
      const check = JSON.parse(readFileSync(join(ENGINES, c.name, "check.json"), "utf8")) as {
        forms: Record<"vera" | "lora" | "lora16", FormCheck>;
        max_abs_diff_vera_vs_lora: number;
      };
      for (const form of ["vera", "lora"] as const) {
        const f = check.forms[form];
        expect(f.max_abs_diff_vs_numpy_float64).toBeLessThan(1e-5);
        expect(f.max_abs_diff_no_adapter_vs_base).toBeLessThan(1e-5);
        expect(f.max_abs_adapter_effect).toBeGreaterThan(1e-2);
      }
      expect(check.max_abs_diff_vera_vs_lora).toBeLessThan(1e-5);

      const vera = readOnnxModelInputs({ bytes: file(c.name, "vera.onnx") });
      const spec = parseGraftSpec(vera.metadata[GRAFT_METADATA_KEY]!);
      const v = writeOnnxAdapter({ adapter, spec, inputs: vera.inputs });
      expect(Buffer.from(v.bytes).equals(Buffer.from(file(c.name, "vera.onnx_adapter")))).toBe(true);
      expect(v.report).toMatchObject({ form: "vera", missing: [], parameters: 2 * adapter.modules.length });

      const lora = readOnnxModelInputs({ bytes: file(c.name, "lora.onnx") });
      const l = writeOnnxLoraAdapter({ adapter, inputs: lora.inputs });
      expect(Buffer.from(l.bytes).equals(Buffer.from(file(c.name, "lora.onnx_adapter")))).toBe(true);
      expect(l.report).toMatchObject({ form: "lora", rank: adapter.rank, exact: true, unfedInputs: [] });
      expect(check.forms.lora.inputs_fed).toEqual(
        adapter.modules.flatMap((m) => Object.values(oliveLoraInputNames(m.name))).sort(),
      );

      // the float16 Olive-style graph: the file's element type comes from the model's inputs
      const f16 = check.forms.lora16;
      expect(f16.max_abs_diff_vs_numpy_float64).toBeLessThan(5e-3);
      expect(f16.max_abs_adapter_effect).toBeGreaterThan(1e-2);
      const lora16 = readOnnxModelInputs({ bytes: file(c.name, "lora16.onnx") });
      const h = writeOnnxLoraAdapter({ adapter, inputs: lora16.inputs });
      expect(h.report.dtype).toBe("float16");
      expect(Buffer.from(h.bytes).equals(Buffer.from(file(c.name, "lora16.onnx_adapter")))).toBe(true);
    });
  }

  it("names LoRA inputs as olive convert-adapters does", () => {
    expect(oliveLoraInputNames("model.layers.0.self_attn.q_proj")).toEqual({
      a: "model.layers.0.self_attn.q_proj.lora_A.weight",
      b: "model.layers.0.self_attn.q_proj.lora_B.weight",
    });
    expect(oliveLoraInputNames("transformer.h.0.attn.c_attn").a).toBe(
      "base_model.model.transformer.h.0.attn.c_attn.lora_A.weight",
    );
  });

  it("the LoRA file's lora_A @ lora_B equals the VeRA file's delta, module by module (both read back)", async () => {
    const adapter = await load(CASES[0]!);
    const { A, B } = projectionsFor(adapter);
    const vera = new Map(readOnnxAdapterFile(writeOnnxAdapter({ adapter }).bytes).parameters.map((p) => [p.name, p]));
    const lora = new Map(
      readOnnxAdapterFile(writeOnnxLoraAdapter({ adapter }).bytes).parameters.map((p) => [p.name, p]),
    );
    const r = adapter.rank;
    for (const m of adapter.modules) {
      const n = oliveLoraInputNames(m.name);
      const la = lora.get(n.a)!;
      const lb = lora.get(n.b)!;
      expect([la.dims, lb.dims]).toEqual([
        [m.inFeatures, r],
        [r, m.outFeatures],
      ]);
      const d = vera.get(`${m.name}.vera_lambda_d`)!.data;
      const b = vera.get(`${m.name}.vera_lambda_b`)!.data;
      let worst = 0;
      let scale = 0;
      for (let i = 0; i < m.inFeatures; i++)
        for (let o = 0; o < m.outFeatures; o++) {
          let viaLora = 0;
          let viaVera = 0;
          for (let k = 0; k < r; k++) {
            viaLora += la.data[i * r + k]! * lb.data[k * m.outFeatures + o]!;
            viaVera += b[o]! * B[o * r + k]! * d[k]! * A[k * adapter.maxIn + i]!;
          }
          worst = Math.max(worst, Math.abs(viaLora - viaVera));
          scale = Math.max(scale, Math.abs(viaVera));
        }
      expect(scale).toBeGreaterThan(0);
      expect(worst / scale).toBeLessThan(1e-6);
    }
  });

  it("float16 files hold the values rounded once, within the reported rounding error", async () => {
    const adapter = await load(CASES[1]!);
    for (const w of [
      writeOnnxAdapter({ adapter, dtype: "float16" }),
      writeOnnxLoraAdapter({ adapter, dtype: "float16" }),
    ]) {
      const exact = readOnnxAdapterFile(
        (w.report.form === "vera" ? writeOnnxAdapter({ adapter }) : writeOnnxLoraAdapter({ adapter })).bytes,
      ).parameters;
      const half = readOnnxAdapterFile(w.bytes).parameters;
      expect(half.every((p) => p.dtype === "float16")).toBe(true);
      let worst = 0;
      half.forEach((p, i) =>
        p.data.forEach((h, j) => (worst = Math.max(worst, Math.abs(f16BitsToF32(h) - exact[i]!.data[j]!)))),
      );
      expect(worst).toBe(w.report.maxRoundingError);
      expect(worst).toBeGreaterThan(0);
      expect(worst).toBeLessThan(1e-2);
    }
  });

  it("a LoRA rank below r writes the best rank-k form and reports its error", async () => {
    const adapter = await load(CASES[0]!);
    const w = writeOnnxLoraAdapter({ adapter, rank: 4 });
    expect(w.report.exact).toBe(false);
    expect(w.report.totalRelativeError).toBeGreaterThan(0);
    expect(w.report.totalRelativeError).toBeLessThan(1);
    const m = adapter.modules[0]!;
    const p = readOnnxAdapterFile(w.bytes).parameters.find((x) => x.name === oliveLoraInputNames(m.name).a)!;
    expect(p.dims).toEqual([m.inFeatures, 4]);
  });
});

describe("VeRA adapter files for models grafted by graftOnnx (fixtures/serve)", () => {
  for (const [name, dtype] of [
    ["llama-dynamo", "f32"],
    ["llama-dynamo-fp16", "f16"],
    ["gpt2-dynamo-wrapped", "f32"],
  ] as const) {
    it(`${name} (${dtype} branch): another adapter's file matches the grafted inputs; another rank is refused`, async () => {
      const c = loadCase(name);
      const a1 = await caseAdapter(c, "a1");
      const g = graftOnnx({
        model: readOnnxModel({ bytes: new Uint8Array(readFileSync(c.modelPath)) }),
        adapter: a1,
        dtype,
      });
      const { inputs } = readOnnxModelInputs({ bytes: g.bytes });
      const spec = readGraftSpec({ bytes: g.bytes });
      const a2 = await caseAdapter(c, "a2");
      const w = writeOnnxAdapter({ adapter: a2, spec, inputs });
      const params = readOnnxAdapterFile(w.bytes).parameters;
      const byName = new Map(inputs.map((i) => [i.name, i]));
      expect(params.length).toBe(2 * g.modules.length);
      for (const m of g.modules)
        for (const n of [m.inputs.d, m.inputs.b]) expect(params.some((p) => p.name === n)).toBe(true);
      for (const p of params) expect(byName.get(p.name)!.elemType).toBe(p.dtype === "float32" ? 1 : 10);
      expect(w.report.missing).toEqual([]);
      if (existsSync(join(c.adapterDir, "r4"))) {
        const r4 = await caseAdapter(c, "r4");
        expect(code(() => writeOnnxAdapter({ adapter: r4, spec, inputs }))).toBe("SERVE_SPEC_MISMATCH");
      }
      expect(code(() => writeOnnxAdapter({ adapter: a1, spec: { ...spec, rank: 4 } }))).toBe("SERVE_SPEC_MISMATCH");
    });
  }
});

describe("export-onnx-adapter refusals", () => {
  const withSpec = async (edit: (s: GraftSpec, a: VeraAdapter) => VeraAdapter | void) => {
    const adapter = await load(CASES[0]!);
    const spec = graftSpecOf({ adapter });
    return { adapter: edit(spec, adapter) ?? adapter, spec };
  };

  it("refuses an adapter whose projections differ from the graft's", async () => {
    const { adapter, spec } = await withSpec((_, a) => ({ ...a, prng: { ...a.prng, seed: a.prng.seed + 1n } }));
    expect(code(() => writeOnnxAdapter({ adapter, spec }))).toBe("SERVE_SPEC_MISMATCH");
  });
  it("refuses a batched graft (one adapter per sequence goes through feeds)", async () => {
    const { adapter, spec } = await withSpec((s) => void (s.batched = true));
    expect(code(() => writeOnnxAdapter({ adapter, spec }))).toBe("SERVE_SPEC_MISMATCH");
  });
  it("refuses a module the graph was not grafted for", async () => {
    const { adapter, spec } = await withSpec((s) => void s.modules.pop());
    expect(code(() => writeOnnxAdapter({ adapter, spec }))).toBe("SERVE_MODULE_NOT_GRAFTED");
  });
  it("writes zeros for grafted modules the adapter lacks and reports them", async () => {
    const { adapter, spec } = await withSpec((s, a) => ({ ...a, modules: a.modules.slice(1) }));
    const gone = spec.modules[0]!;
    const w = writeOnnxAdapter({ adapter, spec });
    expect(w.report.missing).toEqual([gone.name]);
    const p = readOnnxAdapterFile(w.bytes).parameters;
    const b = p.find((x) => x.name === `${gone.name}.vera_lambda_b`)!;
    expect(b.dims).toEqual([gone.outFeatures]);
    expect(Array.from(b.data).every((x) => x === 0)).toBe(true);
  });
  it("refuses an element type or a shape the model's inputs do not take", async () => {
    const adapter = await load(CASES[0]!);
    const { inputs } = readOnnxModelInputs({ bytes: file(CASES[0]!.name, "vera.onnx") });
    expect(code(() => writeOnnxAdapter({ adapter, inputs, dtype: "float16" }))).toBe("SERVE_SPEC_MISMATCH");
    const lora = readOnnxModelInputs({ bytes: file(CASES[0]!.name, "lora.onnx") }).inputs;
    expect(code(() => writeOnnxLoraAdapter({ adapter, inputs: lora, dtype: "float16" }))).toBe("SERVE_SPEC_MISMATCH");
    const fixed = lora.map((i) => (i.dims ? { ...i, dims: i.dims.map((d) => (d === "lora_r" ? 4 : d)) } : i));
    expect(code(() => writeOnnxLoraAdapter({ adapter, inputs: fixed }))).toBe("SERVE_SPEC_MISMATCH");
    expect(code(() => writeOnnxLoraAdapter({ adapter, inputs: fixed, rank: 4 }))).toBe("OK");
  });
  it("LoRA inputs: a missing module, dynamo names, ambiguity, a lone half", async () => {
    const adapter = await load(CASES[0]!);
    const lora = readOnnxModelInputs({ bytes: file(CASES[0]!.name, "lora.onnx") }).inputs;
    const m = adapter.modules[0]!.name;
    const without = lora.filter((i) => !i.name.startsWith(`${m}.`));
    expect(code(() => writeOnnxLoraAdapter({ adapter, inputs: without }))).toBe("SERVE_MODULE_NOT_GRAFTED");
    const input = (name: string): OnnxModelInput => ({ name, elemType: 1, dims: null });
    const dyn = [
      input(`base_model.model.${m}.lora_A.default.weight`),
      input(`base_model.model.${m}.lora_B.default.weight`),
    ];
    expect(findLoraInputs(m, dyn)).toEqual({ a: dyn[0]!.name, b: dyn[1]!.name });
    expect(findLoraInputs(m, [input(`x${m}.lora_A.weight`), input(`x${m}.lora_B.weight`)])).toBeUndefined();
    expect(code(() => findLoraInputs(m, [...dyn, input(`${m}.lora_A.weight`)]))).toBe("SERVE_SPEC_MISMATCH");
    expect(code(() => findLoraInputs(m, [dyn[0]!]))).toBe("SERVE_SPEC_MISMATCH");
  });
  it("reads a model's inputs (symbolic dims) and metadata", () => {
    const { inputs, metadata } = readOnnxModelInputs({ bytes: file(CASES[0]!.name, "lora.onnx") });
    const a = inputs.find((i) => i.name === "model.layers.0.self_attn.q_proj.lora_A.weight")!;
    expect(a).toEqual({ name: a.name, elemType: 1, dims: [32, "lora_r"] });
    expect(metadata).toEqual({});
    const v = readOnnxModelInputs({ bytes: file(CASES[0]!.name, "vera.onnx") });
    expect(Object.keys(v.metadata)).toEqual([GRAFT_METADATA_KEY]);
    expect(code(() => readOnnxModelInputs({ bytes: Uint8Array.from([0x3a, 0x05, 1]) }))).toBe("ONNX_PARSE");
  });
});

describe("vera export-onnx-adapter (CLI)", () => {
  const cli = join(__dirname, "../dist/cli/index.js");
  const run = (args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: "utf8" });
  const c = CASES[0]!;
  const common = [join(PEFT, "adapters", c.name), "--base", join(PEFT, "bases", c.base, "config.json")];

  it("writes the LoRA form for a LoRA-ready model (dtype from its inputs) and reports in JSON", () => {
    const out = join(tempDir(), "a.onnx_adapter");
    const r = run([
      "export-onnx-adapter",
      ...common,
      "--lora",
      "--model",
      join(ENGINES, c.name, "lora.onnx"),
      "-o",
      out,
      "--json",
    ]);
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: true, report: { form: "lora", dtype: "float32", exact: true } });
    expect(readFileSync(out).equals(readFileSync(join(ENGINES, c.name, "lora.onnx_adapter")))).toBe(true);
  });
  it("refuses a model without a graft record for the VeRA form, and writes nothing", () => {
    const out = join(tempDir(), "a.onnx_adapter");
    const r = run([
      "export-onnx-adapter",
      ...common,
      "--model",
      join(ENGINES, c.name, "lora.onnx"),
      "-o",
      out,
      "--json",
    ]);
    expect(r.status).toBe(1);
    expect(JSON.parse(r.stdout).error.code).toBe("SERVE_NOT_GRAFTED");
    expect(existsSync(out)).toBe(false);
  });
});

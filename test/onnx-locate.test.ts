/**
 * Weight location and merge planning: module paths from every exporter style, layouts, and the
 * refusals (not found, ambiguous, shared, quantized, shape, fused split, mapping).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { isVeraError, type VeraError } from "../src/errors.js";
import {
  findWeightsForModule,
  listLinearWeights,
  moduleFromNameScopes,
  moduleFromNodeName,
  OnnxErrorCode,
  parseWeightMapping,
  planOnnxMerge,
  readOnnxModel,
  type LinearWeight,
  type ModuleShape,
  type OnnxModel,
} from "../src/onnx/index.js";
import { FIXTURES, f32Bytes, fixtureManifest, modelProto } from "./onnx-helpers.js";

const load = (c: string, file = "model.onnx"): OnnxModel =>
  readOnnxModel({ bytes: new Uint8Array(readFileSync(join(FIXTURES, c, file))) });
const shapes = (ws: LinearWeight[], filter: (w: LinearWeight) => boolean = () => true): ModuleShape[] =>
  ws.filter(filter).map((w) => ({ name: w.module, inFeatures: w.inFeatures, outFeatures: w.outFeatures }));

function planError(f: () => unknown): VeraError {
  try {
    f();
  } catch (e) {
    if (isVeraError(e)) return e;
    throw e;
  }
  throw new Error("expected a VeraError");
}

/** Module paths of the base model behind each fixture, from the PEFT adapter's own tensor names. */
function adapterModules(adapter: string): Array<{ name: string; out: number }> {
  const bytes = readFileSync(join(FIXTURES, "adapters", adapter, "adapter_model.safetensors"));
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString("utf8")) as Record<string, { shape: number[] }>;
  return Object.entries(header)
    .filter(([k]) => k.endsWith(".vera_lambda_b"))
    .map(([k, v]) => ({
      name: k.replace(/^base_model\.model\./, "").replace(/\.vera_lambda_b$/, ""),
      out: v.shape[0]!,
    }));
}

describe("path parsing", () => {
  it("takes the module from pkg.torch.onnx.name_scopes (the entry before the op)", () => {
    expect(moduleFromNameScopes("['', 'model', 'model.layers.0', 'model.layers.0.self_attn.q_proj', 'linear']")).toBe(
      "model.layers.0.self_attn.q_proj",
    );
    expect(moduleFromNameScopes(`["", "m", "m.lm_head", "linear_7"]`)).toBe("m.lm_head");
    expect(moduleFromNameScopes("['', 'linear']")).toBeUndefined();
    expect(moduleFromNameScopes("garbage")).toBeUndefined();
  });
  it("takes the module from legacy scope node names", () => {
    expect(moduleFromNodeName("/model/layers.0/self_attn/q_proj/MatMul")).toBe("model.layers.0.self_attn.q_proj");
    expect(moduleFromNodeName("/lm_head/MatMul")).toBe("lm_head");
    expect(moduleFromNodeName("MatMul_12")).toBeUndefined();
    expect(moduleFromNodeName("/MatMul")).toBeUndefined();
  });
});

describe("listLinearWeights on real exports", () => {
  const expectations: Record<string, { source: string; layout: string; via?: string[]; prefix?: string }> = {
    "llama-dynamo": { source: "name_scopes", layout: "in_out" },
    "llama-dynamo-wrapped": { source: "name_scopes", layout: "in_out", prefix: "m." },
    "gpt2-dynamo": { source: "name_scopes", layout: "in_out" },
    "gpt2-dynamo-wrapped": { source: "name_scopes", layout: "in_out", prefix: "m." },
    "legacy-llama-folded": { source: "node_name", layout: "in_out" },
    "legacy-llama-unfolded-wrapped": { source: "initializer_name", layout: "out_in", via: ["Transpose"], prefix: "m." },
    "legacy-gpt2-folded": { source: "initializer_name", layout: "in_out" },
    "legacy-llama-fp16": { source: "node_name", layout: "in_out" },
    "genai-fused": { source: "genai_name", layout: "in_out" },
  };
  for (const [c, e] of Object.entries(expectations)) {
    it(`${c}: finds every adapted module with ${e.source} paths, ${e.layout} layout and the adapter's shapes`, () => {
      const model = load(c);
      const weights = listLinearWeights({ model });
      const adapter = fixtureManifest().cases[c]!.adapter;
      for (const m of adapterModules(adapter)) {
        const hits = findWeightsForModule({ module: m.name, weights });
        expect(hits.length, m.name).toBe(1);
        const w = hits[0]!.weight;
        expect(w.uses).toBe(1);
        if (m.name.endsWith("head_proj")) {
          // nn.Linear on a 2-D input with bias: Gemm(transB=1) keeps torch's (out, in) weight
          if (c.startsWith("legacy")) expect([w.opType, w.layout]).toEqual(["Gemm", "out_in"]);
          continue;
        }
        expect(w.layout, m.name).toBe(e.layout);
        if (!w.fused) {
          expect(w.source).toBe(e.source);
          expect(w.paths).toContain((e.prefix ?? "") + m.name);
          expect(w.outFeatures).toBe(m.out);
        } else {
          expect(hits[0]!.part).toBe(m.name.split(".").pop());
        }
        if (e.via) expect(w.via).toEqual(e.via);
      }
    });
  }

  it("sees the tied embedding of the unfolded export as shared (Gather + Transpose -> lm_head MatMul)", () => {
    const ws = listLinearWeights({ model: load("legacy-llama-unfolded-wrapped") });
    const head = ws.find((w) => w.paths.includes("m.lm_head"))!;
    expect(head.initializer).toBe("m.model.embed_tokens.weight");
    expect(head.uses).toBe(2);
  });

  it("marks QDQ weights (int8 through DequantizeLinear) as quantized and refuses them", () => {
    const model = readOnnxModel({
      bytes: modelProto({
        nodes: [
          {
            opType: "DequantizeLinear",
            inputs: ["proj.weight_quantized", "s", "z"],
            outputs: ["w_dq"],
            name: "/proj/DequantizeLinear",
          },
          { opType: "MatMul", inputs: ["x", "w_dq"], outputs: ["y"], name: "/proj/MatMul" },
        ],
        initializers: [
          { name: "proj.weight_quantized", dims: [4, 3], dataType: 3, raw: new Uint8Array(12) },
          { name: "s", dims: [], dataType: 1, raw: f32Bytes([0.1]) },
          { name: "z", dims: [], dataType: 3, raw: new Uint8Array(1) },
        ],
        outputs: [],
      }),
    });
    const [w] = listLinearWeights({ model });
    expect([w!.module, w!.quantized, w!.via]).toEqual(["proj", "DequantizeLinear (QDQ)", ["DequantizeLinear"]]);
    expect(
      planError(() => planOnnxMerge({ model, modules: [{ name: "proj", inFeatures: 4, outFeatures: 3 }] })).code,
    ).toBe(OnnxErrorCode.ONNX_QUANTIZED);
  });

  it("marks quantized weights (MatMulInteger int8, MatMulNBits 4-bit)", () => {
    for (const [file, op] of [
      ["int8.onnx", "MatMulInteger"],
      ["q4.onnx", "MatMulNBits"],
    ] as const) {
      const ws = listLinearWeights({ model: load("quantized", file) });
      const q = ws.find((w) => w.module === "model.layers.0.self_attn.q_proj")!;
      expect(q.quantized).toBe(op);
      expect(q.dtype).toBeUndefined();
      expect([q.inFeatures, q.outFeatures]).toEqual([32, 32]);
    }
  });
});

describe("planOnnxMerge", () => {
  it("plans every fixture's adapter modules, one weight per module", () => {
    const model = load("llama-dynamo-wrapped");
    const ws = listLinearWeights({ model });
    const mods = adapterModules("llama");
    const plan = planOnnxMerge({
      model,
      modules: shapes(ws, (w) => w.module !== "m.lm_head").map((s) => ({ ...s, name: s.name.slice(2) })),
    });
    expect(plan.weights.length).toBe(mods.length);
    expect(plan.weights.every((w) => w.modules.length === 1 && w.modules[0]!.matchedBy === "suffix")).toBe(true);
  });

  it("refuses a module with no weight, naming it", () => {
    const model = load("llama-dynamo");
    const e = planError(() =>
      planOnnxMerge({ model, modules: [{ name: "model.layers.7.self_attn.q_proj", inFeatures: 32, outFeatures: 32 }] }),
    );
    expect(e.code).toBe(OnnxErrorCode.ONNX_MODULE_NOT_FOUND);
    expect(e.path).toBe("model.layers.7.self_attn.q_proj");
    // a model exported in parts: modules of the other part are left out on request, and listed
    const plan = planOnnxMerge({
      model,
      skipMissing: true,
      modules: [
        { name: "model.layers.7.self_attn.q_proj", inFeatures: 32, outFeatures: 32 },
        { name: "model.layers.0.self_attn.q_proj", inFeatures: 32, outFeatures: 32 },
      ],
    });
    expect(plan.skipped).toEqual(["model.layers.7.self_attn.q_proj"]);
    expect(plan.weights.map((w) => w.modules[0]!.module)).toEqual(["model.layers.0.self_attn.q_proj"]);
    expect(plan.warnings.join()).toMatch(/left out/);
  });

  it("refuses a module whose path matches several weights by suffix, listing them", () => {
    const mk = (prefix: string, init: string): LinearWeight => ({
      module: `${prefix}.layers.0.q_proj`,
      paths: [`${prefix}.layers.0.q_proj`],
      source: "name_scopes",
      initializer: init,
      inFeatures: 2,
      outFeatures: 2,
      layout: "in_out",
      dims: [2, 2],
      dataType: 1,
      dtype: "F32",
      node: "n",
      opType: "MatMul",
      via: [],
      uses: 1,
      overridable: false,
      entry: { graph: 0, node: 0, input: 1 },
    });
    const model = readOnnxModel({
      bytes: modelProto({
        nodes: [],
        initializers: [
          { name: "a", dims: [2, 2], dataType: 1, raw: f32Bytes([1, 2, 3, 4]) },
          { name: "b", dims: [2, 2], dataType: 1, raw: f32Bytes([1, 2, 3, 4]) },
        ],
        outputs: [],
      }),
    });
    const e = planError(() =>
      planOnnxMerge({
        model,
        weights: [mk("enc", "a"), mk("dec", "b")],
        modules: [{ name: "layers.0.q_proj", inFeatures: 2, outFeatures: 2 }],
      }),
    );
    expect(e.code).toBe(OnnxErrorCode.ONNX_AMBIGUOUS);
    expect(e.message).toContain("enc.layers.0.q_proj");
    expect(e.message).toContain("dec.layers.0.q_proj");
    // an exact match wins over suffix matches
    const plan = planOnnxMerge({
      model,
      weights: [mk("enc", "a"), { ...mk("x", "b"), module: "layers.0.q_proj", paths: ["layers.0.q_proj"] }],
      modules: [{ name: "layers.0.q_proj", inFeatures: 2, outFeatures: 2 }],
    });
    expect(plan.weights[0]!.initializer).toBe("b");
    // and the longest shared suffix wins over a shorter one (`q_proj` alone names too little)
    const short = { ...mk("x", "b"), module: "q_proj", paths: ["q_proj"] };
    const plan2 = planOnnxMerge({
      model,
      weights: [mk("enc", "a"), short],
      modules: [{ name: "layers.0.q_proj", inFeatures: 2, outFeatures: 2 }],
    });
    expect(plan2.weights[0]!.initializer).toBe("a");
  });

  it("refuses a shared weight (tied embeddings) and says how to fix it", () => {
    const model = load("legacy-llama-unfolded-wrapped");
    const e = planError(() =>
      planOnnxMerge({ model, modules: [{ name: "lm_head", inFeatures: 32, outFeatures: 64 }] }),
    );
    expect(e.code).toBe(OnnxErrorCode.ONNX_SHARED_WEIGHT);
    expect(e.message).toMatch(/Untie/);
    expect(e.message).toContain("Gather");
  });

  it("refuses quantized weights: merge into the float model, quantize afterwards", () => {
    for (const file of ["int8.onnx", "q4.onnx"]) {
      const e = planError(() =>
        planOnnxMerge({
          model: load("quantized", file),
          modules: [{ name: "model.layers.1.mlp.down_proj", inFeatures: 48, outFeatures: 32 }],
        }),
      );
      expect(e.code).toBe(OnnxErrorCode.ONNX_QUANTIZED);
      expect(e.message).toMatch(/float16\/float32 model, then quantize/);
    }
  });

  it("refuses shapes that disagree with the adapter, reporting all modules at once", () => {
    const model = load("legacy-llama-folded");
    const e = planError(() =>
      planOnnxMerge({
        model,
        modules: [
          { name: "model.layers.0.self_attn.k_proj", inFeatures: 32, outFeatures: 32 },
          { name: "model.layers.0.mlp.down_proj", inFeatures: 32, outFeatures: 48 },
          { name: "model.layers.0.mlp.nothing", inFeatures: 32, outFeatures: 48 },
        ],
      }),
    );
    expect(e.code).toBe(OnnxErrorCode.ONNX_SHAPE_MISMATCH);
    expect(e.issues.map((i) => i.code)).toEqual([
      OnnxErrorCode.ONNX_SHAPE_MISMATCH,
      OnnxErrorCode.ONNX_SHAPE_MISMATCH,
      OnnxErrorCode.ONNX_MODULE_NOT_FOUND,
    ]);
    expect(e.message).toContain("k_proj");
  });

  it("fused qkv_proj: q from the start, v from the end, k after q; k alone cannot be placed", () => {
    const model = load("genai-fused");
    const q = { name: "model.layers.0.self_attn.q_proj", inFeatures: 32, outFeatures: 32 };
    const k = { name: "model.layers.0.self_attn.k_proj", inFeatures: 32, outFeatures: 16 };
    const v = { name: "model.layers.0.self_attn.v_proj", inFeatures: 32, outFeatures: 16 };
    const all = planOnnxMerge({ model, modules: [q, k, v] }).weights[0]!;
    expect(all.modules.map((m) => [m.module.slice(-6), m.outStart, m.outEnd])).toEqual([
      ["q_proj", 0, 32],
      ["k_proj", 32, 48],
      ["v_proj", 48, 64],
    ]);
    const kv = planOnnxMerge({ model, modules: [k, v] }).weights[0]!;
    expect(kv.modules.map((m) => [m.outStart, m.outEnd])).toEqual([
      [32, 48],
      [48, 64],
    ]);
    const e = planError(() => planOnnxMerge({ model, modules: [k] }));
    expect(e.code).toBe(OnnxErrorCode.ONNX_FUSED_SPLIT);
    // ... unless a mapping gives the block
    const m = parseWeightMapping({
      source: {
        modules: { [k.name]: { initializer: "model.layers.0.attn.qkv_proj.MatMul.weight", outRange: [32, 48] } },
      },
    });
    const planned = planOnnxMerge({ model, modules: [k], mapping: m }).weights[0]!;
    expect([planned.modules[0]!.outStart, planned.modules[0]!.matchedBy]).toEqual([32, "mapping"]);
    // sizes that do not add up
    const bad = planError(() => planOnnxMerge({ model, modules: [q, k, { ...v, outFeatures: 8 }] }));
    expect(bad.code).toBe(OnnxErrorCode.ONNX_SHAPE_MISMATCH);
  });

  it("a mapping file places any module; bad mappings are refused with every problem", () => {
    const model = load("legacy-llama-folded");
    const mapping = parseWeightMapping({ source: JSON.stringify({ modules: { "custom.thing": "onnx::MatMul_426" } }) });
    const plan = planOnnxMerge({
      model,
      modules: [{ name: "custom.thing", inFeatures: 32, outFeatures: 32 }],
      mapping,
    });
    expect(plan.weights[0]!.initializer).toBe("onnx::MatMul_426");
    expect(plan.weights[0]!.layout).toBe("in_out");
    const e = planError(() =>
      parseWeightMapping({
        source: {
          modules: {
            a: 3,
            b: { initializer: "x", layout: "sideways", outRange: [4, 2] },
            c: { initializer: "y", extra: 1 },
          },
        },
      }),
    );
    expect(e.code).toBe(OnnxErrorCode.ONNX_MAPPING);
    expect(e.issues.length).toBe(4);
    expect(planError(() => parseWeightMapping({ source: "{" })).code).toBe(OnnxErrorCode.ONNX_MAPPING);
    const missing = planError(() =>
      planOnnxMerge({
        model,
        modules: [{ name: "custom.thing", inFeatures: 32, outFeatures: 32 }],
        mapping: { "custom.thing": { initializer: "nope" } },
      }),
    );
    expect(missing.code).toBe(OnnxErrorCode.ONNX_MAPPING);
  });

  it("refuses two modules writing the same weight", () => {
    const model = load("legacy-llama-folded");
    const e = planError(() =>
      planOnnxMerge({
        model,
        modules: [
          { name: "model.layers.0.self_attn.q_proj", inFeatures: 32, outFeatures: 32 },
          { name: "other", inFeatures: 32, outFeatures: 32 },
        ],
        mapping: { other: { initializer: "onnx::MatMul_426" } },
      }),
    );
    expect(e.code).toBe(OnnxErrorCode.ONNX_OVERLAP);
  });

  it("refuses non-float weights and storage that does not fit", () => {
    const model = readOnnxModel({
      bytes: modelProto({
        nodes: [
          { opType: "MatMul", inputs: ["x", "w_int"], outputs: ["y"], name: "/int_proj/MatMul" },
          { opType: "MatMul", inputs: ["x", "w_short"], outputs: ["z"], name: "/short_proj/MatMul" },
          { opType: "MatMul", inputs: ["x", "w_f64"], outputs: ["u"], name: "/f64_proj/MatMul" },
        ],
        initializers: [
          { name: "w_int", dims: [2, 2], dataType: 6, int32Data: [1, 2, 3, 4] },
          { name: "w_short", dims: [2, 2], dataType: 1, raw: f32Bytes([1, 2, 3]) },
          { name: "w_f64", dims: [2, 2], dataType: 11, raw: new Uint8Array(32) },
        ],
        outputs: [],
      }),
    });
    const e = planError(() =>
      planOnnxMerge({
        model,
        modules: ["int_proj", "short_proj", "f64_proj"].map((name) => ({ name, inFeatures: 2, outFeatures: 2 })),
      }),
    );
    expect(e.issues.map((i) => i.code).sort()).toEqual(
      [OnnxErrorCode.ONNX_DTYPE_UNSUPPORTED, OnnxErrorCode.ONNX_DTYPE_UNSUPPORTED, OnnxErrorCode.ONNX_STORAGE].sort(),
    );
  });
});

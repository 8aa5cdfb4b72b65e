import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { readVera } from "../src/format/validate.js";
import { writeVera } from "../src/format/write.js";
import { listLinearWeights } from "../src/onnx/list-linear-weights.js";
import { readOnnxModel } from "../src/onnx/read-onnx-model.js";
import {
  baseShapesFromConfig,
  baseShapesFromOnnx,
  baseShapesFromWeights,
  exportPeft,
  importPeft,
  PeftErrorCode,
  type BaseShapes,
} from "../src/peft/index.js";
import { parsePyJson, dumpsPy } from "../src/peft/py-json.js";
import { parseSafetensors, tensorBytes } from "../src/safetensors/parse.js";
import { writeSafetensors, type TensorToWrite } from "../src/safetensors/write.js";
import { adapterFolders, baseDir, PEFT_DIR, readAdapter, readBytes, readJson } from "./peft-fixtures.js";

function configBase(dir: string): BaseShapes {
  return baseShapesFromConfig({ config: readJson(join(dir, "config.json")) });
}
function weightsBase(dir: string): BaseShapes {
  const f = parseSafetensors(readBytes(join(dir, "model.safetensors")));
  return baseShapesFromWeights({ tensors: [...f.tensors].map(([name, i]) => ({ name, shape: i.shape })) });
}
function onnxBase(dir: string): BaseShapes {
  return baseShapesFromOnnx({
    weights: listLinearWeights({ model: readOnnxModel({ bytes: readBytes(join(dir, "model.onnx")) }) }),
  });
}
function same(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;
}
function tensorMap(bytes: Uint8Array): Map<string, { dtype: string; shape: number[]; hex: string }> {
  const f = parseSafetensors(bytes);
  return new Map(
    [...f.tensors].map(([k, i]) => [
      k,
      { dtype: i.dtype, shape: i.shape, hex: Buffer.from(tensorBytes(f, k)).toString("hex") },
    ]),
  );
}

describe("PEFT -> verakit -> PEFT reproduces real PEFT output byte for byte", () => {
  for (const f of adapterFolders()) {
    const label = `${f.fixture.name}${f.adapterName === "default" ? "" : `/${f.adapterName}`}`;
    const bdir = baseDir(f.fixture);
    const bases: Array<[string, () => BaseShapes]> = [
      ["config.json", () => configBase(bdir)],
      ["model.safetensors header", () => weightsBase(bdir)],
    ];
    if (f.fixture.base === "llama" || f.fixture.base === "gpt2") bases.push(["model.onnx", () => onnxBase(bdir)]);
    for (const [bname, base] of bases) {
      it(`${label} with base ${bname}`, () => {
        const src = readAdapter(f.dir);
        const { adapter, report } = importPeft({
          config: src.configText,
          weights: src.weights,
          base: base(),
          adapterName: f.adapterName,
        });
        expect(report.rank).toBe(f.fixture.r);
        expect(report.seed).toBe(f.fixture.seed);
        expect(report.projections.inFile).toBe(f.fixture.save_projection);
        if (f.fixture.save_projection) expect(report.projections.storage).toBe("regenerate");
        // through the verakit file and back
        const again = readVera(writeVera({ adapter }));
        for (const a of [adapter, again]) {
          const out = exportPeft({ adapter: a });
          expect(out.configJson).toBe(src.configText);
          expect(same(out.safetensors, src.bytes)).toBe(true);
        }
      });
    }
  }

  it("save_projection false -> export --save-projection equals PEFT's save_projection true file (and back)", () => {
    const base = configBase(join(PEFT_DIR, "bases/llama"));
    const sp = readAdapter(join(PEFT_DIR, "adapters/llama-gqa-sp"));
    const nosp = readAdapter(join(PEFT_DIR, "adapters/llama-gqa-nosp"));
    const fromNosp = importPeft({ config: nosp.configText, weights: nosp.weights, base }).adapter;
    const out = exportPeft({ adapter: fromNosp, saveProjection: true });
    expect(same(out.safetensors, sp.bytes)).toBe(true);
    expect(out.configJson).toBe(sp.configText);
    const fromSp = importPeft({ config: sp.configText, weights: sp.weights, base }).adapter;
    const back = exportPeft({ adapter: fromSp, saveProjection: false });
    expect(same(back.safetensors, nosp.bytes)).toBe(true);
    expect(back.configJson).toBe(nosp.configText);
  });

  it("the bf16 fixture's projections are recognised as bf16-rounded regenerations and re-exported identically", () => {
    const src = readAdapter(join(PEFT_DIR, "adapters/llama-bf16"));
    const { adapter, report } = importPeft({
      config: src.configText,
      weights: src.weights,
      base: configBase(join(PEFT_DIR, "bases/llama")),
    });
    expect(adapter.projectionRounding).toBe("bf16");
    expect(adapter.storedProjections).toBeUndefined();
    expect(report.projections.matches.map((m) => m.rounding)).toEqual(["bf16", "bf16"]);
  });

  it("carries modules_to_save and bias tensors under their PEFT keys", () => {
    const src = readAdapter(join(PEFT_DIR, "adapters/gpt2-seqcls-bias"));
    const { adapter, report } = importPeft({
      config: src.configText,
      weights: src.weights,
      base: configBase(join(PEFT_DIR, "bases/gpt2-seqcls")),
    });
    expect(report.carriedTensors).toEqual([
      "base_model.model.score.weight",
      "base_model.model.transformer.h.0.attn.c_attn.base_layer.bias",
      "base_model.model.transformer.h.1.attn.c_attn.base_layer.bias",
    ]);
    expect(report.warnings).toEqual([]);
    expect(adapter.modules.every((m) => m.layout === "conv1d")).toBe(true);
  });

  it("a single-module adapter with stored projections needs no base; several modules do", () => {
    const src = readAdapter(join(PEFT_DIR, "adapters/llama-gqa-sp"));
    const keep = (k: string) => k.startsWith("base_model.vera_") || k.includes("layers.0.mlp.down_proj");
    const tensors: TensorToWrite[] = [...src.weights.tensors]
      .filter(([k]) => keep(k))
      .map(([k, i]) => ({ name: k, dtype: i.dtype, shape: i.shape, data: tensorBytes(src.weights, k) }));
    // one module (down_proj, in 48 = max_in) + the projections of the full adapter
    const one = parseSafetensors(writeSafetensors({ tensors, metadata: { format: "pt" } }));
    const r = importPeft({ config: src.configText, weights: one });
    expect(r.report.dimensionSource).toMatch(/inferred/);
    expect(r.adapter.modules[0]).toMatchObject({ inFeatures: 48, outFeatures: 32 });
    expect(() => importPeft({ config: src.configText, weights: src.weights })).toThrowError(
      expect.objectContaining({ code: PeftErrorCode.PEFT_BASE_REQUIRED }),
    );
  });

  it("projections no seed regenerates are kept explicitly, re-exported bit for bit, and refused where PEFT would regenerate them", () => {
    const src = readAdapter(join(PEFT_DIR, "adapters/llama-gqa-sp"));
    const f = src.weights;
    const tensors: TensorToWrite[] = [...f.tensors].map(([k, i]) => {
      const data = tensorBytes(f, k).slice();
      if (k === "base_model.vera_A") data[5] = data[5]! ^ 1; // flip one mantissa bit
      return { name: k, dtype: i.dtype, shape: i.shape, data };
    });
    const bytes = writeSafetensors({ tensors, metadata: { format: "pt" } });
    const { adapter, report } = importPeft({
      config: src.configText,
      weights: parseSafetensors(bytes),
      base: configBase(join(PEFT_DIR, "bases/llama")),
    });
    expect(report.projections.storage).toBe("stored");
    expect(adapter.storedProjections).toBeDefined();
    expect(report.warnings.join(" ")).toMatch(/kept explicitly/);
    const out = exportPeft({ adapter: readVera(writeVera({ adapter })) });
    expect(Buffer.compare(Buffer.from(out.safetensors), Buffer.from(bytes))).toBe(0);
    expect(() => exportPeft({ adapter, saveProjection: false })).toThrowError(
      expect.objectContaining({ code: PeftErrorCode.PEFT_PROJECTION_NOT_REGENERABLE }),
    );
    expect(() => exportPeft({ adapter, peftCompat: "0.20" })).toThrowError(
      expect.objectContaining({ code: PeftErrorCode.PEFT_PROJECTION_NOT_REGENERABLE }),
    );
    expect(() => exportPeft({ adapter, peftCompat: "0.21" })).not.toThrow();
  });

  it("--peft-compat drops what older PEFT rejects", () => {
    const src = readAdapter(join(PEFT_DIR, "adapters/llama-gqa-sp"));
    const text = src.configText.replace('"fan_in_fan_out": false,', '"fan_in_fan_out": false,\n  "future_field": 1.0,');
    const { adapter, report } = importPeft({
      config: text,
      weights: src.weights,
      base: configBase(join(PEFT_DIR, "bases/llama")),
    });
    expect(report.unknownConfigFields).toEqual(["future_field"]);
    const keep = exportPeft({ adapter });
    expect(keep.configJson).toBe(text);
    const c17 = exportPeft({ adapter, peftCompat: "0.17" });
    expect(c17.report.droppedFields).toEqual(["peft_version"]);
    expect(c17.configJson).toContain('"future_field": 1.0');
    const c13 = exportPeft({ adapter, peftCompat: "0.13.2" });
    expect(c13.report.droppedFields.sort()).toEqual(["future_field", "peft_version"]);
    const o = parsePyJson(c13.configJson) as Map<string, unknown>;
    expect([...o.keys()].sort()).toEqual(
      [
        "auto_mapping",
        "base_model_name_or_path",
        "bias",
        "d_initial",
        "fan_in_fan_out",
        "inference_mode",
        "init_weights",
        "layers_pattern",
        "layers_to_transform",
        "modules_to_save",
        "peft_type",
        "projection_prng_key",
        "r",
        "revision",
        "save_projection",
        "target_modules",
        "task_type",
        "vera_dropout",
      ].sort(),
    );
    expect(() => exportPeft({ adapter, peftCompat: "0.11" })).toThrowError(
      expect.objectContaining({ code: PeftErrorCode.PEFT_COMPAT }),
    );
    expect(() => exportPeft({ adapter, peftCompat: "0.10" })).toThrowError(
      expect.objectContaining({ code: PeftErrorCode.PEFT_COMPAT }),
    );
    expect(() => exportPeft({ adapter, peftCompat: "latest" })).toThrowError(
      expect.objectContaining({ code: PeftErrorCode.PEFT_COMPAT }),
    );
  });

  it("a verakit adapter that never saw PEFT gets the config PEFT 0.21 would write", () => {
    const src = readAdapter(join(PEFT_DIR, "adapters/llama-neg-seed"));
    const { adapter } = importPeft({
      config: src.configText,
      weights: src.weights,
      base: configBase(join(PEFT_DIR, "bases/llama")),
    });
    const fresh = { ...adapter, extra: {} };
    const out = exportPeft({ adapter: fresh, saveProjection: false });
    const want = parsePyJson(src.configText) as Map<string, unknown>;
    const got = parsePyJson(out.configJson) as Map<string, unknown>;
    // target_modules becomes the exact module list, auto_mapping is unknown: everything else is PEFT's
    expect((got.get("target_modules") as string[]).length).toBe(14);
    for (const k of ["target_modules", "auto_mapping"]) {
      want.delete(k);
      got.delete(k);
    }
    expect(dumpsPy(got as never)).toBe(dumpsPy(want as never));
    expect(same(out.safetensors, src.bytes)).toBe(true);
  });
});

describe("bad input: a typed error naming the module", () => {
  const base = () => configBase(join(PEFT_DIR, "bases/llama"));
  const src = () => readAdapter(join(PEFT_DIR, "adapters/llama-gqa-sp"));
  const rebuild = (edit: (ts: TensorToWrite[]) => TensorToWrite[]) => {
    const f = src().weights;
    const ts = [...f.tensors].map(([k, i]) => ({
      name: k,
      dtype: i.dtype,
      shape: [...i.shape],
      data: tensorBytes(f, k).slice(),
    }));
    return parseSafetensors(writeSafetensors({ tensors: edit(ts), metadata: { format: "pt" } }));
  };
  const Q = "base_model.model.model.layers.0.self_attn.q_proj";
  const cases: Array<[string, () => unknown, string, string?]> = [
    [
      "malformed config JSON",
      () => importPeft({ config: "{", weights: src().weights, base: base() }),
      PeftErrorCode.PEFT_CONFIG_INVALID,
    ],
    [
      "config not an object",
      () => importPeft({ config: "[]", weights: src().weights, base: base() }),
      PeftErrorCode.PEFT_CONFIG_INVALID,
    ],
    [
      "no peft_type",
      () =>
        importPeft({
          config: src().configText.replace('"peft_type": "VERA",', ""),
          weights: src().weights,
          base: base(),
        }),
      PeftErrorCode.PEFT_CONFIG_INVALID,
    ],
    [
      "peft_type LORA",
      () => importPeft({ config: src().configText.replace('"VERA"', '"LORA"'), weights: src().weights, base: base() }),
      PeftErrorCode.PEFT_NOT_VERA,
    ],
    [
      "r as a string",
      () =>
        importPeft({ config: src().configText.replace('"r": 8', '"r": "8"'), weights: src().weights, base: base() }),
      PeftErrorCode.PEFT_CONFIG_INVALID,
    ],
    [
      "seed out of range",
      () =>
        importPeft({
          config: src().configText.replace("4294967301", "18446744073709551616"),
          weights: src().weights,
          base: base(),
        }),
      PeftErrorCode.PEFT_CONFIG_INVALID,
    ],
    [
      "r disagreeing with lambda_d",
      () => importPeft({ config: src().configText.replace('"r": 8', '"r": 7'), weights: src().weights, base: base() }),
      PeftErrorCode.PEFT_VECTOR_LENGTH,
    ],
    [
      "lambda_b without lambda_d",
      () =>
        importPeft({
          config: src().configText,
          weights: rebuild((ts) => ts.filter((t) => t.name !== `${Q}.vera_lambda_d`)),
          base: base(),
        }),
      PeftErrorCode.PEFT_LAMBDA_UNPAIRED,
      "q_proj",
    ],
    [
      "lambda_d without lambda_b",
      () =>
        importPeft({
          config: src().configText,
          weights: rebuild((ts) => ts.filter((t) => t.name !== `${Q}.vera_lambda_b`)),
          base: base(),
        }),
      PeftErrorCode.PEFT_LAMBDA_UNPAIRED,
      "q_proj",
    ],
    [
      "a module absent from the base",
      () =>
        importPeft({
          config: src().configText,
          weights: rebuild((ts) => ts.map((t) => ({ ...t, name: t.name.replace("layers.1.", "layers.7.") }))),
          base: base(),
        }),
      PeftErrorCode.PEFT_BASE_MODULE_MISSING,
      "layers.7",
    ],
    [
      "a base whose shapes disagree with lambda_b",
      () =>
        importPeft({
          config: src().configText,
          weights: src().weights,
          base: baseShapesFromConfig({
            config: { ...(readJson(join(PEFT_DIR, "bases/llama/config.json")) as object), num_key_value_heads: 4 },
          }),
        }),
      PeftErrorCode.PEFT_BASE_SHAPE,
      "v_proj",
    ],
    [
      "projections of the wrong shape",
      () =>
        importPeft({
          config: src().configText,
          weights: rebuild((ts) =>
            ts.map((t) => (t.name === "base_model.vera_A" ? { ...t, shape: [t.shape[1]!, t.shape[0]!] } : t)),
          ),
          base: base(),
        }),
      PeftErrorCode.PEFT_PROJECTION_SHAPE,
    ],
    [
      "vera_A without vera_B",
      () =>
        importPeft({
          config: src().configText,
          weights: rebuild((ts) => ts.filter((t) => t.name !== "base_model.vera_B")),
          base: base(),
        }),
      PeftErrorCode.PEFT_PROJECTION_SHAPE,
    ],
    [
      "projections larger than the base's modules",
      () =>
        importPeft({
          config: src().configText,
          weights: src().weights,
          base: baseShapesFromConfig({
            config: { ...(readJson(join(PEFT_DIR, "bases/llama/config.json")) as object), intermediate_size: 40 },
          }),
        }),
      PeftErrorCode.PEFT_BASE_SHAPE,
    ],
    [
      "an integer lambda",
      () =>
        importPeft({
          config: src().configText,
          weights: rebuild((ts) => ts.map((t) => (t.name === `${Q}.vera_lambda_d` ? { ...t, dtype: "I32" } : t))),
          base: base(),
        }),
      PeftErrorCode.PEFT_TENSOR_DTYPE,
      "q_proj",
    ],
    [
      "no VeRA tensors at all",
      () =>
        importPeft({
          config: src().configText,
          weights: rebuild((ts) => ts.filter((t) => !t.name.includes("lambda"))),
          base: base(),
        }),
      PeftErrorCode.PEFT_LAMBDA_UNPAIRED,
    ],
    [
      "a module path the format cannot store",
      () =>
        importPeft({
          config: src().configText,
          weights: rebuild((ts) => ts.map((t) => ({ ...t, name: t.name.replace("layers.0.", "layers.0 x.") }))),
          base: base(),
        }),
      PeftErrorCode.PEFT_MODULE_NAME,
    ],
  ];
  for (const [what, run, code, mention] of cases) {
    it(`${what} -> ${code}`, () => {
      let err: unknown;
      try {
        run();
      } catch (e) {
        err = e;
      }
      expect(err).toMatchObject({ name: "VeraError", code });
      if (mention) expect(String((err as Error).message)).toContain(mention);
    });
  }

  it("bf16 / mixed-dtype vectors and unknown tensors survive the round trip byte for byte", () => {
    const toBf16 = (b: Uint8Array) => {
      const f = new Float32Array(b.slice().buffer);
      const out = new Uint8Array(f.length * 2);
      for (let i = 0; i < f.length; i++) {
        const u = new Uint32Array(new Float32Array([f[i]!]).buffer)[0]! >>> 16;
        out[2 * i] = u & 0xff;
        out[2 * i + 1] = u >>> 8;
      }
      return out;
    };
    for (const mixed of [false, true]) {
      const weights = rebuild((ts) => [
        ...ts.map((t) =>
          t.name.includes("lambda") && (!mixed || t.name.includes("q_proj"))
            ? { ...t, dtype: "BF16" as const, data: toBf16(t.data) }
            : t,
        ),
        { name: "base_model.model.model.norm.weight", dtype: "F32", shape: [2], data: new Uint8Array(8) },
      ]);
      const { adapter, report } = importPeft({ config: src().configText, weights, base: base() });
      expect(report.carriedTensors).toEqual(["base_model.model.model.norm.weight"]);
      expect(report.warnings.join(" ")).toContain("carried unchanged");
      expect(adapter.vectorDtype).toBe(mixed ? "F32" : "BF16");
      const out = exportPeft({ adapter: readVera(writeVera({ adapter })) });
      // tensor for tensor (this input was laid out by name, not in the dtype-first order PEFT's writer uses)
      expect(tensorMap(out.safetensors)).toEqual(tensorMap(weights.bytes));
    }
  });

  it("accepts the config as a parsed object", () => {
    const cfg = readJson(join(PEFT_DIR, "adapters/llama-gqa-sp/adapter_config.json")) as Record<string, unknown>;
    const { adapter } = importPeft({ config: cfg, weights: src().weights, base: base() });
    expect(adapter.rank).toBe(8);
    expect(same(exportPeft({ adapter }).safetensors, src().bytes)).toBe(true);
  });

  it("unknown config fields are kept (never a crash) and reported", () => {
    const text = src().configText.replace("{", '{\n  "zzz": {"nested": [1, 2.5, null]},');
    const { report, adapter } = importPeft({ config: text, weights: src().weights, base: base() });
    expect(report.unknownConfigFields).toEqual(["zzz"]);
    expect(report.warnings.join(" ")).toContain("zzz");
    expect(exportPeft({ adapter }).configJson).toContain(
      '"zzz": {\n    "nested": [\n      1,\n      2.5,\n      null\n    ]\n  }',
    );
  });
});

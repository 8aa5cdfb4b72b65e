/**
 * The weight locator interface: each container's implementation (ONNX graph, safetensors checkpoint,
 * GGUF) answers for the same model alike: the same modules with the same shapes, the same parameters.
 * Real models from fixtures/families and fixtures/gguf.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { bytesSource, readGguf } from "../src/gguf/index.js";
import { ggufWeightLocator } from "../src/gguf/gguf-weight-locator.js";
import { checkpointWeightLocator } from "../src/merge/core/checkpoint-locator.js";
import { onnxWeightLocator } from "../src/onnx/onnx-weight-locator.js";
import { readOnnxModel } from "../src/onnx/read-onnx-model.js";
import { readInlineValues } from "../src/onnx/inline-values.js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { afterAll } from "vitest";
import { mergeOnnx } from "../src/merge/index.js";
import { loadAdapterFromPath } from "../src/node/load-adapter.js";
import { peftBaseFromOnnx } from "../src/peft/base-shapes-from-onnx.js";
import type { ExtraTensor, VeraAdapter } from "../src/format/types.js";
import { f32ToF16Bits } from "../src/numeric/half.js";
import { rng } from "./onnx-helpers.js";
import { parseSafetensors } from "../src/safetensors/parse.js";
import type { LocatedModule, ModuleQuery, WeightLocator } from "../src/locate/weight-locator.js";

const FX = join(__dirname, "../fixtures");
const work = mkdtempSync(join(tmpdir(), "vera-locator-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function checkpoint(path: string, modelType?: string): WeightLocator {
  const f = parseSafetensors(new Uint8Array(readFileSync(path)));
  return checkpointWeightLocator({ tensors: f.tensors, ...(modelType ? { modelType } : {}) });
}

/** A located module in the (out, in) view: what must agree across containers. */
const view = (m: LocatedModule): unknown => ({
  module: m.module,
  out: m.outRange[1] - m.outRange[0],
  in: m.inFeatures,
  dtype: m.dtype,
});

describe("one weight locator, one answer per model", () => {
  it("RoBERTa: the dynamo ONNX export and the checkpoint", () => {
    const dir = join(FX, "families", "roberta-seqcls");
    const onnx = onnxWeightLocator({
      model: readOnnxModel({ bytes: new Uint8Array(readFileSync(join(dir, "model.onnx"))) }),
    });
    const ck = checkpoint(join(dir, "base", "model.safetensors"), "roberta");
    const modules: ModuleQuery[] = [0, 1].flatMap((i) =>
      ["query", "value"].map((m) => ({
        name: `roberta.encoder.layer.${i}.attention.self.${m}`,
        inFeatures: 32,
        outFeatures: 32,
      })),
    );
    const a = onnx.locateModules({ modules });
    const b = ck.locateModules({ modules });
    expect(a.modules.map(view)).toEqual(b.modules.map(view));
    expect(a.modules.every((m) => m.layout === "in_out")).toBe(true); // MatMul's (in, out)
    expect(b.modules.every((m) => m.layout === "out_in")).toBe(true);
    for (const [param, shape] of [
      ["classifier.dense.weight", [32, 32]],
      ["classifier.out_proj.weight", [3, 32]],
      ["classifier.out_proj.bias", [3]],
      ["roberta.encoder.layer.1.attention.self.value.bias", [32]],
    ] as const) {
      const x = onnx.locateParameter({ param, shape });
      const y = ck.locateParameter({ param, shape });
      expect(typeof x, param).toBe("object");
      expect(typeof y, param).toBe("object");
    }
    expect(onnx.locateParameter({ param: "classifier.nothing.weight", shape: [3, 32] })).toMatch(/no tensor/);
    expect(ck.locateParameter({ param: "classifier.nothing.weight", shape: [3, 32] })).toMatch(/no tensor/);
    expect(ck.locateParameter({ param: "classifier.out_proj.weight", shape: [4, 32] })).toMatch(/shape/);
    expect(onnx.locateParameter({ param: "classifier.out_proj.weight", shape: [4, 32] })).toMatch(/dims/);
  });

  it("Phi-3: a fused module found as itself in ONNX and in the checkpoint", () => {
    const dir = join(FX, "families", "phi3");
    const onnx = onnxWeightLocator({
      model: readOnnxModel({ bytes: new Uint8Array(readFileSync(join(dir, "model.onnx"))) }),
    });
    const ck = checkpoint(join(dir, "base", "model.safetensors"), "phi3");
    const modules: ModuleQuery[] = [
      { name: "model.layers.0.self_attn.qkv_proj", inFeatures: 32, outFeatures: 64 },
      { name: "model.layers.1.mlp.gate_up_proj", inFeatures: 32, outFeatures: 96 },
    ];
    expect(onnx.locateModules({ modules }).modules.map(view)).toEqual(ck.locateModules({ modules }).modules.map(view));
  });

  it("Qwen2: the checkpoint and its GGUF (llama.cpp names)", async () => {
    const dir = join(FX, "gguf", "qwen2");
    const gguf = ggufWeightLocator({
      file: await readGguf({ source: bytesSource(new Uint8Array(readFileSync(join(dir, "base-f32.gguf")))) }),
    });
    const ck = checkpoint(join(dir, "model.safetensors"), "qwen2");
    const modules: ModuleQuery[] = [
      { name: "model.layers.0.self_attn.q_proj", inFeatures: 32, outFeatures: 32 },
      { name: "model.layers.1.mlp.down_proj", inFeatures: 48, outFeatures: 32 },
    ];
    const a = gguf.locateModules({ modules });
    expect(a.modules.map((m) => m.tensor)).toEqual(["blk.0.attn_q.weight", "blk.1.ffn_down.weight"]);
    expect(a.modules.map(view)).toEqual(ck.locateModules({ modules }).modules.map(view));
    for (const [param, shape] of [
      ["lm_head.weight", [288, 32]],
      ["model.layers.0.self_attn.q_proj.bias", [32]],
    ] as const) {
      expect(typeof gguf.locateParameter({ param, shape }), param).toBe("object");
      expect(typeof ck.locateParameter({ param, shape }), param).toBe("object");
    }
    expect(gguf.locateParameter({ param: "model.embed_tokens.weight", shape: [288, 32] })).toMatchObject({
      tensor: "token_embd.weight",
      transposed: false,
    });
  });
});

describe("legacy TorchScript exports: the same parameter, renamed and transposed by constant folding", () => {
  it("every Linear weight of legacy-llama-folded (onnx::MatMul_N, (in, out)) is the unfolded export's named one", () => {
    const load = (c: string) => {
      const bytes = new Uint8Array(readFileSync(join(FX, "onnx", c, "model.onnx")));
      return { dir: join(FX, "onnx", c), bytes, locator: onnxWeightLocator({ model: readOnnxModel({ bytes }) }) };
    };
    const folded = load("legacy-llama-folded");
    const unfolded = load("legacy-llama-unfolded-wrapped");
    const values = (m: ReturnType<typeof load>, loc: Exclude<ReturnType<typeof m.locator.parameter>, string>) => {
      const s = loc.tensor.storage;
      const raw =
        s.kind === "external"
          ? readFileSync(join(m.dir, s.location)).subarray(s.offset, s.offset + (s.length ?? 0))
          : readInlineValues(m.bytes, loc.tensor, loc.dtype);
      return new Float32Array(Uint8Array.from(raw).buffer);
    };
    const modules = folded.locator.weights.filter((w) => !w.quantized).map((w) => w.module);
    expect(modules.length).toBeGreaterThan(10);
    const renamed: string[] = [];
    for (const module of modules) {
      const w = folded.locator.weights.find((x) => x.module === module)!;
      const shape = [w.outFeatures, w.inFeatures];
      const a = folded.locator.parameter({ param: `${module}.weight`, shape });
      const b = unfolded.locator.parameter({ param: `${module}.weight`, shape });
      if (typeof a === "string" || typeof b === "string") throw new Error(`${module}: ${String(a)} / ${String(b)}`);
      if (/^onnx::MatMul_\d+$/.test(a.tensor.name)) renamed.push(module);
      const torchLayout = (m: ReturnType<typeof load>, loc: typeof a): number[] => {
        const v = values(m, loc);
        const [out, inF] = shape as [number, number];
        if (!loc.transposed) return [...v];
        const t: number[] = [];
        for (let i = 0; i < out; i++) for (let j = 0; j < inF; j++) t.push(v[j * out + i]!);
        return t;
      };
      expect(torchLayout(folded, a)).toEqual(torchLayout(unfolded, b));
    }
    // constant folding renamed and transposed most of them: (in, out) initializers named onnx::MatMul_N
    expect(renamed.length).toBeGreaterThan(modules.length / 2);
  });
});

describe("a carried tensor into a float16 ONNX model, every storage kind", () => {
  it("legacy-llama-fp16: saved Linear weights replace raw_data and int32_data fp16 and float_data fp32 initializers, rounded to nearest even", async () => {
    const dir = join(FX, "onnx", "legacy-llama-fp16");
    const bytes = new Uint8Array(readFileSync(join(dir, "model.onnx")));
    const locator = onnxWeightLocator({ model: readOnnxModel({ bytes }) });
    const shapes = new Map(locator.weights.map((w) => [w.module, [w.outFeatures, w.inFeatures]]));
    const loaded = await loadAdapterFromPath({
      path: join(FX, "onnx", "adapters", "tiny-llama"),
      base: (peft) => peftBaseFromOnnx({ weights: locator.weights, peftWeights: peft }),
    });
    // one module per storage kind becomes a saved (modules_to_save) module instead of a VeRA one
    const byKind = new Map<string, string>();
    for (const w of locator.weights) {
      const kind = locator.index.initializers.get(w.initializer)!.storage.kind;
      if (!byKind.has(kind) && w.dtype !== undefined) byKind.set(kind, w.module);
    }
    expect([...byKind.keys()].sort()).toEqual(["float_data", "int32_data", "raw"]);
    const saved = [...byKind.values()];
    const rand = rng(5);
    const extra: ExtraTensor[] = saved.map((m) => {
      const [o, i] = shapes.get(m)!;
      const v = Float32Array.from({ length: o! * i! }, () => rand() * 2 - 1);
      return { name: `base_model.model.${m}.weight`, dtype: "F32", shape: [o!, i!], data: new Uint8Array(v.buffer) };
    });
    const adapter: VeraAdapter = {
      ...loaded.adapter,
      modules: loaded.adapter.modules.filter((m) => !saved.includes(m.name)),
      extraTensors: extra,
      training: { ...loaded.adapter.training, modules_to_save: saved },
    };
    const out = join(work, "fp16", "model.onnx");
    const report = await mergeOnnx({ model: join(dir, "model.onnx"), adapter, output: out, durable: false });
    expect(report.carried.map((c) => c.dtype).sort()).toEqual(["F16", "F16", "F32"]);
    const merged = new Uint8Array(readFileSync(out));
    const after = onnxWeightLocator({ model: readOnnxModel({ bytes: merged }) });
    for (const t of extra) {
      const loc = after.parameter({ param: t.name.replace("base_model.model.", ""), shape: t.shape });
      if (typeof loc === "string") throw new Error(loc);
      const raw = readInlineValues(merged, loc.tensor, loc.dtype).buffer.slice(0);
      const got = loc.dtype === "F16" ? new Uint16Array(raw) : new Float32Array(raw);
      const src = new Float32Array(t.data.buffer);
      const [o, i] = t.shape as [number, number];
      for (let r = 0; r < o; r++)
        for (let c = 0; c < i; c++) {
          const stored = loc.transposed ? got[c * o + r] : got[r * i + c];
          expect(stored).toBe(loc.dtype === "F16" ? f32ToF16Bits(src[r * i + c]!) : src[r * i + c]);
        }
    }
  });
});

import { readdirSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { listLinearWeights } from "../src/onnx/list-linear-weights.js";
import { readOnnxModel } from "../src/onnx/read-onnx-model.js";
import { baseShapesFromConfig, baseShapesFromOnnx, baseShapesFromWeights, PeftErrorCode } from "../src/peft/index.js";
import { BaseIndex } from "../src/peft/resolve-base.js";
import { parseSafetensorsHeader } from "../src/safetensors/parse.js";
import { manifest, PEFT_DIR, readBytes, readJson } from "./peft-fixtures.js";

type Truth = { model_class: string; modules: Record<string, { in: number; out: number; layout: "linear" | "conv1d" }> };

describe("base shapes from a transformers config.json", () => {
  const archs = readdirSync(join(PEFT_DIR, "configs")).sort();
  it("covers every architecture the fixtures hold", () => {
    expect(archs).toEqual(Object.keys(manifest.configs).sort());
    expect(archs.length).toBeGreaterThanOrEqual(10);
  });
  for (const arch of archs) {
    it(`${arch}: every Linear/Conv1D module of the real transformers model, with its shape and layout`, () => {
      const truth = readJson(join(PEFT_DIR, "configs", arch, "linear-shapes.json")) as Truth;
      const base = baseShapesFromConfig({ config: readJson(join(PEFT_DIR, "configs", arch, "config.json")) });
      const index = new BaseIndex(base);
      const names = Object.keys(truth.modules);
      expect(names.length).toBeGreaterThan(4);
      for (const name of names) {
        const t = truth.modules[name]!;
        const m = index.find(name);
        expect(m, `${arch}: ${name}`).toBeDefined();
        expect(m!.shapes, `${arch}: ${name}`).toEqual([{ inFeatures: t.in, outFeatures: t.out, layout: t.layout }]);
      }
      // and nothing invented: every module the reader lists exists in the model
      for (const m of base.modules)
        expect(
          names.some((n) => n === m.path || n.endsWith("." + m.path) || m.path.endsWith("." + n)),
          `${arch}: ${m.path}`,
        ).toBe(true);
    });
  }
  it("refuses an unknown model_type with PEFT_BASE_UNSUPPORTED and bad fields with PEFT_CONFIG_INVALID", () => {
    expect(() => baseShapesFromConfig({ config: { model_type: "t5" } })).toThrowError(
      expect.objectContaining({ code: PeftErrorCode.PEFT_BASE_UNSUPPORTED }),
    );
    expect(() => baseShapesFromConfig({ config: {} })).toThrowError(
      expect.objectContaining({ code: PeftErrorCode.PEFT_BASE_UNSUPPORTED }),
    );
    expect(() => baseShapesFromConfig({ config: { model_type: "llama", hidden_size: "32" } })).toThrowError(
      expect.objectContaining({ code: PeftErrorCode.PEFT_CONFIG_INVALID, path: "config.json/hidden_size" }),
    );
    expect(() => baseShapesFromConfig({ config: [1] })).toThrowError(
      expect.objectContaining({ code: PeftErrorCode.PEFT_CONFIG_INVALID }),
    );
  });
});

describe("base shapes from weights headers and ONNX models", () => {
  for (const [name, b] of Object.entries(manifest.bases)) {
    it(`${name}: model.safetensors header offers both readings of each 2-D weight`, () => {
      const bytes = readBytes(join(PEFT_DIR, "bases", name, "model.safetensors"));
      // header only: hand the parser just the header bytes plus the real file size
      const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
      const header = parseSafetensorsHeader({ bytes: bytes.subarray(0, 8 + n), fileSize: bytes.length });
      const base = baseShapesFromWeights({
        tensors: [...header.tensors].map(([k, v]) => ({ name: k, shape: v.shape })),
      });
      expect(base.modules.length).toBeGreaterThan(4);
      for (const m of base.modules) {
        expect(m.shapes).toHaveLength(2);
        expect(m.shapes[0]!.inFeatures).toBe(m.shapes[1]!.outFeatures);
      }
      void b;
    });
  }
  for (const name of ["llama", "gpt2"]) {
    it(`${name}: model.onnx (torch dynamo export) lists the Linear modules with their shapes`, () => {
      const truth = readJson(join(PEFT_DIR, "configs", name, "linear-shapes.json")) as Truth;
      const model = readOnnxModel({ bytes: readBytes(join(PEFT_DIR, "bases", name, "model.onnx")) });
      const base = baseShapesFromOnnx({ weights: listLinearWeights({ model }) });
      const index = new BaseIndex(base);
      for (const [path, t] of Object.entries(truth.modules)) {
        if (path === "lm_head") continue;
        const m = index.find(path);
        expect(m, path).toBeDefined();
        expect(m!.shapes[0]).toMatchObject({ inFeatures: t.in, outFeatures: t.out });
      }
    });
  }
});

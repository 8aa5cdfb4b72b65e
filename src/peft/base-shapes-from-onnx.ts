import type { LinearWeight } from "../onnx/list-linear-weights.js";
import { findWeightsForModule } from "../onnx/plan-onnx-merge.js";
import type { SafetensorsFile } from "../safetensors/parse.js";
import type { BaseModule, BaseShapes } from "./base-shapes.js";

/** Parameters of {@link baseShapesFromOnnx}. */
export interface BaseShapesFromOnnxParams {
  /** The model's Linear-like weights, from `listLinearWeights` (src/onnx). */
  weights: readonly LinearWeight[];
  /** Where they came from, for messages. @default "model.onnx" */
  label?: string;
}

/**
 * Module shapes from an ONNX model's Linear-like weights (module paths from the exporter's metadata or
 * names, in/out features from the weight and its consumer). The torch layout (Linear or Conv1D) is not
 * visible in ONNX; the importer takes it from the adapter's fan_in_fan_out. A fused projection (`qkv_proj`,
 * `gate_up_proj`) is a module of its own (Phi-3 has them); its parts are added where an adapter names them.
 */
export function baseShapesFromOnnx(params: BaseShapesFromOnnxParams): BaseShapes {
  const modules: BaseModule[] = [];
  for (const w of params.weights) {
    const aliases = w.paths.filter((p) => p !== w.module);
    modules.push({
      path: w.module,
      ...(aliases.length > 0 ? { aliases } : {}),
      shapes: [{ inFeatures: w.inFeatures, outFeatures: w.outFeatures }],
    });
  }
  return { source: "onnx", description: params.label ?? "model.onnx", modules };
}

/** Parameters of {@link peftBaseFromOnnx}. */
export interface PeftBaseFromOnnxParams {
  /** The ONNX model's Linear weights (`listLinearWeights`). */
  weights: readonly LinearWeight[];
  /** The PEFT adapter_model.safetensors (its lambda_b lengths size the parts of fused weights). */
  peftWeights: SafetensorsFile;
  /** Label of the model, for messages. @default "model.onnx" */
  label?: string;
}

/**
 * Module shapes for importing a PEFT adapter against an ONNX model: {@link baseShapesFromOnnx}, plus the
 * parts of fused weights (onnxruntime-genai `qkv_proj`) that the adapter targets: in_features of the fused
 * weight, out_features of the module's lambda_b. Give it to `loadAdapter` as a function of the PEFT weights.
 */
export function peftBaseFromOnnx(params: PeftBaseFromOnnxParams): BaseShapes {
  const base = baseShapesFromOnnx({ weights: params.weights, label: params.label ?? "model.onnx" });
  const fused = params.weights.filter((w) => w.fused);
  if (fused.length === 0) return base;
  for (const [key, info] of params.peftWeights.tensors) {
    const m = /^base_model\.model\.(.+)\.p?vera_lambda_b$/.exec(key);
    if (!m || info.shape.length !== 1) continue;
    const hits = findWeightsForModule({ module: m[1]!, weights: fused }).filter((h) => h.part !== undefined);
    if (hits.length !== 1) continue;
    base.modules.push({
      path: m[1]!,
      shapes: [{ inFeatures: hits[0]!.weight.inFeatures, outFeatures: info.shape[0]! }],
    });
  }
  return base;
}

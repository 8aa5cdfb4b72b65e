import { findWeightsForModule, type LinearWeight } from "verakit/onnx";
import { baseShapesFromOnnx, type BaseModule, type BaseShapes } from "verakit/peft";
import type { SafetensorsFile } from "verakit/safetensors";

/**
 * Module shapes for importing a PEFT adapter against the ONNX model it is merged into, as `vera merge`
 * takes them: the model's Linear weights, plus the parts of fused weights (onnxruntime-genai
 * `qkv_proj`) the adapter targets (in_features of the fused weight, out_features of the module's lambda_b).
 */
export function peftBaseFromOnnx(params: {
  weights: readonly LinearWeight[];
  peftWeights: SafetensorsFile;
  label: string;
}): BaseShapes {
  const base = baseShapesFromOnnx({ weights: params.weights, label: params.label });
  const fused = params.weights.filter((w) => w.fused);
  if (fused.length === 0) return base;
  const parts: BaseModule[] = [];
  for (const [key, info] of params.peftWeights.tensors) {
    const m = /^base_model\.model\.(.+)\.vera_lambda_b$/.exec(key);
    if (!m || info.shape.length !== 1) continue;
    const hits = findWeightsForModule({ module: m[1]!, weights: fused }).filter((h) => h.part !== undefined);
    if (hits.length !== 1) continue;
    parts.push({ path: m[1]!, shapes: [{ inFeatures: hits[0]!.weight.inFeatures, outFeatures: info.shape[0]! }] });
  }
  base.modules.push(...parts);
  return base;
}

import type { LinearWeight } from "../onnx/list-linear-weights.js";
import { findWeightsForModule } from "../onnx/plan-onnx-merge.js";
import { baseShapesFromOnnx } from "../peft/base-shapes-from-onnx.js";
import type { BaseModule, BaseShapes } from "../peft/base-shapes.js";
import type { SafetensorsFile } from "../safetensors/parse.js";
import { loadAdapterFile, type LoadedAdapterFile } from "./load-adapter-file.js";

/** Parameters of {@link loadMergeAdapter}. */
export interface LoadMergeAdapterParams {
  /** A verakit file (`adapter.vera.safetensors`) or a PEFT adapter folder. */
  path: string;
  /** The ONNX model's Linear weights ({@link listLinearWeights}): module shapes for a PEFT folder. */
  weights: readonly LinearWeight[];
  /** Label of the ONNX model, for messages. @default "model.onnx" */
  modelLabel?: string;
  /** PEFT sub-adapter name. @default the folder's adapter */
  adapterName?: string;
}

/** A loaded adapter and where it came from. */
export type LoadedMergeAdapter = LoadedAdapterFile;

/**
 * Load the adapter to merge into an ONNX model: a verakit file, or a PEFT folder imported with the
 * ONNX model's Linear weights as the source of module shapes (PEFT files do not record in_features).
 */
export async function loadMergeAdapter(params: LoadMergeAdapterParams): Promise<LoadedMergeAdapter> {
  return loadAdapterFile({
    path: params.path,
    base: (peftWeights) =>
      peftBaseFromOnnx({ weights: params.weights, peftWeights, label: params.modelLabel ?? "model.onnx" }),
    ...(params.adapterName !== undefined ? { adapterName: params.adapterName } : {}),
  });
}

/** Parameters of {@link peftBaseFromOnnx}. */
export interface PeftBaseFromOnnxParams {
  /** The ONNX model's Linear weights ({@link listLinearWeights}). */
  weights: readonly LinearWeight[];
  /** The PEFT adapter_model.safetensors (its lambda_b lengths size the parts of fused weights). */
  peftWeights: SafetensorsFile;
  /** Label of the model, for messages. @default "model.onnx" */
  label?: string;
}

/**
 * Module shapes for importing a PEFT adapter against an ONNX model: `baseShapesFromOnnx`, plus the
 * parts of fused weights (onnxruntime-genai `qkv_proj`) that the adapter targets.
 */
export function peftBaseFromOnnx(params: PeftBaseFromOnnxParams): BaseShapes {
  const base = baseShapesFromOnnx({ weights: params.weights, label: params.label ?? "model.onnx" });
  base.modules.push(...fusedPartShapes(params.peftWeights, params.weights));
  return base;
}

/**
 * Shapes of adapter modules that live inside a fused ONNX weight (onnxruntime-genai `qkv_proj`):
 * in_features is the fused weight's, out_features the module's lambda_b length.
 */
function fusedPartShapes(file: SafetensorsFile, weights: readonly LinearWeight[]): BaseModule[] {
  if (!weights.some((w) => w.fused)) return [];
  const out: BaseModule[] = [];
  const fused = weights.filter((w) => w.fused);
  for (const [key, info] of file.tensors) {
    const m = /^base_model\.model\.(.+)\.vera_lambda_b$/.exec(key);
    if (!m || info.shape.length !== 1) continue;
    const module = m[1]!;
    const hits = findWeightsForModule({ module, weights: fused }).filter((h) => h.part !== undefined);
    if (hits.length !== 1) continue;
    out.push({ path: module, shapes: [{ inFeatures: hits[0]!.weight.inFeatures, outFeatures: info.shape[0]! }] });
  }
  return out;
}

import type { LinearWeight } from "../onnx/list-linear-weights.js";
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

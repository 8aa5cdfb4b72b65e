import type { BaseModule, BaseShapes } from "./base-shapes.js";

/** A tensor entry of a weights file header (name and shape are all that is used). */
export interface WeightEntry {
  name: string;
  shape: number[];
}

/** Parameters of {@link baseShapesFromWeights}. */
export interface BaseShapesFromWeightsParams {
  /** Tensor entries of one safetensors header, or of every shard of a sharded checkpoint. */
  tensors: Iterable<WeightEntry>;
  /** Where they came from, for messages. @default "weights" */
  label?: string;
  /**
   * The name a stored tensor goes by once loaded (transformers 5 renames older checkpoints' tensors), so
   * a module is also known by the path PEFT uses. @default the stored name
   */
  loadedName?: (stored: string) => string;
}

/**
 * Module shapes from the tensor names and shapes of a weights file (only the header is needed, no
 * weight bytes): every 2-D `<module>.weight` is a candidate Linear-like module. The header cannot say
 * whether a weight is torch Linear (out, in) or GPT-2 Conv1D (in, out), so both readings are offered
 * and the importer keeps the one that agrees with the adapter.
 */
export function baseShapesFromWeights(params: BaseShapesFromWeightsParams): BaseShapes {
  const modules: BaseModule[] = [];
  for (const t of params.tensors) {
    if (!t.name.endsWith(".weight") || t.shape.length !== 2) continue;
    const [d0, d1] = t.shape as [number, number];
    if (!(d0 > 0 && d1 > 0)) continue;
    const loaded = params.loadedName?.(t.name);
    const alias =
      loaded !== undefined && loaded !== t.name && loaded.endsWith(".weight") ? loaded.slice(0, -7) : undefined;
    modules.push({
      path: t.name.slice(0, -".weight".length),
      ...(alias !== undefined ? { aliases: [alias] } : {}),
      shapes: [
        { inFeatures: d1, outFeatures: d0, layout: "linear" },
        { inFeatures: d0, outFeatures: d1, layout: "conv1d" },
      ],
    });
  }
  return { source: "safetensors", description: params.label ?? "weights", modules };
}

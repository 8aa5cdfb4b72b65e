/**
 * The weight locator: one interface that every container implements (an ONNX graph: `onnxWeightLocator`
 * in src/onnx; a safetensors checkpoint: `checkpointWeightLocator` in src/merge; a GGUF file:
 * `ggufWeightLocator` in src/gguf), sharing the module-path rules of src/module-path.ts and the mapping
 * format of src/weight-mapping.ts. Merge, `--dry-run` and graft ask it where an adapter module's weight
 * is and how it is laid out, and where a model parameter a carried tensor replaces is. A leaf: types only.
 */
import type { WeightDtype, WeightLayout } from "../dtypes.js";

/** An adapter module as a locator needs it. */
export interface ModuleQuery {
  /** The module path PEFT uses, e.g. `model.layers.0.self_attn.q_proj`. */
  name: string;
  inFeatures: number;
  outFeatures: number;
}

/** How a module's weight was found. */
export type ModuleMatch =
  /** The same path. */
  | "exact"
  /** A wrapper prefix on either side (`src/module-path.ts`). */
  | "suffix"
  /** The user's mapping file. */
  | "mapping"
  /** A checkpoint tensor under the name transformers loads it as. */
  | "renamed";

/** Where one adapter module's weight is. */
export interface LocatedModule {
  module: string;
  /** The container's tensor: an ONNX initializer, a checkpoint tensor, a GGUF tensor. */
  tensor: string;
  /** The container-side path or name that matched. */
  matched: string;
  matchedBy: ModuleMatch;
  /** The stored layout: (out, in) or (in, out). */
  layout: WeightLayout;
  dtype: WeightDtype;
  /** Features of the whole tensor. */
  inFeatures: number;
  outFeatures: number;
  /** The module's row block of the tensor: all of it, or a part of a fused weight. */
  outRange: [number, number];
}

/** Where a model parameter (a modules_to_save tensor, a bias) is. */
export interface LocatedParameter {
  param: string;
  /** The container's tensor. */
  tensor: string;
  /** How it was found (`exact`, `suffix`, `renamed`, `mapping`, `linear (<module>)`). */
  matchedBy: string;
  dtype: WeightDtype;
  /** Stored transposed against PyTorch's layout (an ONNX MatMul's (in, out)). */
  transposed: boolean;
  /** Set when the tensor has other users: a writer must give this parameter a copy of its own. */
  shared?: boolean;
}

/** What {@link WeightLocator.locateModules} found. */
export interface ModuleLocations {
  modules: LocatedModule[];
  /** Modules without a weight, left out (only with `skipMissing`). */
  skipped: string[];
  warnings: string[];
}

/** The locator every container implements. */
export interface WeightLocator {
  /** The container kind. */
  readonly container: "onnx" | "safetensors" | "gguf";
  /**
   * Locate every module's weight, checking dtype, shape and sharing.
   *
   * @throws VeraError with the container's codes (`ONNX_*`, `MERGE_WEIGHT_*`, `GGUF_*`), every problem at once
   *   where the container can.
   */
  locateModules(params: { modules: readonly ModuleQuery[]; skipMissing?: boolean }): ModuleLocations;
  /** Locate one model parameter of a given PyTorch shape, or say why it cannot be placed. */
  locateParameter(params: { param: string; shape: readonly number[] }): LocatedParameter | string;
}

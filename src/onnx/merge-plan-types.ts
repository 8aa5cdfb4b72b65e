/** The types of an ONNX merge plan ({@link planOnnxMerge}), shared by the planner and its builder. */
import type { WeightDtype, WeightLayout } from "../dtypes.js";
import type { LinearWeight, ModulePathSource } from "./list-linear-weights.js";
import type { OnnxModel, OnnxTensor } from "./types.js";
import type { WeightMapping } from "../locate/weight-mapping.js";

/** The shape of one adapted module (what the planner needs from an adapter). */
export interface ModuleShape {
  /** Module path in the adapter, e.g. `model.layers.0.self_attn.q_proj`. */
  name: string;
  inFeatures: number;
  outFeatures: number;
}

/** How a module was matched to its weight. */
export type MatchKind = "exact" | "suffix" | "mapping";

/** One adapter module inside a planned weight. */
export interface PlannedModule {
  /** The adapter's module path. */
  module: string;
  /** The model-side path it matched (or the initializer name for a mapping). */
  matched: string;
  matchedBy: MatchKind;
  /** Block of output features [outStart, outEnd) of the weight this module owns (all of it unless fused). */
  outStart: number;
  outEnd: number;
  inFeatures: number;
  outFeatures: number;
}

/** One initializer that receives deltas. */
export interface PlannedWeight {
  /** Initializer name. */
  initializer: string;
  tensor: OnnxTensor;
  dtype: WeightDtype;
  layout: WeightLayout;
  /** Input features of the whole weight. */
  inFeatures: number;
  /** Output features of the whole weight. */
  outFeatures: number;
  /** Bytes of the stored values. */
  byteLength: number;
  /** How the weight's module path was found. */
  source: ModulePathSource | "mapping";
  /** The consuming node (empty for mapping entries without a consumer). */
  node: string;
  /** Ops between initializer and consumer. */
  via: string[];
  /** Modules merged into this weight, by outStart. */
  modules: PlannedModule[];
  /**
   * Set when the weight is shared and `untie` was asked: the merged values go to a NEW initializer
   * `name` (a copy of `initializer` plus the delta), and input `input` of node `node` of graph
   * `graph` is rewired to it; every other user keeps the original.
   */
  untie?: { name: string; graph: number; node: number; input: number; uses: number };
}

/** What {@link planOnnxMerge} returns. */
export interface OnnxMergePlan {
  /** Weights to patch, in file order of their initializers. */
  weights: PlannedWeight[];
  /** Non-fatal remarks (e.g. a merged initializer is also a graph input). */
  warnings: string[];
  /** Adapter modules with no weight in this model, left out because `skipMissing` was set. */
  skipped: string[];
}

/** Parameters of {@link planOnnxMerge}. */
export interface PlanOnnxMergeParams {
  /** The parsed model. */
  model: OnnxModel;
  /** The adapter's modules (names and shapes). */
  modules: ModuleShape[];
  /**
   * Explicit module -> initializer entries; they take precedence over automatic matching.
   * @default {}
   */
  mapping?: WeightMapping;
  /**
   * Leave out adapter modules that have no weight in this model instead of refusing (e.g. one
   * part of a model exported as several files, such as encoder_model.onnx and decoder_model.onnx).
   * @default false
   */
  skipMissing?: boolean;
  /**
   * Give a weight used by several nodes (tied embeddings) a copy of its own for the adapted
   * MatMul/Gemm instead of refusing; the other users keep the original weight.
   * @default false
   */
  untie?: boolean;
  /**
   * Weights from {@link listLinearWeights} (computed when not given).
   * @default listLinearWeights({model})
   */
  weights?: LinearWeight[];
}

/** A weight whose module path matches an adapter module. */
export interface WeightHit {
  weight: LinearWeight;
  /** `exact`: same path; `suffix`: one path ends with `.` + the other (wrapper prefix on either side). */
  kind: "exact" | "suffix";
  /** The model-side path that matched. */
  path: string;
  /** For fused weights: which part (`q_proj`, `k_proj`, `v_proj`). */
  part?: string;
}
/** Parameters of {@link findWeightsForModule}. */
export interface FindWeightsForModuleParams {
  /** Adapter module path. */
  module: string;
  /** Candidates from {@link listLinearWeights}. */
  weights: readonly LinearWeight[];
}

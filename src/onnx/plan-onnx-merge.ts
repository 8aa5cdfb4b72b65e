import type { WeightDtype, WeightLayout } from "../dtypes.js";
import { VeraError } from "../errors.js";
import { indexGraph } from "./graph-index.js";
import { OnnxPlanBuilder } from "./onnx-plan-builder.js";
import { listLinearWeights, type LinearWeight, type ModulePathSource } from "./list-linear-weights.js";
import type { OnnxModel, OnnxTensor } from "./types.js";
import type { WeightMapping } from "./weight-mapping.js";
import { bestPathMatches, fusedPartsOf, type PathCandidate } from "../module-path.js";

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
type Hit = WeightHit;

/** Parameters of {@link findWeightsForModule}. */
export interface FindWeightsForModuleParams {
  /** Adapter module path. */
  module: string;
  /** Candidates from {@link listLinearWeights}. */
  weights: readonly LinearWeight[];
}

/**
 * The weights whose paths match a module path best (the shared rules of `bestPathMatches`): exact
 * matches when there are any, else the suffix matches (a wrapper prefix on either side, at a `.`
 * boundary) sharing the most path components. A fused weight matches by its own path (Phi-3's
 * `qkv_proj` targeted as itself) and through its parts (`...qkv_proj` holds `...q_proj`, `...k_proj`,
 * `...v_proj`; `...gate_up_proj` holds `...gate_proj`, `...up_proj`).
 */
export function findWeightsForModule(params: FindWeightsForModuleParams): WeightHit[] {
  return hitsFor(params.module, params.weights);
}

function hitsFor(module: string, weights: readonly LinearWeight[]): Hit[] {
  const candidates: Array<PathCandidate<{ weight: LinearWeight; part?: string }>> = [];
  for (const w of weights) {
    candidates.push({ item: { weight: w }, paths: w.paths });
    if (!w.fused) continue;
    for (const part of w.fused.parts) {
      const paths = w.paths.flatMap((p) => {
        const f = fusedPartsOf(p);
        return f ? [f.prefix + part] : [];
      });
      candidates.push({ item: { weight: w, part }, paths });
    }
  }
  return bestPathMatches(module, candidates).map((m) => {
    const hit: Hit = { weight: m.item.weight, kind: m.kind, path: m.path };
    if (m.item.part !== undefined) hit.part = m.item.part;
    return hit;
  });
}

/**
 * Decide, for every adapter module, which initializer receives its delta, in which layout and
 * which block of output features, and check that the merge is possible: the weight is found
 * (exact path, else a unique suffix match in either direction, else the mapping), used by one
 * node only, not quantized, float32/float16/bfloat16, stored where it can be patched, and shaped
 * as the adapter says. Every problem is reported at once.
 *
 * @throws VeraError `ONNX_MODULE_NOT_FOUND`, `ONNX_AMBIGUOUS`, `ONNX_SHARED_WEIGHT`, `ONNX_QUANTIZED`,
 *   `ONNX_SHAPE_MISMATCH`, `ONNX_DTYPE_UNSUPPORTED`, `ONNX_STORAGE`, `ONNX_FUSED_SPLIT`,
 *   `ONNX_OVERLAP`, `ONNX_MAPPING` (the first problem's code; `issues` lists all).
 */
export function planOnnxMerge(params: PlanOnnxMergeParams): OnnxMergePlan {
  const { model, modules } = params;
  const mapping = params.mapping ?? {};
  const weights = params.weights ?? listLinearWeights({ model });
  const b = new OnnxPlanBuilder(indexGraph(model), weights, params);
  for (const shape of modules) {
    const m = Object.hasOwn(mapping, shape.name) ? mapping[shape.name] : undefined;
    if (m) b.planMapped(shape, m);
    else b.planMatched(shape, hitsFor(shape.name, weights));
  }
  b.planFused();
  b.checkOverlaps();
  if (b.issues.length > 0) throw VeraError.fromIssues(b.issues);
  const result = [...b.planned.values()].filter((p) => p.modules.length > 0);
  result.sort((x, y) => x.tensor.span.start - y.tensor.span.start);
  const warnings = [...b.warnings];
  if (b.skipped.length > 0)
    warnings.push(
      `${b.skipped.length} adapter module(s) have no weight in this model and were left out: ${b.skipped.join(", ")}`,
    );
  return { weights: result, warnings, skipped: b.skipped };
}

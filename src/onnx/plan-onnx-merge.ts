import { VeraError } from "../errors.js";
import { indexGraph } from "./graph-index.js";
import { OnnxPlanBuilder } from "./onnx-plan-builder.js";
import { listLinearWeights, type LinearWeight } from "./list-linear-weights.js";
import { bestPathMatches, fusedPartsOf, type PathCandidate } from "../locate/module-path.js";

export type {
  FindWeightsForModuleParams,
  MatchKind,
  ModuleShape,
  OnnxMergePlan,
  PlannedModule,
  PlannedWeight,
  PlanOnnxMergeParams,
  WeightHit,
} from "./merge-plan-types.js";
import type { FindWeightsForModuleParams, OnnxMergePlan, PlanOnnxMergeParams, WeightHit } from "./merge-plan-types.js";

type Hit = WeightHit;

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

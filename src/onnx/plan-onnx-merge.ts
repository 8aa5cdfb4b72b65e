import type { WeightDtype, WeightLayout } from "../dtypes.js";
import { VeraError, type ErrorCodeValue, type Issue } from "../errors.js";
import { OnnxErrorCode } from "./error-codes.js";
import { indexGraph } from "./graph-index.js";
import { dtypeSize, numel } from "./inline-values.js";
import { listLinearWeights, weightDtypeOf, type LinearWeight, type ModulePathSource } from "./list-linear-weights.js";
import { dataTypeName, type OnnxModel, type OnnxTensor } from "./types.js";
import type { WeightMapping } from "./weight-mapping.js";

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

/** How well a model-side path matches a module path: Infinity when equal, else the number of dot-separated components the shorter one shares as a suffix (0: no match). */
function matchScore(path: string, module: string): number {
  if (path === module) return Infinity;
  if (path.endsWith("." + module)) return module.split(".").length;
  if (module.endsWith("." + path)) return path.split(".").length;
  return 0;
}

/** Parameters of {@link findWeightsForModule}. */
export interface FindWeightsForModuleParams {
  /** Adapter module path. */
  module: string;
  /** Candidates from {@link listLinearWeights}. */
  weights: readonly LinearWeight[];
}

/**
 * The weights whose paths match a module path best: exact matches when there are any, else the
 * suffix matches (a wrapper prefix on either side, at a `.` boundary) sharing the most path
 * components. Fused weights match through their parts (`...qkv_proj` matches `...q_proj`,
 * `...k_proj`, `...v_proj`).
 */
export function findWeightsForModule(params: FindWeightsForModuleParams): WeightHit[] {
  return hitsFor(params.module, params.weights);
}

function hitsFor(module: string, weights: readonly LinearWeight[]): Hit[] {
  const scored: Array<{ hit: Hit; score: number }> = [];
  for (const w of weights) {
    let best: { hit: Hit; score: number } | undefined;
    const consider = (path: string, part?: string): void => {
      const score = matchScore(path, module);
      if (score === 0 || (best && best.score >= score)) return;
      const hit: Hit = { weight: w, kind: score === Infinity ? "exact" : "suffix", path };
      if (part !== undefined) hit.part = part;
      best = { hit, score };
    };
    if (w.fused) {
      for (const p of w.paths) {
        const m = /^(.*?)qkv_proj$/.exec(p);
        if (!m) continue;
        for (const part of w.fused.parts) consider(m[1] + part, part);
      }
    } else {
      for (const p of w.paths) consider(p);
    }
    if (best) scored.push(best);
  }
  // Keep the closest matches: exact ones, else those sharing the longest suffix.
  const top = Math.max(0, ...scored.map((s) => s.score));
  return scored.filter((s) => s.score === top).map((s) => s.hit);
}

function storageIssue(t: OnnxTensor, dtype: WeightDtype): string | undefined {
  const n = numel(t.dims);
  const bytes = n * dtypeSize(dtype);
  const s = t.storage;
  switch (s.kind) {
    case "raw":
      return s.end - s.start === bytes ? undefined : `raw_data holds ${s.end - s.start} bytes, expected ${bytes}`;
    case "float_data":
      if (dtype !== "F32") return `float_data cannot hold ${dtype} values`;
      return s.count === n ? undefined : `float_data holds ${s.count} values, expected ${n}`;
    case "int32_data":
      if (dtype === "F32") return "int32_data cannot hold float32 values";
      return s.count === n ? undefined : `int32_data holds ${s.count} values, expected ${n}`;
    case "external":
      return s.length === undefined || s.length === bytes
        ? undefined
        : `external data length ${s.length}, expected ${bytes}`;
    case "empty":
      return "the tensor holds no values";
    default:
      return `values stored in TensorProto field ${s.field}`;
  }
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
  const index = indexGraph(model);
  const issues: Issue[] = [];
  const warnings: string[] = [];
  const skipped: string[] = [];
  const issue = (code: ErrorCodeValue, message: string, path: string, expected?: unknown, received?: unknown): void => {
    const i: Issue = { code, message, path };
    if (expected !== undefined) i.expected = expected;
    if (received !== undefined) i.received = received;
    issues.push(i);
  };

  // initializer name -> planned weight under construction
  const planned = new Map<string, PlannedWeight>();
  const fusedPending = new Map<string, Array<{ shape: ModuleShape; hit: Hit }>>();

  const taken = new Set([...index.initializers.keys(), ...index.producer.keys()]);
  const plannedFor = (
    w: LinearWeight | undefined,
    t: OnnxTensor,
    layout: WeightLayout,
    source: PlannedWeight["source"],
    module: string,
  ): PlannedWeight | undefined => {
    const untie = w !== undefined && w.uses > 1 && params.untie === true;
    const key = untie ? `${t.name}\u0000${w!.entry.graph}:${w!.entry.node}:${w!.entry.input}` : t.name;
    const existing = planned.get(key);
    if (existing) return existing;
    const dtype = weightDtypeOf(t.dataType);
    if (!dtype) {
      issue(
        OnnxErrorCode.ONNX_DTYPE_UNSUPPORTED,
        `${module}: weight ${JSON.stringify(t.name)} is ${dataTypeName(t.dataType)}; only FLOAT, FLOAT16 and BFLOAT16 weights can be merged`,
        module,
        "FLOAT | FLOAT16 | BFLOAT16",
        dataTypeName(t.dataType),
      );
      return undefined;
    }
    if (t.dims.length !== 2) {
      issue(
        OnnxErrorCode.ONNX_SHAPE_MISMATCH,
        `${module}: weight ${JSON.stringify(t.name)} has ${t.dims.length} dimensions, expected 2`,
        module,
        2,
        t.dims,
      );
      return undefined;
    }
    const st = storageIssue(t, dtype);
    if (st) {
      issue(OnnxErrorCode.ONNX_STORAGE, `${module}: weight ${JSON.stringify(t.name)}: ${st}`, module);
      return undefined;
    }
    const [d0, d1] = t.dims as [number, number];
    const [inF, outF] = layout === "in_out" ? [d0, d1] : [d1, d0];
    const p: PlannedWeight = {
      initializer: t.name,
      tensor: t,
      dtype,
      layout,
      inFeatures: inF,
      outFeatures: outF,
      byteLength: numel(t.dims) * dtypeSize(dtype),
      source,
      node: w?.node ?? "",
      via: w?.via ?? [],
      modules: [],
    };
    if (untie) {
      let name = `${t.name}.untied`;
      for (let k = 2; taken.has(name); k++) name = `${t.name}.untied${k}`;
      taken.add(name);
      p.untie = { name, uses: w!.uses, ...w!.entry };
      warnings.push(
        `weight ${JSON.stringify(t.name)} is used ${w!.uses} times: ${module} gets its own merged copy ${JSON.stringify(name)}; the other users keep the original`,
      );
    }
    if (index.overridable.has(t.name))
      warnings.push(
        `weight ${JSON.stringify(t.name)} is also a graph input: a caller that feeds it overrides the merged values`,
      );
    planned.set(key, p);
    return p;
  };

  const checkShared = (w: LinearWeight, module: string): boolean => {
    if (w.uses <= 1 || params.untie) return true;
    const users = (index.consumers.get(w.initializer) ?? []).map((n) => `${n.opType} ${JSON.stringify(n.name)}`);
    issue(
      OnnxErrorCode.ONNX_SHARED_WEIGHT,
      `${module}: weight ${JSON.stringify(w.initializer)} is used ${w.uses} times (${users.join(", ") || "several consumers"}); merging would change every user (tied embeddings?). Untie it (merge with --untie: this MatMul gets its own merged copy of the weight, the other users keep the original) or leave the module out of the adapter`,
      module,
      "1 use",
      w.uses,
    );
    return false;
  };

  const addModule = (
    p: PlannedWeight,
    shape: ModuleShape,
    matched: string,
    matchedBy: MatchKind,
    outStart: number,
    outEnd: number,
  ): void => {
    if (shape.inFeatures !== p.inFeatures || outEnd - outStart !== shape.outFeatures || outEnd > p.outFeatures) {
      issue(
        OnnxErrorCode.ONNX_SHAPE_MISMATCH,
        `${shape.name}: the adapter says in=${shape.inFeatures}, out=${shape.outFeatures}, but weight ${JSON.stringify(p.initializer)} (dims ${JSON.stringify(p.tensor.dims)}, ${p.layout}) has in=${p.inFeatures}, out=${outEnd > p.outFeatures || outStart > 0 || outEnd !== p.outFeatures ? `${outEnd - outStart} in rows [${outStart}, ${outEnd}) of ${p.outFeatures}` : p.outFeatures}`,
        shape.name,
        { inFeatures: shape.inFeatures, outFeatures: shape.outFeatures },
        { inFeatures: p.inFeatures, outFeatures: outEnd - outStart, dims: p.tensor.dims, layout: p.layout },
      );
      return;
    }
    p.modules.push({
      module: shape.name,
      matched,
      matchedBy,
      outStart,
      outEnd,
      inFeatures: shape.inFeatures,
      outFeatures: shape.outFeatures,
    });
  };

  for (const shape of modules) {
    const m = mapping[shape.name];
    if (m) {
      const t = index.initializers.get(m.initializer);
      if (!t) {
        issue(
          OnnxErrorCode.ONNX_MAPPING,
          `${shape.name}: the mapping names initializer ${JSON.stringify(m.initializer)}, which the model does not have`,
          shape.name,
        );
        continue;
      }
      const w = weights.find((x) => x.initializer === t.name);
      if (w?.quantized) {
        issue(OnnxErrorCode.ONNX_QUANTIZED, quantizedMessage(shape.name, w), shape.name);
        continue;
      }
      if (w && !checkShared(w, shape.name)) continue;
      if (!w && (index.uses.get(t.name) ?? 0) > 1) {
        issue(
          OnnxErrorCode.ONNX_SHARED_WEIGHT,
          `${shape.name}: weight ${JSON.stringify(t.name)} is used ${index.uses.get(t.name)} times; merging would change every user`,
          shape.name,
        );
        continue;
      }
      const layout = m.layout ?? w?.layout;
      if (!layout) {
        issue(
          OnnxErrorCode.ONNX_MAPPING,
          `${shape.name}: initializer ${JSON.stringify(t.name)} has no MatMul/Gemm consumer; give "layout" ("in_out" or "out_in") in the mapping`,
          shape.name,
        );
        continue;
      }
      const p = plannedFor(w, t, layout, "mapping", shape.name);
      if (!p) continue;
      if (p.layout !== layout) {
        issue(
          OnnxErrorCode.ONNX_MAPPING,
          `${shape.name}: layout ${layout} disagrees with ${p.layout} used by another module of the same weight`,
          shape.name,
        );
        continue;
      }
      const [s, e] = m.outRange ?? [0, p.outFeatures];
      addModule(p, shape, t.name, "mapping", s, e);
      continue;
    }
    const hits = hitsFor(shape.name, weights);
    const byInit = new Map<string, Hit[]>();
    for (const h of hits) {
      const list = byInit.get(h.weight.initializer);
      if (list) list.push(h);
      else byInit.set(h.weight.initializer, [h]);
    }
    if (byInit.size === 0) {
      if (params.skipMissing) {
        skipped.push(shape.name);
        continue;
      }
      issue(
        OnnxErrorCode.ONNX_MODULE_NOT_FOUND,
        `${shape.name}: no weight in the model matches this module path (looked at ${weights.length} MatMul/Gemm weights; run with --dry-run to list them, or give a mapping file)`,
        shape.name,
      );
      continue;
    }
    if (byInit.size > 1) {
      const list = [...byInit.values()].map((hs) => `${hs[0]!.path} -> ${JSON.stringify(hs[0]!.weight.initializer)}`);
      issue(
        OnnxErrorCode.ONNX_AMBIGUOUS,
        `${shape.name}: ${byInit.size} weights match this module path by suffix (${list.join("; ")}); choose one in a mapping file`,
        shape.name,
        "one match",
        list,
      );
      continue;
    }
    const group = [...byInit.values()][0]!;
    const hit = group[0]!;
    const w = hit.weight;
    if (w.quantized) {
      issue(OnnxErrorCode.ONNX_QUANTIZED, quantizedMessage(shape.name, w), shape.name);
      continue;
    }
    if (!checkShared(group.length > 1 ? { ...w, uses: Math.max(w.uses, group.length) } : w, shape.name)) continue;
    if (hit.part !== undefined) {
      const list = fusedPending.get(w.initializer);
      if (list) list.push({ shape, hit });
      else fusedPending.set(w.initializer, [{ shape, hit }]);
      continue;
    }
    const t = index.initializers.get(w.initializer)!;
    const p = plannedFor(w, t, w.layout, w.source, shape.name);
    if (p) addModule(p, shape, hit.path, hit.kind, 0, p.outFeatures);
  }

  // Fused q/k/v: blocks in q, k, v order. q starts at 0, v ends at the total; k needs q's size
  // (from q, or from total - k - v when v is adapted).
  for (const [init, parts] of fusedPending) {
    const w = parts[0]!.hit.weight;
    const t = index.initializers.get(init)!;
    const p = plannedFor(w, t, w.layout, w.source, parts[0]!.shape.name);
    if (!p) continue;
    const total = p.outFeatures;
    const by = new Map(parts.map((x) => [x.hit.part!, x]));
    const q = by.get("q_proj");
    const k = by.get("k_proj");
    const v = by.get("v_proj");
    if (q && k && v && q.shape.outFeatures + k.shape.outFeatures + v.shape.outFeatures !== total) {
      issue(
        OnnxErrorCode.ONNX_SHAPE_MISMATCH,
        `${q.shape.name}: q/k/v out features ${q.shape.outFeatures}+${k.shape.outFeatures}+${v.shape.outFeatures} do not add up to the fused weight ${JSON.stringify(init)} (${total})`,
        q.shape.name,
        total,
        q.shape.outFeatures + k.shape.outFeatures + v.shape.outFeatures,
      );
      continue;
    }
    if (q) addModule(p, q.shape, q.hit.path, q.hit.kind, 0, q.shape.outFeatures);
    if (v) addModule(p, v.shape, v.hit.path, v.hit.kind, total - v.shape.outFeatures, total);
    if (k) {
      const qOut = q ? q.shape.outFeatures : v ? total - k.shape.outFeatures - v.shape.outFeatures : undefined;
      if (qOut === undefined) {
        issue(
          OnnxErrorCode.ONNX_FUSED_SPLIT,
          `${k.shape.name}: where k_proj starts inside the fused weight ${JSON.stringify(init)} depends on q_proj's size, which the adapter does not tell (it adapts neither q_proj nor v_proj); give "outRange" in a mapping file`,
          k.shape.name,
        );
      } else addModule(p, k.shape, k.hit.path, k.hit.kind, qOut, qOut + k.shape.outFeatures);
    }
  }

  // Blocks of one weight must not overlap.
  for (const p of planned.values()) {
    p.modules.sort((a, b) => a.outStart - b.outStart);
    for (let i = 1; i < p.modules.length; i++) {
      const a = p.modules[i - 1]!;
      const b = p.modules[i]!;
      if (b.outStart < a.outEnd)
        issue(
          OnnxErrorCode.ONNX_OVERLAP,
          `${b.module}: writes rows [${b.outStart}, ${b.outEnd}) of ${JSON.stringify(p.initializer)}, which ${a.module} also writes`,
          b.module,
        );
    }
  }
  if (issues.length > 0) throw VeraError.fromIssues(issues);
  const order = new Map<OnnxTensor, number>();
  const result = [...planned.values()].filter((p) => p.modules.length > 0);
  result.forEach((p) => order.set(p.tensor, p.tensor.span.start));
  result.sort((a, b) => order.get(a.tensor)! - order.get(b.tensor)!);
  if (skipped.length > 0)
    warnings.push(
      `${skipped.length} adapter module(s) have no weight in this model and were left out: ${skipped.join(", ")}`,
    );
  return { weights: result, warnings, skipped };
}

function quantizedMessage(module: string, w: LinearWeight): string {
  return `${module}: weight ${JSON.stringify(w.initializer)} is quantized (${w.quantized}); a VeRA delta cannot be added to it exactly. Merge into the float16/float32 model, then quantize the merged model`;
}

/**
 * Internal: the state of one ONNX merge plan while it is built ({@link planOnnxMerge}): the weights
 * planned so far, the modules waiting for the other parts of a fused weight, and every problem found.
 */
import type { WeightLayout } from "../dtypes.js";
import { type ErrorCodeValue, type Issue } from "../errors.js";
import { fusedPartRanges } from "../locate/module-path.js";
import { OnnxErrorCode } from "./error-codes.js";
import type { GraphIndex } from "./graph-index.js";
import { dtypeSize, numel } from "./inline-values.js";
import { weightDtypeOf, type LinearWeight } from "./list-linear-weights.js";
import type { MatchKind, ModuleShape, PlannedWeight, PlanOnnxMergeParams, WeightHit } from "./merge-plan-types.js";
import { dataTypeName, type OnnxTensor } from "./types.js";
import type { WeightMappingEntry } from "./weight-mapping.js";

/** @internal */
export class OnnxPlanBuilder {
  readonly issues: Issue[] = [];
  readonly warnings: string[] = [];
  readonly skipped: string[] = [];
  /** initializer name (or untie key) -> planned weight under construction */
  readonly planned = new Map<string, PlannedWeight>();
  private readonly fusedPending = new Map<string, Array<{ shape: ModuleShape; hit: WeightHit }>>();
  private readonly taken: Set<string>;

  constructor(
    private readonly index: GraphIndex,
    private readonly weights: readonly LinearWeight[],
    private readonly params: Pick<PlanOnnxMergeParams, "untie" | "skipMissing">,
  ) {
    this.taken = new Set([...index.initializers.keys(), ...index.producer.keys()]);
  }

  issue(code: ErrorCodeValue, message: string, path: string, expected?: unknown, received?: unknown): void {
    const i: Issue = { code, message, path };
    if (expected !== undefined) i.expected = expected;
    if (received !== undefined) i.received = received;
    this.issues.push(i);
  }

  /** The planned weight of an initializer (created on first use), or undefined after an issue. */
  plannedFor(
    w: LinearWeight | undefined,
    t: OnnxTensor,
    layout: WeightLayout,
    source: PlannedWeight["source"],
    module: string,
  ): PlannedWeight | undefined {
    const untie = w !== undefined && w.uses > 1 && this.params.untie === true;
    const key = untie ? `${t.name}\u0000${w.entry.graph}:${w.entry.node}:${w.entry.input}` : t.name;
    const existing = this.planned.get(key);
    if (existing) return existing;
    const dtype = weightDtypeOf(t.dataType);
    if (!dtype) {
      this.issue(
        OnnxErrorCode.ONNX_DTYPE_UNSUPPORTED,
        `${module}: weight ${JSON.stringify(t.name)} is ${dataTypeName(t.dataType)}; only FLOAT, FLOAT16 and BFLOAT16 weights can be merged`,
        module,
        "FLOAT | FLOAT16 | BFLOAT16",
        dataTypeName(t.dataType),
      );
      return undefined;
    }
    if (t.dims.length !== 2) {
      this.issue(
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
      this.issue(OnnxErrorCode.ONNX_STORAGE, `${module}: weight ${JSON.stringify(t.name)}: ${st}`, module);
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
    if (untie) this.untie(p, w, module);
    if (this.index.overridable.has(t.name))
      this.warnings.push(
        `weight ${JSON.stringify(t.name)} is also a graph input: a caller that feeds it overrides the merged values`,
      );
    this.planned.set(key, p);
    return p;
  }

  private untie(p: PlannedWeight, w: LinearWeight, module: string): void {
    const t = p.tensor;
    let name = `${t.name}.untied`;
    for (let k = 2; this.taken.has(name); k++) name = `${t.name}.untied${k}`;
    this.taken.add(name);
    p.untie = { name, uses: w.uses, ...w.entry };
    this.warnings.push(
      `weight ${JSON.stringify(t.name)} is used ${w.uses} times: ${module} gets its own merged copy ${JSON.stringify(name)}; the other users keep the original`,
    );
  }

  /** True when the weight has one user, or `untie` gives the module its own copy; else an issue. */
  checkShared(w: LinearWeight, module: string): boolean {
    if (w.uses <= 1 || this.params.untie) return true;
    const users = (this.index.consumers.get(w.initializer) ?? []).map((n) => `${n.opType} ${JSON.stringify(n.name)}`);
    this.issue(
      OnnxErrorCode.ONNX_SHARED_WEIGHT,
      `${module}: weight ${JSON.stringify(w.initializer)} is used ${w.uses} times (${users.join(", ") || "several consumers"}); merging would change every user (tied embeddings?). Untie it (merge with --untie: this MatMul gets its own merged copy of the weight, the other users keep the original) or leave the module out of the adapter`,
      module,
      "1 use",
      w.uses,
    );
    return false;
  }

  addModule(
    p: PlannedWeight,
    shape: ModuleShape,
    matched: string,
    matchedBy: MatchKind,
    outStart: number,
    outEnd: number,
  ): void {
    if (shape.inFeatures !== p.inFeatures || outEnd - outStart !== shape.outFeatures || outEnd > p.outFeatures) {
      this.issue(
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
  }

  /** A module placed by a mapping entry. */
  planMapped(shape: ModuleShape, m: WeightMappingEntry): void {
    const t = this.index.initializers.get(m.initializer);
    if (!t) {
      this.issue(
        OnnxErrorCode.ONNX_MAPPING,
        `${shape.name}: the mapping names initializer ${JSON.stringify(m.initializer)}, which the model does not have`,
        shape.name,
      );
      return;
    }
    const w = this.weights.find((x) => x.initializer === t.name);
    if (w?.quantized) return this.issue(OnnxErrorCode.ONNX_QUANTIZED, quantizedMessage(shape.name, w), shape.name);
    if (w && !this.checkShared(w, shape.name)) return;
    const uses = this.index.uses.get(t.name) ?? 0;
    if (!w && uses > 1)
      return this.issue(
        OnnxErrorCode.ONNX_SHARED_WEIGHT,
        `${shape.name}: weight ${JSON.stringify(t.name)} is used ${uses} times; merging would change every user`,
        shape.name,
      );
    const layout = m.layout ?? w?.layout;
    if (!layout)
      return this.issue(
        OnnxErrorCode.ONNX_MAPPING,
        `${shape.name}: initializer ${JSON.stringify(t.name)} has no MatMul/Gemm consumer; give "layout" ("in_out" or "out_in") in the mapping`,
        shape.name,
      );
    const p = this.plannedFor(w, t, layout, "mapping", shape.name);
    if (!p) return;
    if (p.layout !== layout)
      return this.issue(
        OnnxErrorCode.ONNX_MAPPING,
        `${shape.name}: layout ${layout} disagrees with ${p.layout} used by another module of the same weight`,
        shape.name,
      );
    const [s, e] = m.outRange ?? [0, p.outFeatures];
    this.addModule(p, shape, t.name, "mapping", s, e);
  }

  /** A module placed by its path ({@link findWeightsForModule}'s hits). */
  planMatched(shape: ModuleShape, hits: readonly WeightHit[]): void {
    const byInit = new Map<string, WeightHit[]>();
    for (const h of hits) byInit.set(h.weight.initializer, [...(byInit.get(h.weight.initializer) ?? []), h]);
    if (byInit.size === 0) {
      if (this.params.skipMissing) return void this.skipped.push(shape.name);
      return this.issue(
        OnnxErrorCode.ONNX_MODULE_NOT_FOUND,
        `${shape.name}: no weight in the model matches this module path (looked at ${this.weights.length} MatMul/Gemm weights; run with --dry-run to list them, or give a mapping file)`,
        shape.name,
      );
    }
    if (byInit.size > 1) {
      const list = [...byInit.values()].map((hs) => `${hs[0]!.path} -> ${JSON.stringify(hs[0]!.weight.initializer)}`);
      return this.issue(
        OnnxErrorCode.ONNX_AMBIGUOUS,
        `${shape.name}: ${byInit.size} weights match this module path by suffix (${list.join("; ")}); choose one in a mapping file`,
        shape.name,
        "one match",
        list,
      );
    }
    const group = [...byInit.values()][0]!;
    const hit = group[0]!;
    const w = hit.weight;
    if (w.quantized) return this.issue(OnnxErrorCode.ONNX_QUANTIZED, quantizedMessage(shape.name, w), shape.name);
    if (!this.checkShared(group.length > 1 ? { ...w, uses: Math.max(w.uses, group.length) } : w, shape.name)) return;
    if (hit.part !== undefined) {
      this.fusedPending.set(w.initializer, [...(this.fusedPending.get(w.initializer) ?? []), { shape, hit }]);
      return;
    }
    const t = this.index.initializers.get(w.initializer)!;
    const p = this.plannedFor(w, t, w.layout, w.source, shape.name);
    if (p) this.addModule(p, shape, hit.path, hit.kind, 0, p.outFeatures);
  }

  /**
   * The parts of fused weights, in row blocks in the fused order: a part's place follows from the
   * parts before it (or after it) that the adapter also names (`fusedPartRanges`).
   */
  planFused(): void {
    for (const [init, parts] of this.fusedPending) {
      const w = parts[0]!.hit.weight;
      const t = this.index.initializers.get(init)!;
      const p = this.plannedFor(w, t, w.layout, w.source, parts[0]!.shape.name);
      if (!p) continue;
      const order = w.fused?.parts ?? [];
      const by = new Map(parts.map((x) => [x.hit.part!, x]));
      const sizes = new Map(parts.map((x) => [x.hit.part!, x.shape.outFeatures]));
      if (by.size === order.length) {
        const sum = [...sizes.values()].reduce((a, b) => a + b, 0);
        if (sum !== p.outFeatures) {
          const first = parts[0]!.shape.name;
          this.issue(
            OnnxErrorCode.ONNX_SHAPE_MISMATCH,
            `${first}: ${order.join("/")} out features ${order.map((o) => sizes.get(o)).join("+")} do not add up to the fused weight ${JSON.stringify(init)} (${p.outFeatures})`,
            first,
            p.outFeatures,
            sum,
          );
          continue;
        }
      }
      for (const [part, range] of fusedPartRanges(order, sizes, p.outFeatures)) {
        const x = by.get(part)!;
        if (range) this.addModule(p, x.shape, x.hit.path, x.hit.kind, range[0], range[1]);
        else
          this.issue(
            OnnxErrorCode.ONNX_FUSED_SPLIT,
            `${x.shape.name}: where ${part} starts inside the fused weight ${JSON.stringify(init)} depends on the sizes of parts the adapter does not adapt (${order.filter((o) => !by.has(o)).join(", ")}); give "outRange" in a mapping file`,
            x.shape.name,
          );
      }
    }
  }

  /** Blocks of one weight must not overlap. */
  checkOverlaps(): void {
    for (const p of this.planned.values()) {
      p.modules.sort((a, b) => a.outStart - b.outStart);
      for (let i = 1; i < p.modules.length; i++) {
        const a = p.modules[i - 1]!;
        const b = p.modules[i]!;
        if (b.outStart < a.outEnd)
          this.issue(
            OnnxErrorCode.ONNX_OVERLAP,
            `${b.module}: writes rows [${b.outStart}, ${b.outEnd}) of ${JSON.stringify(p.initializer)}, which ${a.module} also writes`,
            b.module,
          );
      }
    }
  }
}

/** Why a tensor's stored values cannot be patched, or undefined when they can. @internal */
export function storageIssue(t: OnnxTensor, dtype: "F32" | "F16" | "BF16"): string | undefined {
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

function quantizedMessage(module: string, w: LinearWeight): string {
  return `${module}: weight ${JSON.stringify(w.initializer)} is quantized (${w.quantized}); a VeRA delta cannot be added to it exactly. Merge into the float16/float32 model, then quantize the merged model`;
}

import { VeraError, type Issue } from "../errors.js";
import type { VeraAdapter } from "../format/types.js";
import { f32ToF16Bits } from "../numeric/half.js";
import { applyEdits, concatEdited, type ByteEdit } from "../onnx/apply-edits.js";
import { indexGraph, intAttr, type GraphIndex } from "../onnx/graph-index.js";
import type { LinearWeight } from "../onnx/list-linear-weights.js";
import { onnxWeightLocator } from "../onnx/onnx-weight-locator.js";
import { findWeightsForModule } from "../onnx/plan-onnx-merge.js";
import { OnnxErrorCode } from "../onnx/error-codes.js";
import { dataTypeName, OnnxDataType, type MessageSpan, type OnnxModel, type OnnxNode } from "../onnx/types.js";
import type { WeightMapping } from "../onnx/weight-mapping.js";
import { concatBytes, fieldString, fields, lenField } from "../onnx/wire.js";
import { generateProjections } from "../projections/generate.js";
import { ServeErrorCode } from "./error-codes.js";
import { encodeGraftSpec, GRAFT_METADATA_KEY, graftInputNames, graftSpecOf, type GraftSpec } from "./graft-spec.js";
import {
  float32Bytes,
  initializerField,
  inputField,
  int64Bytes,
  metadataField,
  nodeField,
  type NodeSpec,
} from "./internal/onnx-encode.js";

/** Parameters of {@link graftOnnx}. */
export interface GraftOnnxParams {
  /** The parsed base model ({@link readOnnxModel}); external data stays where it is (locations are kept). */
  model: OnnxModel;
  /** The adapter whose PRNG spec, rank and target modules the graph is grafted for; its vectors are not used. */
  adapter: VeraAdapter;
  /**
   * Inputs `[batch, r]` / `[batch, out]` (one adapter per sequence of a batch) instead of `[r]` / `[out]`.
   * @default false
   */
  batched?: boolean;
  /**
   * Arithmetic of the branch. `f32`: float32 (float16/bfloat16 activations go through Casts); `f16`: float16 (only
   * for float16 activations; the projections are stored rounded to float16).
   * @default "f32"
   */
  dtype?: "f32" | "f16";
  /**
   * Leave out adapter modules that have no weight in this model (listed in the result) instead of refusing.
   * @default false
   */
  skipMissing?: boolean;
  /**
   * Give every d/b input a default initializer of the same name (d = ones, b = zeros), so that a run feeding nothing
   * is the base model. onnxruntime's Python, C, C++, C# and Java APIs (and `RunOptions` adapters) feed such inputs;
   * the JavaScript bindings (onnxruntime-node, onnxruntime-web) do not: they list only inputs without an initializer
   * and silently drop feeds for the others, so graphs for them need `defaults: false` (plain inputs, always fed;
   * `adapterFeeds({ adapter: null })` gives the base model's feeds).
   * @default true
   */
  defaults?: boolean;
  /** Explicit module -> initializer entries, as for `vera merge`. @default none */
  mapping?: WeightMapping;
}

/** One grafted module. */
export interface GraftedModule {
  /** The adapter's module path (the inputs are named after it). */
  module: string;
  /** Graph inputs that carry the module's vectors. */
  inputs: { d: string; b: string };
  /** The weight's initializer (unchanged). */
  initializer: string;
  /** The MatMul/Gemm node whose output receives the branch. */
  node: string;
  opType: string;
  /** Element type of the node's activations. */
  activations: "FLOAT" | "FLOAT16" | "BFLOAT16";
  inFeatures: number;
  outFeatures: number;
}

/** What {@link graftOnnx} returns. */
export interface GraftOnnxResult {
  /** The grafted model: the base model's bytes with nodes, initializers, inputs and the graft record appended. */
  bytes: Uint8Array;
  /** The record stored under `verakit.graft` in the model's metadata_props. */
  spec: GraftSpec;
  modules: GraftedModule[];
  /** Adapter modules left out (not in this model; only with `skipMissing`). */
  skipped: string[];
  /** Whether the d/b inputs have default initializers (see {@link GraftOnnxParams.defaults}). */
  defaults: boolean;
  /** Bytes added to the model (projections, default vectors, nodes). */
  addedBytes: number;
  warnings: string[];
}

const FLOAT = OnnxDataType.FLOAT;
const FLOAT16 = OnnxDataType.FLOAT16;
const INT64 = OnnxDataType.INT64;
const PREFIX = "verakit.graft";

function unsupported(message: string, path?: string): VeraError {
  return new VeraError(ServeErrorCode.SERVE_GRAPH_UNSUPPORTED, message, path === undefined ? {} : { path });
}

/** The element type the consumer sees at its weight input (through Transpose/Identity; a Cast decides). */
/** A float16 branch asked for on a node that computes in another type. */
function f16ActivationIssue(module: string, node: OnnxNode, act: number): Issue {
  return {
    code: ServeErrorCode.SERVE_GRAPH_UNSUPPORTED,
    message: `${module}: a float16 branch needs float16 activations; node ${JSON.stringify(node.name)} computes in ${dataTypeName(act)} (use dtype f32)`,
    path: module,
    expected: "FLOAT16",
    received: dataTypeName(act),
  };
}

function weightComputeType(index: GraphIndex, node: OnnxNode, slot: number): number {
  let cur = node.inputs[slot] ?? "";
  for (let steps = 0; steps < 8; steps++) {
    const p = index.producer.get(cur);
    if (!p) break;
    if (p.opType === "Cast") return Number(intAttr(p, "to", 0n));
    cur = p.inputs[0] ?? "";
  }
  return index.initializers.get(cur)?.dataType ?? 0;
}

/** The MatMul/Gemm node of a located weight: its entry node, followed forward through the ops in `via`. */
function consumerOf(model: OnnxModel, index: GraphIndex, w: LinearWeight): OnnxNode | undefined {
  let cur: OnnxNode | undefined = model.graphs[w.entry.graph]?.nodes[w.entry.node];
  for (let i = 1; i < w.via.length + 1 && cur; i++) {
    const next: OnnxNode[] = index.consumers.get(cur.outputs[0] ?? "") ?? [];
    const want = i < w.via.length ? w.via[i] : w.opType;
    cur = next.find((n) => n.opType === want && (i < w.via.length || n.name === w.node)) ?? undefined;
  }
  return cur && cur.opType === w.opType && cur.name === w.node ? cur : undefined;
}

/** Existing metadata_props keys of the model and the first graph input's batch dimension name. */
function readModelExtras(model: OnnxModel): { metadataKeys: string[]; batchDim: string | number | undefined } {
  const bytes = model.bytes;
  const metadataKeys: string[] = [];
  for (const f of fields(bytes, 0, bytes.length)) {
    if (f.field !== 14) continue;
    for (const g of fields(bytes, f.dataStart, f.dataEnd)) if (g.field === 1) metadataKeys.push(fieldString(bytes, g));
  }
  let batchDim: string | number | undefined;
  const main = model.graphs[0]!;
  const inits = new Set(main.initializers.map((t) => t.name));
  const sub = (start: number, end: number, field: number): { start: number; end: number } | undefined => {
    for (const f of fields(bytes, start, end)) if (f.field === field) return { start: f.dataStart, end: f.dataEnd };
    return undefined;
  };
  for (const f of fields(bytes, main.span.start, main.span.end)) {
    if (f.field !== 11) continue;
    let name = "";
    for (const g of fields(bytes, f.dataStart, f.dataEnd)) if (g.field === 1) name = fieldString(bytes, g);
    if (inits.has(name)) continue;
    const type = sub(f.dataStart, f.dataEnd, 2);
    const tensor = type && sub(type.start, type.end, 1);
    const shape = tensor && sub(tensor.start, tensor.end, 2);
    const dim = shape && sub(shape.start, shape.end, 1);
    if (dim) {
      for (const g of fields(bytes, dim.start, dim.end)) {
        if (g.field === 2) batchDim = fieldString(bytes, g);
      }
    }
    break;
  }
  return { metadataKeys, batchDim };
}

/** Positions of every node field of a graph: payload start -> field start. */
function nodeFieldStarts(bytes: Uint8Array, graph: MessageSpan): Map<number, number> {
  const out = new Map<number, number>();
  for (const f of fields(bytes, graph.start, graph.end)) if (f.field === 1) out.set(f.dataStart, f.start);
  return out;
}

/**
 * Graft VeRA branches into an ONNX model so that one base model serves any adapter of the same projections without
 * merging. For each target module (found by the locator of `vera merge`: torch dynamo and legacy exports,
 * MatMul/Gemm/Transpose layouts, GPT-2 Conv1D, wrapped models), the output y of its MatMul/Gemm becomes
 * `y + (((x A_s^T) * d) B_s^T) * b`:
 * - A^T (max_in x r) and B^T (r x max_out), regenerated from the adapter's PRNG spec, are stored once and sliced per
 *   distinct size (Slice nodes, shared by the modules of that size);
 * - d and b are graph inputs named by {@link graftInputNames} (float32 `[r]` / `[out]`, or `[batch, r]` /
 *   `[batch, out]` with `batched`, broadcast over the sequence axis), each with a default initializer of the same
 *   name (d = ones, b = zeros) unless `defaults` is false, so a run that feeds nothing computes the base model;
 * - float16/bfloat16 activations: the branch runs in float32 between Casts (`dtype: "f32"`) or in float16 (`"f16"`);
 * - 4-bit MatMulNBits weights (which a merge must refuse) take a branch like float weights: the weight is not touched.
 * The edit is additive: every original byte stays (the consumer's output is renamed, new fields are appended), so
 * initializers and external data are untouched. The {@link GraftSpec} is stored in metadata_props.
 *
 * @throws VeraError the locator's `ONNX_*` refusals (as `vera merge`, except that MatMulNBits weights are grafted),
 *   `SERVE_GRAPH_UNSUPPORTED`.
 */
export function graftOnnx(params: GraftOnnxParams): GraftOnnxResult {
  const { model, adapter } = params;
  const batched = params.batched ?? false;
  const dtype = params.dtype ?? "f32";
  const defaults = params.defaults ?? true;
  const bytes = model.bytes;
  const extras = readModelExtras(model);
  if (extras.metadataKeys.includes(GRAFT_METADATA_KEY))
    throw unsupported(
      `the model is grafted already (metadata_props has "${GRAFT_METADATA_KEY}"); graft the base model`,
    );
  const opset = model.opsetImports.find((o) => o.domain === "" || o.domain === "ai.onnx")?.version ?? 0;
  if (opset < 13)
    throw new VeraError(
      ServeErrorCode.SERVE_GRAPH_UNSUPPORTED,
      `the model's default-domain opset is ${opset}; grafting needs opset 13 or later`,
      { expected: ">= 13", received: opset },
    );
  if (adapter.storedProjections)
    throw unsupported("the adapter keeps explicit projections (not regenerable from its seed): it cannot be grafted");

  // the weight locator of `vera merge` (one set of rules: a dry run, a merge and a graft find the same weights);
  // a branch is added to one node's output, so a weight shared with other nodes is never changed (untie)
  const locator = onnxWeightLocator({
    model,
    untie: true,
    ...(params.mapping !== undefined ? { mapping: params.mapping } : {}),
  });
  const weights = locator.weights;
  const index = indexGraph(model);
  // 4-bit MatMulNBits weights: a merge cannot change them exactly, but a branch on the node's output needs no change
  // to the weight, so they are grafted like float weights (activations: the type of the node's scales, as A's).
  const nbits: Array<{ module: string; w: LinearWeight; inFeatures: number; outFeatures: number }> = [];
  const planned = adapter.modules.filter((m) => {
    if (params.mapping?.[m.name]) return true;
    const hits = findWeightsForModule({ module: m.name, weights });
    const only = hits.length === 1 ? hits[0]! : undefined;
    if (!only || only.weight.opType !== "MatMulNBits" || only.part !== undefined) return true;
    nbits.push({ module: m.name, w: only.weight, inFeatures: m.inFeatures, outFeatures: m.outFeatures });
    return false;
  });
  const plan =
    planned.length === 0
      ? { weights: [], skipped: [] as string[] }
      : locator.plan({
          modules: planned.map((m) => ({ name: m.name, inFeatures: m.inFeatures, outFeatures: m.outFeatures })),
          ...(params.skipMissing !== undefined ? { skipMissing: params.skipMissing } : {}),
        });
  const issues: Issue[] = [];
  interface Target {
    module: string;
    w: LinearWeight;
    node: OnnxNode;
    act: number;
    inFeatures: number;
    outFeatures: number;
  }
  const targets: Target[] = [];
  for (const p of plan.weights) {
    for (const pm of p.modules) {
      if (pm.outStart !== 0 || pm.outEnd !== p.outFeatures) {
        issues.push({
          code: ServeErrorCode.SERVE_GRAPH_UNSUPPORTED,
          message: `${pm.module}: its weight is rows [${pm.outStart}, ${pm.outEnd}) of the fused weight ${JSON.stringify(p.initializer)}; grafting fused weights is not supported (merge instead)`,
          path: pm.module,
        });
        continue;
      }
      const w = p.untie
        ? weights.find(
            (x) =>
              x.initializer === p.initializer &&
              x.entry.graph === p.untie!.graph &&
              x.entry.node === p.untie!.node &&
              x.entry.input === p.untie!.input,
          )
        : weights.find((x) => x.initializer === p.initializer && (p.node === "" || x.node === p.node));
      const node = w && consumerOf(model, index, w);
      if (!w || !node || node.outputs.length < 1 || !node.inputs[0]) {
        issues.push({
          code: ServeErrorCode.SERVE_GRAPH_UNSUPPORTED,
          message: `${pm.module}: weight ${JSON.stringify(p.initializer)} has no MatMul/Gemm consumer to graft onto`,
          path: pm.module,
        });
        continue;
      }
      const act = weightComputeType(index, node, 1);
      if (act !== FLOAT && act !== FLOAT16 && act !== OnnxDataType.BFLOAT16) {
        issues.push({
          code: ServeErrorCode.SERVE_GRAPH_UNSUPPORTED,
          message: `${pm.module}: node ${JSON.stringify(node.name)} computes in ${dataTypeName(act)}`,
          path: pm.module,
        });
        continue;
      }
      if (dtype === "f16" && act !== FLOAT16) {
        issues.push(f16ActivationIssue(pm.module, node, act));
        continue;
      }
      targets.push({ module: pm.module, w, node, act, inFeatures: pm.inFeatures, outFeatures: pm.outFeatures });
    }
  }
  for (const q of nbits) {
    const node = model.graphs[q.w.entry.graph]?.nodes[q.w.entry.node];
    if (q.w.inFeatures !== q.inFeatures || q.w.outFeatures !== q.outFeatures) {
      issues.push({
        code: OnnxErrorCode.ONNX_SHAPE_MISMATCH,
        message: `${q.module}: the adapter says in=${q.inFeatures}, out=${q.outFeatures}, but MatMulNBits ${JSON.stringify(q.w.node)} has K=${q.w.inFeatures}, N=${q.w.outFeatures}`,
        path: q.module,
        expected: { inFeatures: q.inFeatures, outFeatures: q.outFeatures },
        received: { inFeatures: q.w.inFeatures, outFeatures: q.w.outFeatures },
      });
      continue;
    }
    const act = node ? (index.initializers.get(node.inputs[2] ?? "")?.dataType ?? 0) : 0;
    if (!node || !node.inputs[0] || node.outputs.length < 1 || (act !== FLOAT && act !== FLOAT16)) {
      issues.push({
        code: ServeErrorCode.SERVE_GRAPH_UNSUPPORTED,
        message: `${q.module}: MatMulNBits ${JSON.stringify(q.w.node)} has no float32/float16 scales initializer to tell its activation type`,
        path: q.module,
      });
      continue;
    }
    if (dtype === "f16" && act !== FLOAT16) {
      issues.push(f16ActivationIssue(q.module, node, act));
      continue;
    }
    targets.push({ module: q.module, w: q.w, node, act, inFeatures: q.inFeatures, outFeatures: q.outFeatures });
  }
  const seenNodes = new Map<OnnxNode, string>();
  for (const t of targets) {
    const other = seenNodes.get(t.node);
    if (other !== undefined)
      issues.push({
        code: ServeErrorCode.SERVE_GRAPH_UNSUPPORTED,
        message: `${t.module} and ${other} resolve to the same node ${JSON.stringify(t.node.name)}`,
        path: t.module,
      });
    seenNodes.set(t.node, t.module);
  }
  if (issues.length > 0) throw VeraError.fromIssues(issues);
  targets.sort((a, b) => (a.module < b.module ? -1 : a.module > b.module ? 1 : 0));

  // Names: every new value and initializer gets a name the model does not use yet.
  const taken = new Set<string>([...index.initializers.keys(), ...index.producer.keys(), ...index.uses.keys()]);
  for (const g of model.graphs) for (const i of g.inputs) taken.add(i);
  const fresh = (want: string): string => {
    let name = want;
    for (let k = 2; taken.has(name); k++) name = `${want}.${k}`;
    taken.add(name);
    return name;
  };
  for (const t of targets) {
    const { d, b } = graftInputNames(t.module);
    for (const n of [d, b])
      if (taken.has(n)) throw unsupported(`the model already has a value named ${JSON.stringify(n)}`, t.module);
  }

  const rank = adapter.rank;
  const head: Uint8Array[] = []; // nodes inserted before the main graph's first node
  const tail: Uint8Array[] = []; // initializers and inputs appended to the main graph
  const after = new Map<OnnxNode, Uint8Array[]>(); // nodes inserted after a consumer

  const constants = new Map<string, string>();
  const int64Const = (values: number[]): string => {
    const key = values.join(",");
    let name = constants.get(key);
    if (!name) {
      name = fresh(`${PREFIX}.i64.${values.map((v) => (v < 0 ? `m${-v}` : String(v))).join("_")}`);
      constants.set(key, name);
      tail.push(initializerField(name, INT64, [values.length], int64Bytes(values)));
    }
    return name;
  };

  // Projections, stored once (transposed so that no Transpose node is needed), per element type used.
  const { A, B } = generateProjections({
    seed: adapter.prng.seed,
    rank,
    maxIn: adapter.maxIn,
    maxOut: adapter.maxOut,
    arithmetic: adapter.prng.arithmetic,
    rounding: adapter.projectionRounding,
  });
  const at = new Float32Array(adapter.maxIn * rank);
  for (let i = 0; i < rank; i++) for (let j = 0; j < adapter.maxIn; j++) at[j * rank + i] = A[i * adapter.maxIn + j]!;
  const bt = new Float32Array(rank * adapter.maxOut);
  for (let o = 0; o < adapter.maxOut; o++) for (let i = 0; i < rank; i++) bt[i * adapter.maxOut + o] = B[o * rank + i]!;
  const projNames = new Map<string, string>();
  const projection = (which: "A" | "B", type: number): string => {
    const key = `${which}${type}`;
    let name = projNames.get(key);
    if (name) return name;
    const src = which === "A" ? at : bt;
    const dims = which === "A" ? [adapter.maxIn, rank] : [rank, adapter.maxOut];
    let raw: Uint8Array;
    if (type === FLOAT) raw = float32Bytes(src);
    else {
      const h = new Uint16Array(src.length);
      for (let i = 0; i < src.length; i++) h[i] = f32ToF16Bits(src[i]!);
      raw = new Uint8Array(h.buffer);
    }
    name = fresh(`${PREFIX}.vera_${which}_t${type === FLOAT ? "" : ".f16"}`);
    projNames.set(key, name);
    tail.push(initializerField(name, type, dims, raw));
    return name;
  };
  const slices = new Map<string, string>();
  const sliced = (which: "A" | "B", type: number, size: number): string => {
    const full = which === "A" ? adapter.maxIn : adapter.maxOut;
    const src = projection(which, type);
    if (size === full) return src;
    const key = `${which}${type}:${size}`;
    let name = slices.get(key);
    if (!name) {
      name = fresh(`${src}.${which === "A" ? "in" : "out"}${size}`);
      slices.set(key, name);
      head.push(
        nodeField({
          name: fresh(`${name}/Slice`),
          opType: "Slice",
          inputs: [src, int64Const([0]), int64Const([size]), int64Const([which === "A" ? 0 : 1])],
          outputs: [name],
        }),
      );
    }
    return name;
  };

  const batchDim = extras.batchDim ?? "batch";
  const modules: GraftedModule[] = [];
  const edits: ByteEdit[] = [];
  for (const t of targets) {
    const { d, b } = graftInputNames(t.module);
    const branchType = dtype === "f16" ? FLOAT16 : FLOAT;
    // Inputs and their defaults: d = ones, b = zeros (float32).
    const ones = new Float32Array(rank).fill(1);
    tail.push(inputField(d, FLOAT, batched ? [batchDim, rank] : [rank]));
    tail.push(inputField(b, FLOAT, batched ? [batchDim, t.outFeatures] : [t.outFeatures]));
    if (defaults) {
      tail.push(initializerField(d, FLOAT, batched ? [1, rank] : [rank], float32Bytes(ones)));
      tail.push(
        initializerField(b, FLOAT, batched ? [1, t.outFeatures] : [t.outFeatures], new Uint8Array(4 * t.outFeatures)),
      );
    }

    const p = `${PREFIX}/${t.module}`;
    const v = (s: string): string => fresh(`${p}/${s}`);
    const nodes: NodeSpec[] = [];
    const op = (opType: string, inputs: string[], out: string, attrs?: NodeSpec["attrs"]): string => {
      const name = v(out);
      const spec: NodeSpec = { name: fresh(`${name}/${opType}`), opType, inputs, outputs: [name] };
      if (attrs) spec.attrs = attrs;
      nodes.push(spec);
      return name;
    };
    const x0 = t.node.inputs[0]!;
    const y = t.node.outputs[0]!;
    const yBase = fresh(`${y}/verakit_base`);
    const x = t.act === branchType ? x0 : op("Cast", [x0], "x_cast", [{ name: "to", i: branchType }]);
    let dIn = d;
    let bIn = b;
    if (branchType !== FLOAT) {
      dIn = op("Cast", [d], "d_cast", [{ name: "to", i: branchType }]);
      bIn = op("Cast", [b], "b_cast", [{ name: "to", i: branchType }]);
    }
    const xa = op("MatMul", [x, sliced("A", branchType, t.inFeatures)], "xA");
    let delta: string;
    if (!batched) {
      const xd = op("Mul", [xa, dIn], "xAd");
      const xb = op("MatMul", [xd, sliced("B", branchType, t.outFeatures)], "xAdB");
      delta = op("Mul", [xb, bIn], "delta");
    } else {
      // [..., r] -> [batch, tokens, r]; d [batch, r] -> [batch, 1, r]; back to the shape of y at the end.
      const dShape = op("Shape", [d], "d_shape");
      const bsz = op("Slice", [dShape, int64Const([0]), int64Const([1]), int64Const([0])], "batch");
      const shape3 = op("Concat", [bsz, int64Const([-1]), int64Const([rank])], "shape3", [{ name: "axis", i: 0 }]);
      const xa3 = op("Reshape", [xa, shape3], "xA3");
      const d3 = op("Unsqueeze", [dIn, int64Const([1])], "d3");
      const xd = op("Mul", [xa3, d3], "xAd");
      const xb = op("MatMul", [xd, sliced("B", branchType, t.outFeatures)], "xAdB");
      const b3 = op("Unsqueeze", [bIn, int64Const([1])], "b3");
      const xbb = op("Mul", [xb, b3], "xAdBb");
      const yShape = op("Shape", [yBase], "y_shape");
      delta = op("Reshape", [xbb, yShape], "delta");
    }
    if (t.act !== branchType) delta = op("Cast", [delta], "delta_cast", [{ name: "to", i: t.act }]);
    nodes.push({ name: fresh(`${p}/Add`), opType: "Add", inputs: [yBase, delta], outputs: [y] });
    after.set(t.node, nodes.map(nodeField));

    // Rename the consumer's output (its first output field).
    for (const f of fields(bytes, t.node.span.start, t.node.span.end)) {
      if (f.field !== 2) continue;
      edits.push({ start: f.start, end: f.end, data: lenField(2, yBase), span: t.node.span });
      break;
    }
    modules.push({
      module: t.module,
      inputs: { d, b },
      initializer: t.w.initializer,
      node: t.node.name,
      opType: t.node.opType,
      activations: dataTypeName(t.act) as GraftedModule["activations"],
      inFeatures: t.inFeatures,
      outFeatures: t.outFeatures,
    });
  }

  const main = model.graphs[0]!;
  for (const [node, encoded] of after) {
    const g = model.graphs[node.graphIndex]!;
    edits.push({ start: node.span.end, end: node.span.end, data: concatBytes(encoded), span: g.span });
  }
  if (head.length > 0) {
    const starts = nodeFieldStarts(bytes, main.span);
    const first = main.nodes[0];
    const at0 = first ? starts.get(first.span.start)! : main.span.end;
    edits.push({ start: at0, end: at0, data: concatBytes(head), span: main.span });
  }
  const tailBytes = concatBytes(tail);
  const mainEnd = edits.find((e) => e.start === main.span.end && e.end === main.span.end && e.span === main.span);
  if (mainEnd) mainEnd.data = concatBytes([mainEnd.data, tailBytes]);
  else edits.push({ start: main.span.end, end: main.span.end, data: tailBytes, span: main.span });

  const grafted = new Set(targets.map((t) => t.module));
  const spec = graftSpecOf({
    adapter,
    batched,
    dtype,
    modules: adapter.modules
      .filter((m) => grafted.has(m.name))
      .map((m) => ({ name: m.name, inFeatures: m.inFeatures, outFeatures: m.outFeatures, layout: m.layout })),
  });
  const top: MessageSpan = { lenStart: -1, start: 0, end: bytes.length, parent: null };
  edits.push({
    start: bytes.length,
    end: bytes.length,
    data: metadataField(GRAFT_METADATA_KEY, encodeGraftSpec(spec)),
    span: top,
  });

  const out = concatEdited(applyEdits({ bytes, edits }));
  const warnings: string[] = [];
  if (plan.skipped.length > 0)
    warnings.push(
      `${plan.skipped.length} adapter module(s) have no weight in this model and were not grafted: ${plan.skipped.join(", ")}`,
    );
  return {
    bytes: out,
    spec,
    modules,
    skipped: plan.skipped,
    defaults,
    addedBytes: out.length - bytes.length,
    warnings,
  };
}

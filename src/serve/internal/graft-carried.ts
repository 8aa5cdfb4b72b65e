/**
 * Internal: tensors an adapter carries (modules_to_save heads, trainable biases) as per-adapter inputs of a grafted
 * graph. Each replaces one initializer of the base: its uses read `Where(use, fed, base)` instead (per row when
 * batched, through a per-row MatMul or Add).
 */
import type { Issue } from "../../errors.js";
import type { VeraAdapter } from "../../format/types.js";
import { locateAddableBias, type AddableBias } from "../../onnx/add-bias.js";
import type { NodeSpec } from "../../onnx/encode-onnx.js";
import { intAttr, type GraphIndex } from "../../onnx/graph-index.js";
import { dtypeSize } from "../../onnx/inline-values.js";
import { listLinearWeights, type LinearWeight } from "../../onnx/list-linear-weights.js";
import { locateOnnxParameter, type OnnxNodeInput } from "../../onnx/locate-onnx-parameter.js";
import { findWeightsForModule } from "../../onnx/plan-onnx-merge.js";
import { OnnxDataType, type OnnxModel, type OnnxNode, type OnnxTensor } from "../../onnx/types.js";
import { carriedTensorTargets } from "../../peft/carried-tensors.js";
import { ServeErrorCode } from "../error-codes.js";
import { carriedInputNames, type GraftCarried } from "../graft-spec.js";
import { GRAFT_PREFIX, type GraftWriter } from "./graft-writer.js";

const BOOL = 9;

/**
 * The initializer that holds a base parameter: by name (a wrapper prefix allowed), else, for a Linear weight that an
 * export renamed (and stored transposed), through the ONNX weight locator. The one place carried tensors are located.
 */
export function findCarriedInitializer(
  model: OnnxModel,
  index: GraphIndex,
  param: string,
  weights: () => LinearWeight[],
  shape?: readonly number[],
): { tensor: OnnxTensor; transposed: boolean; use?: OnnxNodeInput } | undefined {
  const exact = index.initializers.get(param);
  if (exact) return { tensor: exact, transposed: false };
  const bySuffix = [...index.initializers.values()].filter((t) => t.name.endsWith(`.${param}`));
  if (bySuffix.length === 1) return { tensor: bySuffix[0]!, transposed: false };
  if (param.endsWith(".bias") && shape) {
    const loc = locateOnnxParameter({ model, index, weights: weights(), param, shape });
    if (typeof loc === "string" || loc.matchedBy !== "linear" || loc.transposed) return undefined;
    return { tensor: loc.tensor, transposed: false, ...(loc.use ? { use: loc.use } : {}) };
  }
  if (!param.endsWith(".weight")) return undefined;
  const hits = findWeightsForModule({ module: param.slice(0, -".weight".length), weights: weights() });
  const only = hits.length === 1 && hits[0]!.part === undefined ? hits[0]!.weight : undefined;
  const tensor = only && index.initializers.get(only.initializer);
  if (!only || !tensor || only.via.length > 0) return undefined;
  return { tensor, transposed: only.layout === "in_out" };
}

/** Parameters of {@link graftCarriedTensors}. */
export interface GraftCarriedParams {
  writer: GraftWriter;
  adapter: VeraAdapter;
  index: GraphIndex;
  batched: boolean;
  batchDim: string | number;
  /** Also give the inputs default initializers (zeros, use = 0: the base model's tensor), as the d/b inputs. */
  defaults: boolean;
  /** Refusals are added here (the caller throws them with the others). */
  issues: Issue[];
}

function refuse(issues: Issue[], name: string, why: string): void {
  issues.push({
    code: ServeErrorCode.SERVE_GRAPH_UNSUPPORTED,
    message: `carried tensor ${name}: ${why}; it cannot be served per adapter, and grafting without it would serve a different function`,
    path: name,
  });
}

/** A batched carried tensor at one input slot of a consumer: the per-row value that replaces the base's there. */
interface SlotValue {
  eff: string;
  c: GraftCarried;
}

/** Why a consumer's carried inputs cannot be made per row, or undefined when they can. */
function perRowProblem(node: OnnxNode, slots: Map<number, SlotValue>, index: GraphIndex): string | undefined {
  const only = (allowed: number[]): boolean => [...slots.keys()].every((k) => allowed.includes(k));
  if (node.opType === "MatMul") return only([1]) && slots.get(1)!.c.dims.length === 2 ? undefined : "MatMul input";
  if (node.opType === "Add") return slots.size === 1 && only([0, 1]) ? undefined : "Add of two carried tensors";
  if (node.opType === "Gemm") {
    const f = (n: string): number => node.attributes.find((x) => x.name === n)?.f ?? 1;
    const w = index.initializers.get(node.inputs[1] ?? "");
    if (
      !only([1, 2]) ||
      intAttr(node, "transA", 0n) !== 0n ||
      f("alpha") !== 1 ||
      f("beta") !== 1 ||
      !w ||
      w.dims.length !== 2
    )
      return "Gemm with transA, alpha or beta, or a weight that is not an initializer";
    return undefined;
  }
  return `${node.opType} node`;
}

/** Rewire one consumer so that each row of the batch uses its own row of the carried values (see perRowProblem). */
function perRowConsumer(
  w: GraftWriter,
  index: GraphIndex,
  node: OnnxNode,
  slots: Map<number, SlotValue>,
  useShape: string,
  addedBias?: string,
): void {
  const before: NodeSpec[] = [];
  const after: NodeSpec[] = [];
  const op = w.ops(`${GRAFT_PREFIX}/carried/${node.name}`, before);
  const rows = (x: string, last: number): string =>
    op(
      "Reshape",
      [x, op("Concat", [useShape, w.int64([-1]), w.int64([last])], "shape3", [{ name: "axis", i: 0 }])],
      "rows",
    );
  const y = node.outputs[0]!;
  const back = (y3: string, shapeOf: string, last?: number): void => {
    const shape = op("Shape", [shapeOf], "shape");
    const target =
      last === undefined
        ? shape
        : op(
            "Concat",
            [op("Slice", [shape, w.int64([0]), w.int64([-1]), w.int64([0])], "lead"), w.int64([last])],
            "y_shape",
            [{ name: "axis", i: 0 }],
          );
    after.push({ name: w.fresh(`${y}/verakit_rows/Reshape`), op: "Reshape", inputs: [y3, target], outputs: [y] });
  };
  if (node.opType === "Gemm") {
    const base = index.initializers.get(node.inputs[1]!)!;
    const transB = intAttr(node, "transB", 0n) === 1n;
    const [inF, outF] = transB ? [base.dims[1]!, base.dims[0]!] : [base.dims[0]!, base.dims[1]!];
    const x = node.inputs[0]!;
    const wv = slots.get(1);
    const weight = wv ? wv.eff : node.inputs[1]!;
    const wt = transB ? op("Transpose", [weight], "w_t", [{ name: "perm", ints: wv ? [0, 2, 1] : [1, 0] }]) : weight;
    let y3 = op("MatMul", [rows(x, inF), wt], "xw");
    const cv = slots.get(2);
    const c = cv?.eff ?? addedBias;
    const bias = c ? op("Unsqueeze", [c, w.int64([1])], "c3") : node.inputs[2];
    if (bias) y3 = op("Add", [y3, bias], "xwc");
    back(y3, x, outF);
    // The original node still computes the base's value, into a name nothing reads.
    w.rename(node, 2, 0, w.fresh(`${y}/verakit_unused`));
    before.push(...after.splice(0));
    w.around(node, "after", before);
    return;
  }
  const y3 = w.fresh(`${y}/verakit_rows`);
  if (node.opType === "MatMul") {
    const c = slots.get(1)!.c;
    const x = node.inputs[0]!;
    w.rename(node, 1, 0, rows(x, c.dims[0]!));
    w.rename(node, 1, 1, slots.get(1)!.eff);
    const opAfter = w.ops(`${GRAFT_PREFIX}/carried/${node.name}`, after);
    const yb = addedBias ? opAfter("Add", [y3, opAfter("Unsqueeze", [addedBias, w.int64([1])], "bias3")], "xwb") : y3;
    back(yb, x, c.dims[1]!);
  } else {
    const [slot, v] = [...slots.entries()][0]!;
    const other = node.inputs[1 - slot]!;
    w.rename(node, 1, 1 - slot, rows(other, v.c.dims[0]!));
    w.rename(node, 1, slot, op("Unsqueeze", [v.eff, w.int64([1])], "b3"));
    back(y3, other);
  }
  w.around(node, "before", before);
  w.around(node, "after", after);
  w.rename(node, 2, 0, y3);
}

/** The inputs of one carried tensor and its per-adapter value `Where(use, fed, base)`; returns the value's name. */
function emitCarried(p: GraftCarriedParams, c: GraftCarried, base: Pick<OnnxTensor, "name" | "dataType">): string {
  const { writer: w, batched } = p;
  w.input(c.input, batched ? [p.batchDim, ...c.dims] : c.dims);
  // [1], not a scalar: onnxruntime's adapter files hold no 0-d parameters.
  w.input(c.use, batched ? [p.batchDim] : [1]);
  if (p.defaults) {
    const n = c.dims.reduce((x, y) => x * y, 1);
    w.initializer(c.input, OnnxDataType.FLOAT, batched ? [1, ...c.dims] : c.dims, new Uint8Array(4 * n));
    w.initializer(c.use, OnnxDataType.FLOAT, [1], new Uint8Array(4));
  }
  const head: NodeSpec[] = [];
  const op = w.ops(`${GRAFT_PREFIX}/carried/${c.param}`, head);
  const useIn = batched ? op("Reshape", [c.use, w.int64([-1, ...c.dims.map(() => 1)])], "use_rows") : c.use;
  const cond = op("Cast", [useIn], "use_bool", [{ name: "to", i: BOOL }]);
  const fed =
    base.dataType === OnnxDataType.FLOAT
      ? c.input
      : op("Cast", [c.input], "fed_cast", [{ name: "to", i: base.dataType }]);
  const eff = op("Where", [cond, fed, base.name], "value");
  w.atHead(head);
  return eff;
}

/**
 * A bias the model holds no tensor for (an exporter dropped a zero bias): its base is a new zero initializer, and an
 * Add after the module's MatMul/Gemm (whose output is renamed) adds the per-adapter value `eff` (per row when batched).
 */
function emitAddedBias(p: GraftCarriedParams, c: GraftCarried, bias: AddableBias, eff: string): void {
  const w = p.writer;
  const node = bias.node;
  const y = node.outputs[0]!;
  const x = w.fresh(`${y}/verakit_no_bias`);
  w.rename(node, 2, 0, x);
  const nodes: NodeSpec[] = [];
  const op = w.ops(`${GRAFT_PREFIX}/carried/${c.param}`, nodes);
  if (!p.batched) nodes.push({ name: w.fresh(`${node.name}/verakit_bias`), op: "Add", inputs: [x, eff], outputs: [y] });
  else {
    const batch = op("Shape", [c.use], "batch");
    const shape3 = op("Concat", [batch, w.int64([-1]), w.int64([c.dims[0]!])], "shape3", [{ name: "axis", i: 0 }]);
    const y3 = op("Add", [op("Reshape", [x, shape3], "rows"), op("Unsqueeze", [eff, w.int64([1])], "b3")], "added");
    const shape = op("Shape", [x], "shape");
    nodes.push({ name: w.fresh(`${y}/verakit_rows/Reshape`), op: "Reshape", inputs: [y3, shape], outputs: [y] });
  }
  w.around(node, "after", nodes);
}

/**
 * Every tensor the adapter carries becomes a per-adapter input pair (see {@link GraftCarried}); a tensor that cannot be
 * placed (no base parameter of that name and shape, a kind no path knows, a batched use that cannot be per row) is an
 * issue naming it.
 */
export function graftCarriedTensors(p: GraftCarriedParams): Array<{ spec: GraftCarried; initializer: string }> {
  const { writer: w, adapter, index } = p;
  const out: Array<{ spec: GraftCarried; initializer: string }> = [];
  const placed: Array<{
    spec: GraftCarried;
    base: Pick<OnnxTensor, "name" | "dataType">;
    added?: AddableBias;
    /** The one node input to rewire when the initializer has other users too. */
    only?: OnnxNodeInput;
  }> = [];
  const uses = (base: string, only?: OnnxNodeInput): Array<{ node: OnnxNode; k: number }> =>
    (index.consumers.get(base) ?? []).flatMap((node) =>
      node.inputs.flatMap((name, k) =>
        name === base && (!only || (only.graph === node.graphIndex && only.node === node.index && only.input === k))
          ? [{ node, k }]
          : [],
      ),
    );
  const consumers = new Map<OnnxNode, Map<number, SlotValue>>();
  let weights: LinearWeight[] | undefined;
  const lazyWeights = (): LinearWeight[] => (weights ??= listLinearWeights({ model: w.model }));
  for (const t of carriedTensorTargets({ adapter })) {
    const name = t.tensor.name;
    if (t.kind === "other") {
      refuse(p.issues, name, "no base parameter is known for it");
      continue;
    }
    const found = findCarriedInitializer(w.model, index, t.param, lazyWeights, t.tensor.shape);
    if (!found) {
      const names = carriedInputNames(t.param);
      const bias = t.param.endsWith(".bias")
        ? locateAddableBias({ model: w.model, index, weights: lazyWeights(), param: t.param, shape: t.tensor.shape })
        : "";
      if (typeof bias === "string" || bias.graph !== 0 || w.has(names.input) || w.has(names.use)) {
        refuse(p.issues, name, `the model has no initializer for the base parameter ${t.param}`);
        continue;
      }
      const spec: GraftCarried = {
        param: t.param,
        kind: t.kind,
        ...names,
        dims: [...t.tensor.shape],
        transposed: false,
      };
      placed.push({ spec, base: { name: "", dataType: bias.dataType }, added: bias });
      continue;
    }
    const users = new Set((index.consumers.get(found.tensor.name) ?? []).map((n) => n.name));
    if (users.size > 1 && !found.use) {
      refuse(
        p.issues,
        name,
        `its initializer ${JSON.stringify(found.tensor.name)} is shared by ${users.size} nodes (tied or de-duplicated by the exporter): replacing it would change them all`,
      );
      continue;
    }
    const shape = t.tensor.shape;
    const stored = found.tensor.dims;
    const want = found.transposed ? [...shape].reverse() : shape;
    if (want.length !== stored.length || want.some((d, i) => d !== stored[i])) {
      refuse(
        p.issues,
        name,
        `shape [${shape.join(", ")}] does not fit ${JSON.stringify(found.tensor.name)} [${stored.join(", ")}]`,
      );
      continue;
    }
    const names = carriedInputNames(t.param);
    if (w.has(names.input) || w.has(names.use)) {
      refuse(p.issues, name, `the model already has a value named ${JSON.stringify(names.input)}`);
      continue;
    }
    const spec: GraftCarried = { param: t.param, kind: t.kind, ...names, dims: stored, transposed: found.transposed };
    placed.push({ spec, base: found.tensor, ...(found.use ? { only: found.use } : {}) });
  }
  if (p.batched) {
    // Every consumer of a carried tensor must be made per row, with all its carried inputs at once.
    for (const { spec, base, only } of placed)
      for (const { node, k } of uses(base.name, only)) {
        const slots = consumers.get(node) ?? new Map<number, SlotValue>();
        slots.set(k, { eff: "", c: spec });
        consumers.set(node, slots);
      }
    for (const [node, slots] of consumers) {
      const why = perRowProblem(node, slots, index);
      if (why)
        for (const v of slots.values())
          refuse(
            p.issues,
            v.c.param,
            `with --batched, it feeds a ${why} (${JSON.stringify(node.name)}) that cannot be made per row (graft without --batched)`,
          );
    }
  }
  if (p.issues.length > 0) return [];
  const effs = new Map<string, string>();
  /** Added biases of nodes made per row for a carried weight: the Add goes into that rewiring. */
  const addedBiases = new Map<OnnxNode, string>();
  for (const { spec, base, added } of placed) {
    if (added) {
      base.name = w.fresh(spec.param);
      const n = spec.dims[0]!;
      w.initializer(base.name, base.dataType, [n], new Uint8Array(n * dtypeSize(added.dtype)));
    }
    effs.set(spec.param, emitCarried(p, spec, base));
    const perRow =
      added && [...consumers.keys()].find((n) => n.graphIndex === added.graph && n.name === added.node.name);
    if (perRow) addedBiases.set(perRow, effs.get(spec.param)!);
    else if (added) emitAddedBias(p, spec, added, effs.get(spec.param)!);
    out.push({ spec, initializer: base.name });
  }
  if (p.batched) {
    const shapeNodes: NodeSpec[] = [];
    const first = placed[0]?.spec.use;
    const shapeOf = first ? w.ops(`${GRAFT_PREFIX}/carried`, shapeNodes)("Shape", [first], "batch") : "";
    w.atHead(shapeNodes);
    for (const [node, slots] of consumers) {
      for (const v of slots.values()) v.eff = effs.get(v.c.param)!;
      perRowConsumer(w, index, node, slots, shapeOf, addedBiases.get(node));
    }
  } else {
    for (const { spec, base, only } of placed)
      for (const { node, k } of uses(base.name, only)) w.rename(node, 1, k, effs.get(spec.param)!);
  }
  return out.sort((a, b) => (a.spec.param < b.spec.param ? -1 : a.spec.param > b.spec.param ? 1 : 0));
}

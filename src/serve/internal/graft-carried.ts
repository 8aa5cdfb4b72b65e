/**
 * Internal: tensors an adapter carries (modules_to_save heads, trainable biases) as per-adapter inputs of a grafted
 * graph. Each replaces one initializer of the base: its uses read `Where(use, fed, base)` instead (per row when
 * batched, through a per-row MatMul or Add).
 */
import type { Issue } from "../../errors.js";
import type { VeraAdapter } from "../../format/types.js";
import type { NodeSpec } from "../../onnx/encode-onnx.js";
import type { GraphIndex } from "../../onnx/graph-index.js";
import { listLinearWeights, type LinearWeight } from "../../onnx/list-linear-weights.js";
import { findWeightsForModule } from "../../onnx/plan-onnx-merge.js";
import { OnnxDataType, type OnnxModel, type OnnxNode, type OnnxTensor } from "../../onnx/types.js";
import { carriedTensorTargets } from "../../peft/carried-tensors.js";
import { ServeErrorCode } from "../error-codes.js";
import { carriedInputNames, type GraftCarried } from "../graft-spec.js";
import { GRAFT_PREFIX, type GraftWriter, type OpFn } from "./graft-writer.js";

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
): { tensor: OnnxTensor; transposed: boolean } | undefined {
  const exact = index.initializers.get(param);
  if (exact) return { tensor: exact, transposed: false };
  const bySuffix = [...index.initializers.values()].filter((t) => t.name.endsWith(`.${param}`));
  if (bySuffix.length === 1) return { tensor: bySuffix[0]!, transposed: false };
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

/** Per-row use of a batched carried tensor by one consumer: a MatMul on its weight input or an Add of a bias. */
function perRowConsumer(
  w: GraftWriter,
  node: OnnxNode,
  slot: number,
  eff: string,
  c: GraftCarried,
  useShape: string,
  op: OpFn,
  nodes: NodeSpec[],
): boolean {
  const rowShape = (last: number): string =>
    op("Concat", [useShape, w.int64([-1]), w.int64([last])], "shape3", [{ name: "axis", i: 0 }]);
  if (node.opType === "MatMul" && slot === 1 && c.dims.length === 2) {
    const x = node.inputs[0]!;
    const x3 = op("Reshape", [x, rowShape(c.dims[0]!)], "x3");
    w.around(node, "before", nodes.splice(0));
    const y = node.outputs[0]!;
    const y3 = w.fresh(`${y}/verakit_rows`);
    const xShape = op("Shape", [x], "x_shape");
    const lead = op("Slice", [xShape, w.int64([0]), w.int64([-1]), w.int64([0])], "lead");
    const outShape = op("Concat", [lead, w.int64([c.dims[1]!])], "y_shape", [{ name: "axis", i: 0 }]);
    nodes.push({ name: w.fresh(`${y3}/Reshape`), op: "Reshape", inputs: [y3, outShape], outputs: [y] });
    w.around(node, "after", nodes.splice(0));
    w.rename(node, 1, 0, x3);
    w.rename(node, 1, 1, eff);
    w.rename(node, 2, 0, y3);
    return true;
  }
  if (node.opType === "Add" && c.dims.length === 1 && (slot === 0 || slot === 1)) {
    const other = node.inputs[1 - slot]!;
    const o3 = op("Reshape", [other, rowShape(c.dims[0]!)], "o3");
    const b3 = op("Unsqueeze", [eff, w.int64([1])], "b3");
    w.around(node, "before", nodes.splice(0));
    const y = node.outputs[0]!;
    const y3 = w.fresh(`${y}/verakit_rows`);
    const yShape = op("Shape", [other], "y_shape");
    nodes.push({ name: w.fresh(`${y3}/Reshape`), op: "Reshape", inputs: [y3, yShape], outputs: [y] });
    w.around(node, "after", nodes.splice(0));
    w.rename(node, 1, 1 - slot, o3);
    w.rename(node, 1, slot, b3);
    w.rename(node, 2, 0, y3);
    return true;
  }
  return false;
}

/** The inputs and nodes of one carried tensor; false (with an issue) when a batched use cannot be made per row. */
function emitCarried(p: GraftCarriedParams, c: GraftCarried, base: OnnxTensor): boolean {
  const { writer: w, index, batched } = p;
  const users = index.consumers.get(base.name) ?? [];
  if (batched) {
    const bad = users.find((n) => {
      const slot = n.inputs.indexOf(base.name);
      return !(
        (n.opType === "MatMul" && slot === 1 && c.dims.length === 2) ||
        (n.opType === "Add" && c.dims.length === 1)
      );
    });
    if (bad) {
      refuse(
        p.issues,
        c.param,
        `with --batched, its initializer ${JSON.stringify(base.name)} feeds ${bad.opType} ${JSON.stringify(bad.name)}, which cannot be made per row (graft without --batched)`,
      );
      return false;
    }
  }
  w.input(c.input, batched ? [p.batchDim, ...c.dims] : c.dims);
  w.input(c.use, batched ? [p.batchDim] : []);
  const head: NodeSpec[] = [];
  const op = w.ops(`${GRAFT_PREFIX}/carried/${c.param}`, head);
  const useIn = batched ? op("Reshape", [c.use, w.int64([-1, ...c.dims.map(() => 1)])], "use_rows") : c.use;
  const cond = op("Cast", [useIn], "use_bool", [{ name: "to", i: BOOL }]);
  const fed =
    base.dataType === OnnxDataType.FLOAT
      ? c.input
      : op("Cast", [c.input], "fed_cast", [{ name: "to", i: base.dataType }]);
  const eff = op("Where", [cond, fed, base.name], "value");
  const useShape = batched ? op("Shape", [c.use], "use_shape") : "";
  w.atHead(head);
  for (const node of users) {
    if (!batched) {
      node.inputs.forEach((name, k) => {
        if (name === base.name) w.rename(node, 1, k, eff);
      });
      continue;
    }
    const nodes: NodeSpec[] = [];
    perRowConsumer(
      w,
      node,
      node.inputs.indexOf(base.name),
      eff,
      c,
      useShape,
      w.ops(`${GRAFT_PREFIX}/carried/${c.param}`, nodes),
      nodes,
    );
  }
  return true;
}

/**
 * Every tensor the adapter carries becomes a per-adapter input pair (see {@link GraftCarried}); a tensor that cannot be
 * placed (no base parameter of that name and shape, a kind no path knows, a batched use that cannot be per row) is an
 * issue naming it.
 */
export function graftCarriedTensors(p: GraftCarriedParams): Array<{ spec: GraftCarried; initializer: string }> {
  const { writer: w, adapter, index } = p;
  const out: Array<{ spec: GraftCarried; initializer: string }> = [];
  let weights: LinearWeight[] | undefined;
  const lazyWeights = (): LinearWeight[] => (weights ??= listLinearWeights({ model: w.model }));
  for (const t of carriedTensorTargets({ adapter })) {
    const name = t.tensor.name;
    if (t.kind === "other") {
      refuse(p.issues, name, "no base parameter is known for it");
      continue;
    }
    const found = findCarriedInitializer(w.model, index, t.param, lazyWeights);
    if (!found) {
      refuse(p.issues, name, `the model has no initializer for the base parameter ${t.param}`);
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
    if (emitCarried(p, spec, found.tensor)) out.push({ spec, initializer: found.tensor.name });
  }
  return out.sort((a, b) => (a.spec.param < b.spec.param ? -1 : a.spec.param > b.spec.param ? 1 : 0));
}

/**
 * A Linear module's bias that the model does not hold (torch's dynamo exporter drops a zero bias: no initializer, no
 * Add, no Gemm C), added back: a new initializer and either an Add after the module's MatMul (whose output is
 * renamed, so the Add produces the original value and its consumers are unchanged) or Gemm's missing C input.
 */
import type { WeightDtype } from "../dtypes.js";
import { bestPathMatches } from "../locate/module-path.js";
import type { ByteEdit } from "./apply-edits.js";
import { initializerField, nodeField } from "./encode-onnx.js";
import type { GraphIndex } from "./graph-index.js";
import type { LinearWeight } from "./list-linear-weights.js";
import type { OnnxModel, OnnxNode } from "./types.js";
import { fields, lenField } from "./wire.js";

/** Where a missing bias can be added. */
export interface AddableBias {
  param: string;
  /** The module's MatMul or Gemm (without C). */
  node: OnnxNode;
  /** The module's weight. */
  weight: LinearWeight;
  /** The weight's (and the new bias's) element type. */
  dtype: WeightDtype;
  dataType: number;
  /** The module path that matched. */
  matched: string;
  /** Graph index of the node. */
  graph: number;
}

/** Parameters of {@link locateAddableBias}. */
export interface LocateAddableBiasParams {
  model: OnnxModel;
  index: GraphIndex;
  weights: readonly LinearWeight[];
  /** The transformers parameter name, ending in `.bias`. */
  param: string;
  /** Its PyTorch shape. */
  shape: readonly number[];
}

/**
 * The MatMul/Gemm of the Linear module whose bias `param` is, when the model holds no bias for it and one can be
 * added; else why not.
 */
export function locateAddableBias(params: LocateAddableBiasParams): AddableBias | string {
  const { model, index, param, shape } = params;
  if (!param.endsWith(".bias")) return "not a bias";
  const module = param.slice(0, -".bias".length);
  const hits = bestPathMatches(
    module,
    params.weights.map((w) => ({ item: w, paths: w.paths })),
  );
  const inits = new Set(hits.map((h) => h.item.initializer));
  if (inits.size !== 1) return `no single weight of module ${module} to add the bias to`;
  const w = hits[0]!.item;
  if (w.quantized || w.fused || !w.dtype) return `the weight of ${module} is quantized or fused`;
  if (w.via.includes("Cast")) return `the weight of ${module} is cast before its ${w.opType}`;
  if (shape.length !== 1 || shape[0] !== w.outFeatures)
    return `the bias [${shape.join(", ")}] does not fit the ${w.outFeatures} outputs of ${module}`;
  const graph = model.graphs[w.entry.graph];
  const node = graph?.nodes.find((n) => n.name === w.node);
  if (!node || !node.outputs[0]) return `no node of module ${module}`;
  if (node.opType === "Gemm") {
    if (node.inputs[2]) return `the Gemm of ${module} has a bias input`;
  } else if (node.opType !== "MatMul") return `the weight of ${module} feeds a ${node.opType}`;
  for (const c of index.consumers.get(node.outputs[0]) ?? [])
    if (c.opType === "Add") return `the ${node.opType} of ${module} is followed by an Add`;
  return { param, node, weight: w, dtype: w.dtype, dataType: w.dataType, matched: hits[0]!.path, graph: w.entry.graph };
}

/** Parameters of {@link addBiasEdits}. */
export interface AddBiasEditsParams {
  model: OnnxModel;
  bias: AddableBias;
  /** The new initializer's name (not a value of the model). */
  name: string;
  /** A fresh value name for the MatMul's output (MatMul only). */
  matmulOut: string;
  /** The bias's stored bytes (little-endian, the weight's dtype). */
  values: Uint8Array;
}

/**
 * The edits that add a bias: its initializer appended to the node's graph, and Gemm's C set to it, or the MatMul's
 * output renamed and an Add (right after the MatMul in the node list) producing the original output.
 */
export function addBiasEdits(params: AddBiasEditsParams): ByteEdit[] {
  const { model, bias, name } = params;
  const bytes = model.bytes;
  const node = bias.node;
  const graph = model.graphs[bias.graph]!;
  const dims = [bias.weight.outFeatures];
  const edits: ByteEdit[] = [
    {
      start: graph.span.end,
      end: graph.span.end,
      data: initializerField({ name, type: bias.dataType, dims, raw: params.values }),
      span: graph.span,
    },
  ];
  const inputs: Array<{ start: number; end: number }> = [];
  const outputs: Array<{ start: number; end: number }> = [];
  for (const f of fields(bytes, node.span.start, node.span.end)) {
    if (f.field === 1) inputs.push(f);
    if (f.field === 2) outputs.push(f);
  }
  if (node.opType === "Gemm") {
    const c = inputs[2];
    const last = inputs[inputs.length - 1]!;
    edits.push(
      c
        ? { start: c.start, end: c.end, data: lenField(1, name), span: node.span }
        : { start: last.end, end: last.end, data: lenField(1, name), span: node.span },
    );
    return edits;
  }
  const out = outputs[0]!;
  edits.push(
    { start: out.start, end: out.end, data: lenField(2, params.matmulOut), span: node.span },
    {
      start: node.span.end,
      end: node.span.end,
      data: nodeField({
        name: `${node.name}/verakit_bias`,
        op: "Add",
        inputs: [params.matmulOut, name],
        outputs: [node.outputs[0]!],
      }),
      span: graph.span,
    },
  );
  return edits;
}

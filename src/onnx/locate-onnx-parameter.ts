import type { WeightDtype, WeightLayout } from "../dtypes.js";
import { bestPathMatches } from "../locate/module-path.js";
import type { GraphIndex } from "./graph-index.js";
import { numel } from "./inline-values.js";
import { weightDtypeOf, type LinearWeight } from "./list-linear-weights.js";
import { storageIssue } from "./onnx-plan-builder.js";
import { dataTypeName, type OnnxModel, type OnnxNode, type OnnxTensor } from "./types.js";

/** One node input: graph index, node index, input slot. */
export interface OnnxNodeInput {
  graph: number;
  node: number;
  input: number;
}

/** Where a model parameter (`classifier.dense.weight`, `...query.bias`) is stored in an ONNX model. */
export interface OnnxParameterLocation {
  tensor: OnnxTensor;
  dtype: WeightDtype;
  /** The initializer holds the (2-D) parameter transposed against PyTorch's layout. */
  transposed: boolean;
  /** The model-side path or initializer name that matched. */
  matched: string;
  /**
   * `linear`: through the module's MatMul/Gemm (its weight, its Gemm C or Add bias); `exact` / `suffix`:
   * an initializer of that name.
   */
  matchedBy: "linear" | "exact" | "suffix";
  /**
   * Set when the initializer has other users too (an exporter folds equal tensors into one; tied
   * weights): the one node input on this parameter's path, which must get a copy of its own.
   */
  use?: OnnxNodeInput & { uses: number };
}

/** Parameters of {@link locateOnnxParameter}. */
export interface LocateOnnxParameterParams {
  model: OnnxModel;
  index: GraphIndex;
  /** The model's Linear weights (`listLinearWeights`). */
  weights: readonly LinearWeight[];
  /** The transformers parameter name, e.g. `classifier.dense.weight`. */
  param: string;
  /** Its PyTorch shape (the adapter's tensor's). */
  shape: readonly number[];
}

/** transformers' Conv1D modules (GPT-2 family) keep their weight (in, out). */
const CONV1D = new Set(["c_attn", "c_proj", "c_fc", "q_attn"]);

/** Follow a value back through Cast/Identity to an initializer. */
function initializerOf(index: GraphIndex, value: string): OnnxTensor | undefined {
  let cur = value;
  for (let i = 0; i < 4; i++) {
    const t = index.initializers.get(cur);
    if (t && !index.producer.has(cur)) return t;
    const p = index.producer.get(cur);
    if (!p || (p.opType !== "Cast" && p.opType !== "Identity")) return undefined;
    cur = p.inputs[0] ?? "";
  }
  return undefined;
}

/** The entry (node input reading the initializer) on the path from `node`'s input `slot`. */
function entryOf(index: GraphIndex, node: OnnxNode, slot: number): OnnxNodeInput {
  let n = node;
  let input = slot;
  for (let i = 0; i < 4; i++) {
    const v = n.inputs[input] ?? "";
    if (index.initializers.has(v) && !index.producer.has(v)) break;
    const p = index.producer.get(v);
    if (!p) break;
    n = p;
    input = 0;
  }
  return { graph: n.graphIndex, node: n.index, input };
}

/** The bias of a Linear weight's node: Gemm's C, or the Add that takes the MatMul's output. */
function biasOf(
  model: OnnxModel,
  index: GraphIndex,
  w: LinearWeight,
): { tensor: OnnxTensor; use: OnnxNodeInput } | undefined {
  const node = model.graphs[w.entry.graph]?.nodes.find((n) => n.name === w.node);
  if (!node) return undefined;
  const wanted = (t: OnnxTensor | undefined): boolean => t !== undefined && numel(t.dims) === w.outFeatures;
  if (node.opType === "Gemm" && node.inputs[2]) {
    const t = initializerOf(index, node.inputs[2]);
    if (wanted(t)) return { tensor: t!, use: entryOf(index, node, 2) };
  }
  for (const add of index.consumers.get(node.outputs[0] ?? "") ?? []) {
    if (add.opType !== "Add") continue;
    const slot = add.inputs[0] === node.outputs[0] ? 1 : 0;
    const t = initializerOf(index, add.inputs[slot] ?? "");
    if (wanted(t)) return { tensor: t!, use: entryOf(index, add, slot) };
  }
  return undefined;
}

/** Whether the initializer stores the parameter transposed, or why it cannot hold it. */
function transposition(
  t: OnnxTensor,
  shape: readonly number[],
  storedLayout: WeightLayout | undefined,
  module: string,
): boolean | string {
  const same = t.dims.length === shape.length && t.dims.every((d, i) => d === shape[i]);
  const reversed = t.dims.length === 2 && shape.length === 2 && t.dims[0] === shape[1] && t.dims[1] === shape[0];
  if (!same && !reversed)
    return `the model's ${JSON.stringify(t.name)} has dims [${t.dims.join(", ")}], the adapter's tensor [${shape.join(", ")}]`;
  if (!reversed || storedLayout === undefined) return !same;
  if (!same) return true;
  // square: the stored layout against PyTorch's (out, in), or (in, out) for a Conv1D
  const torch: WeightLayout = CONV1D.has(module.split(".").pop()!) ? "in_out" : "out_in";
  return storedLayout !== torch;
}

/**
 * Locate a model parameter in an ONNX model: a Linear module's weight through its MatMul/Gemm (the
 * initializer may be renamed, transposed, cast), its bias as Gemm's C or the Add after the MatMul,
 * else an initializer of that name (a wrapper prefix on either side). Returns the location, or why
 * there is none (a string naming the problem: absent, quantized, dims, dtype, storage).
 */
export function locateOnnxParameter(params: LocateOnnxParameterParams): OnnxParameterLocation | string {
  const { model, index, param, shape } = params;
  const dot = param.lastIndexOf(".");
  const module = param.slice(0, dot);
  const leaf = param.slice(dot + 1);
  const hits = bestPathMatches(
    module,
    params.weights.map((w) => ({ item: w, paths: w.paths })),
  );
  const inits = new Set(hits.map((h) => h.item.initializer));
  if (inits.size > 1) return `${inits.size} weights match module ${module}: ${[...inits].join(", ")}`;
  let found: { tensor: OnnxTensor; use: OnnxNodeInput; layout?: WeightLayout; matched: string } | undefined;
  const w = hits[0]?.item;
  if (w && leaf === "weight") {
    if (w.quantized) return `the model's ${JSON.stringify(w.initializer)} is quantized (${w.quantized})`;
    if (w.uses > (index.uses.get(w.initializer) ?? 0))
      return `the model's ${JSON.stringify(w.initializer)} reaches ${w.uses} users through ${w.via.join(">")}`;
    found = {
      tensor: index.initializers.get(w.initializer)!,
      use: w.entry,
      layout: w.layout,
      matched: hits[0]!.path,
    };
  } else if (w && leaf === "bias") {
    const b = biasOf(model, index, w);
    if (b) found = { ...b, matched: hits[0]!.path };
  }
  let matchedBy: OnnxParameterLocation["matchedBy"] = "linear";
  if (!found) {
    const named = bestPathMatches(
      param,
      [...index.initializers.values()].map((t) => ({ item: t, paths: [t.name] })),
    );
    if (named.length > 1) return `${named.length} initializers match: ${named.map((n) => n.item.name).join(", ")}`;
    if (named.length === 0) return `no tensor for ${param} in the model`;
    const t = named[0]!.item;
    const consumers = index.consumers.get(t.name) ?? [];
    const use =
      consumers.length === 1
        ? { graph: consumers[0]!.graphIndex, node: consumers[0]!.index, input: consumers[0]!.inputs.indexOf(t.name) }
        : { graph: -1, node: -1, input: -1 };
    found = { tensor: t, use, matched: t.name };
    matchedBy = named[0]!.kind;
  }
  const t = found.tensor;
  const dtype = weightDtypeOf(t.dataType);
  if (!dtype) return `the model's ${JSON.stringify(t.name)} is ${dataTypeName(t.dataType)}`;
  const tr = transposition(t, shape, found.layout, module);
  if (typeof tr === "string") return tr;
  const st = storageIssue(t, dtype);
  if (st) return `the model's ${JSON.stringify(t.name)}: ${st}`;
  const loc: OnnxParameterLocation = { tensor: t, dtype, transposed: tr, matched: found.matched, matchedBy };
  const uses = index.uses.get(t.name) ?? 0;
  if (uses > 1) {
    if (found.use.graph < 0)
      return `the model's ${JSON.stringify(t.name)} has ${uses} users and none is this parameter's`;
    loc.use = { ...found.use, uses };
  }
  return loc;
}

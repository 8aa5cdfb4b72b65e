import type { WeightDtype, WeightLayout } from "../dtypes.js";
import { indexGraph, intAttr, intsAttr, type GraphIndex } from "./graph-index.js";
import { fusedPartsOf } from "../locate/module-path.js";
import { dataTypeName, OnnxDataType, type OnnxModel, type OnnxNode, type OnnxTensor } from "./types.js";

/** How a weight's module path was found. */
export type ModulePathSource =
  /** The consumer node's `pkg.torch.onnx.name_scopes` metadata (torch >= 2.9 dynamo exporter). */
  | "name_scopes"
  /** The initializer keeps the parameter name `<module>.weight` (unfolded exports, GPT-2 Conv1D Gemm, optimum). */
  | "initializer_name"
  /** onnxruntime-genai builder naming `<module>.MatMul.weight`. */
  | "genai_name"
  /** The consumer node's scope name `/model/layers.0/self_attn/q_proj/MatMul` (legacy TorchScript exporter). */
  | "node_name";

/**
 * A weight whose module path names a fused projection (`qkv_proj`, `gate_up_proj`): onnxruntime-genai's
 * fusion of several modules in row blocks of one weight, or a model's own fused module (Phi-3), which an
 * adapter targets by the whole path.
 */
export interface FusedWeight {
  /** Path prefix of the parts, e.g. `model.layers.0.attn.`. */
  base: string;
  /** Part names in storage order, e.g. `["q_proj", "k_proj", "v_proj"]`. */
  parts: string[];
}

/** One Linear-like weight of an ONNX model: a 2-D initializer multiplied by an activation. */
export interface LinearWeight {
  /** Module path (the most reliable source), possibly with a wrapper prefix (`m.model.layers.0.self_attn.q_proj`). */
  module: string;
  /** Every path this weight is known by (from all sources, plus naming aliases), `module` first. */
  paths: string[];
  /** Where `module` came from. */
  source: ModulePathSource;
  /** Initializer name. */
  initializer: string;
  /** Input features (columns of torch's (out, in) weight). */
  inFeatures: number;
  /** Output features. */
  outFeatures: number;
  /** Stored layout: `in_out` (MatMul initializers, Conv1D Gemm) or `out_in` (Transpose-fed, Gemm transB=1). */
  layout: WeightLayout;
  /** Stored dims of the initializer. */
  dims: number[];
  /** TensorProto data type number. */
  dataType: number;
  /** float element type when mergeable, undefined otherwise. */
  dtype: WeightDtype | undefined;
  /** Name of the consuming MatMul/Gemm node. */
  node: string;
  /** Its op type (`MatMul`, `Gemm`, or a quantized op). */
  opType: string;
  /** Ops between the initializer and the consumer, initializer side first (e.g. `["Transpose"]`). */
  via: string[];
  /** Uses of the initializer and of any value between it and the consumer (1 when unshared). */
  uses: number;
  /** Set when the weight is quantized: what was seen (`MatMulNBits`, `DequantizeLinear`, `INT8 weight`, ...). */
  quantized?: string;
  /** Set for fused projections. */
  fused?: FusedWeight;
  /** True when the initializer is also a graph input (a caller may override it at run time). */
  overridable: boolean;
  /**
   * The node that reads the initializer on this weight's path (the MatMul/Gemm itself, or the first
   * Transpose/Cast): graph index, node index, input slot. Untying rewires this input.
   */
  entry: { graph: number; node: number; input: number };
}

/** Parameters of {@link listLinearWeights}. */
export interface ListLinearWeightsParams {
  /** The parsed model ({@link readOnnxModel}). */
  model: OnnxModel;
}

const MATMUL_OPS = new Set(["MatMul", "Gemm"]);
/** Quantized matmul-like ops and the input index of their weight. */
const QUANTIZED_OPS: Record<string, number> = {
  MatMulNBits: 1,
  MatMulInteger: 1,
  MatMulIntegerToFloat: 1,
  DynamicQuantizeMatMul: 1,
  QLinearMatMul: 3,
  QGemm: 3,
  MatMulBnb4: 1,
  MatMulFpQ4: 1,
};
const PASS_THROUGH = new Set(["Cast", "Identity"]);

/** The float element types the merge supports. */
export function weightDtypeOf(dataType: number): WeightDtype | undefined {
  if (dataType === OnnxDataType.FLOAT) return "F32";
  if (dataType === OnnxDataType.FLOAT16) return "F16";
  if (dataType === OnnxDataType.BFLOAT16) return "BF16";
  return undefined;
}

const INTEGER_TYPES = new Set<number>([
  OnnxDataType.INT8,
  OnnxDataType.UINT8,
  OnnxDataType.INT4,
  OnnxDataType.UINT4,
  OnnxDataType.INT16,
  OnnxDataType.UINT16,
  OnnxDataType.FLOAT8E4M3FN,
  OnnxDataType.FLOAT8E4M3FNUZ,
  OnnxDataType.FLOAT8E5M2,
  OnnxDataType.FLOAT8E5M2FNUZ,
  OnnxDataType.FLOAT4E2M1,
]);

/**
 * Parse the Python list literal of `pkg.torch.onnx.name_scopes` and return the module path of the op.
 * One pass over the text (a regular expression here took time quadratic in hostile values).
 */
export function moduleFromNameScopes(value: string): string | undefined {
  const items: string[] = [];
  for (let i = 0; i < value.length; i++) {
    const q = value[i];
    if (q !== "'" && q !== '"') continue;
    // the item's text as written (escapes kept, as in the literal), up to the matching quote
    let j = i + 1;
    while (j < value.length && value[j] !== q) j += value[j] === "\\" ? 2 : 1;
    if (j >= value.length) break; // unterminated: the rest is not a list item
    items.push(value.slice(i + 1, j));
    i = j;
  }
  // [..., 'model.layers.0.self_attn.q_proj', 'linear']: the last item is the op, the one before it the module.
  if (items.length < 2) return undefined;
  const mod = items[items.length - 2]!;
  return mod === "" ? undefined : mod;
}

/** `/model/layers.0/self_attn/q_proj/MatMul` -> `model.layers.0.self_attn.q_proj`. */
export function moduleFromNodeName(name: string): string | undefined {
  if (!name.startsWith("/")) return undefined;
  const parts = name.split("/").slice(1, -1);
  if (parts.length === 0 || parts.some((p) => p === "")) return undefined;
  return parts.join(".");
}

function moduleFromInitializer(name: string): { path: string; source: ModulePathSource } | undefined {
  let m = /^(.+)\.MatMul\.weight(?:_Q\d+)?$/.exec(name);
  if (m) return { path: m[1]!, source: "genai_name" };
  m = /^(.+)\.weight(?:_quantized|_Q\d+)?$/.exec(name);
  if (m) return { path: m[1]!, source: "initializer_name" };
  return undefined;
}

interface Traced {
  tensor: OnnxTensor | undefined;
  transposed: boolean;
  via: string[];
  uses: number;
  quantized?: string;
  entry: { node: OnnxNode; input: number };
}

/** Follow a weight input back through Transpose/Cast/Identity (and DequantizeLinear) to an initializer. */
function trace(index: GraphIndex, consumer: OnnxNode, input: number): Traced {
  const value = consumer.inputs[input] ?? "";
  let entry = { node: consumer, input };
  const via: string[] = [];
  let transposed = false;
  let uses = index.uses.get(value) ?? 0;
  let quantized: string | undefined;
  let cur = value;
  for (let steps = 0; steps < 8; steps++) {
    const t = index.initializers.get(cur);
    if (t && !index.producer.has(cur)) {
      const r: Traced = { tensor: t, transposed, via: via.reverse(), uses, entry };
      if (quantized !== undefined) r.quantized = quantized;
      return r;
    }
    const p = index.producer.get(cur);
    if (!p) break;
    if (p.opType === "Transpose") {
      const perm = intsAttr(p, "perm");
      if (perm && !(perm.length === 2 && perm[0] === 1n && perm[1] === 0n)) break;
      transposed = !transposed;
    } else if (p.opType === "DequantizeLinear") {
      quantized = "DequantizeLinear (QDQ)";
    } else if (!PASS_THROUGH.has(p.opType)) {
      break;
    }
    via.push(p.opType);
    cur = p.inputs[0] ?? "";
    entry = { node: p, input: 0 };
    uses = Math.max(uses, index.uses.get(cur) ?? 0);
  }
  const r: Traced = { tensor: undefined, transposed, via: via.reverse(), uses, entry };
  if (quantized !== undefined) r.quantized = quantized;
  return r;
}

function attnAliases(path: string): string[] {
  // onnxruntime-genai names the attention block `attn` where transformers says `self_attn`.
  const out: string[] = [];
  if (/(^|\.)attn\./.test(path)) out.push(path.replace(/(^|\.)attn\./, "$1self_attn."));
  return out;
}

function pathsFor(
  node: OnnxNode,
  initializer: string,
): { module: string; source: ModulePathSource; paths: string[] } | undefined {
  const found: Array<{ path: string; source: ModulePathSource }> = [];
  const scopes = node.metadata["pkg.torch.onnx.name_scopes"];
  if (scopes !== undefined) {
    const p = moduleFromNameScopes(scopes);
    if (p) found.push({ path: p, source: "name_scopes" });
  }
  const fromInit = moduleFromInitializer(initializer);
  if (fromInit) found.push(fromInit);
  const fromNode = moduleFromNodeName(node.name);
  if (fromNode) found.push({ path: fromNode, source: "node_name" });
  if (found.length === 0) return undefined;
  const paths: string[] = [];
  const genai = found.some((f) => f.source === "genai_name");
  for (const f of found) {
    if (!paths.includes(f.path)) paths.push(f.path);
    if (genai) for (const a of attnAliases(f.path)) if (!paths.includes(a)) paths.push(a);
  }
  return { module: found[0]!.path, source: found[0]!.source, paths };
}

function fusedOf(module: string): FusedWeight | undefined {
  const f = fusedPartsOf(module);
  return f ? { base: f.prefix, parts: [...f.parts] } : undefined;
}

/**
 * List the Linear-like weights of an ONNX model with their module paths, in/out features and
 * stored layout: MatMul/Gemm nodes whose weight input is a 2-D initializer, directly or through
 * Transpose/Cast/Identity. Recognises the torch dynamo exporter (module path in
 * `pkg.torch.onnx.name_scopes`), GPT-2 Conv1D Gemm (parameter names), legacy TorchScript exports
 * (scope node names, `onnx::MatMul_N` initializers; Transpose-fed `<module>.weight`; Gemm transB)
 * and onnxruntime-genai builder names (`<module>.MatMul.weight`, fused `qkv_proj`). Quantized
 * weights (MatMulNBits, MatMulInteger, QDQ, integer initializers) are listed with `quantized` set.
 *
 * This is what importing a PEFT adapter against an ONNX base needs for module shapes.
 */
export function listLinearWeights(params: ListLinearWeightsParams): LinearWeight[] {
  const { model } = params;
  const index = indexGraph(model);
  const out: LinearWeight[] = [];
  for (const g of model.graphs) {
    for (const node of g.nodes) {
      const isMatMul = MATMUL_OPS.has(node.opType) && (node.domain === "" || node.domain === "ai.onnx");
      const qIndex = QUANTIZED_OPS[node.opType];
      if (!isMatMul && qIndex === undefined) continue;
      const slot = isMatMul ? 1 : qIndex!;
      if (!node.inputs[slot]) continue;
      const traced = trace(index, node, slot);
      const t = traced.tensor;
      if (!t) continue;
      if (isMatMul && t.dims.length !== 2) continue;
      const names = pathsFor(node, t.name);
      if (!names) continue;
      let quantized = traced.quantized;
      if (!isMatMul) quantized = node.opType;
      else if (INTEGER_TYPES.has(t.dataType)) quantized ??= `${dataTypeName(t.dataType)} weight`;
      let layout: WeightLayout = "in_out";
      let inFeatures = 0;
      let outFeatures = 0;
      if (isMatMul) {
        let flip = traced.transposed;
        if (node.opType === "Gemm" && intAttr(node, "transB", 0n) !== 0n) flip = !flip;
        layout = flip ? "out_in" : "in_out";
        const [d0, d1] = t.dims as [number, number];
        [inFeatures, outFeatures] = layout === "in_out" ? [d0, d1] : [d1, d0];
      } else {
        const k = intAttr(node, "K", -1n);
        const n = intAttr(node, "N", -1n);
        if (k > 0n && n > 0n) {
          inFeatures = Number(k);
          outFeatures = Number(n);
        } else if (t.dims.length === 2) {
          [inFeatures, outFeatures] = t.dims as [number, number];
        }
      }
      const w: LinearWeight = {
        module: names.module,
        paths: names.paths,
        source: names.source,
        initializer: t.name,
        inFeatures,
        outFeatures,
        layout,
        dims: t.dims,
        dataType: t.dataType,
        dtype: quantized === undefined ? weightDtypeOf(t.dataType) : undefined,
        node: node.name,
        opType: node.opType,
        via: traced.via,
        uses: traced.uses,
        overridable: index.overridable.has(t.name),
        entry: { graph: traced.entry.node.graphIndex, node: traced.entry.node.index, input: traced.entry.input },
      };
      if (quantized !== undefined) w.quantized = quantized;
      const fused = fusedOf(names.module);
      if (fused) w.fused = fused;
      out.push(w);
    }
  }
  return out;
}

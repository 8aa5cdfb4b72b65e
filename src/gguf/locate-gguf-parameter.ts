import type { GgufTensorRange } from "./locate-gguf-weights.js";
import { ggufTensorName, qkPermutationHeads, type GgufNameMapping } from "./tensor-names.js";
import { qkvRowOrder } from "./qkv-row-order.js";

/** Parameters of {@link locateGgufParameter}. */
export interface LocateGgufParameterParams {
  /** llama.cpp architecture (general.architecture). */
  architecture: string;
  /** The model's tensors by name (every part of a split GGUF), with the part holding each. */
  ranges: ReadonlyMap<string, GgufTensorRange & { part: number }>;
  /** The transformers parameter name, e.g. `lm_head.weight`, `model.layers.0.self_attn.q_proj.bias`. */
  param: string;
  /** Its PyTorch shape (ggml's ne is the reverse). */
  shape: readonly number[];
  /** User mapping (module path -> tensor base name), consulted first. @default none */
  mapping?: GgufNameMapping;
  /** Heads of llama.cpp's q/k row permutation. */
  nHead: number;
  nHeadKv: number;
}

/** A parameter's tensor in a GGUF model. */
export interface GgufParameterLocation extends GgufTensorRange {
  dtype: "F32" | "F16" | "BF16";
  part: number;
  /** Rows are stored in llama.cpp's permuted q/k order with these heads (llama attn_q / attn_k). */
  permuteHeads?: number;
  /** A fused attn_qkv's rows in llama.cpp's order (qkvRowOrder). */
  rowOrder?: Uint32Array;
  matchedBy: "exact" | "mapping";
}

/**
 * Locate a model parameter (a modules_to_save parameter, a trainable bias) in a GGUF model under
 * llama.cpp's names (the module's tensor base name, `.weight` / `.bias`; `lm_head` is `output`, `embed_tokens`
 * `token_embd`), or say why it cannot be placed: no llama.cpp name, absent (a tied `output.weight`), a shape that is
 * not the reverse of PyTorch's, a quantized tensor, input embeddings that are also the output (tied).
 */
export function locateGgufParameter(params: LocateGgufParameterParams): GgufParameterLocation | string {
  const { param, shape } = params;
  const dot = param.lastIndexOf(".");
  const module = param.slice(0, dot);
  const leaf = param.slice(dot + 1);
  const mapped =
    params.mapping !== undefined && ggufTensorName({ architecture: "", module, mapping: params.mapping }) !== undefined;
  const base = ggufTensorName({
    architecture: params.architecture,
    module,
    ...(params.mapping ? { mapping: params.mapping } : {}),
  });
  if (base === undefined)
    return `module ${module} has no ${params.architecture} tensor name (give one in a mapping file)`;
  const name = `${base}.${leaf}`;
  const r = params.ranges.get(name);
  if (!r) return base === "output" ? `${name} is absent: the output is tied to token_embd` : `${name} is absent`;
  const ne = [...shape].reverse();
  if (r.ne.length !== ne.length || r.ne.some((d, i) => d !== ne[i]))
    return `${name} has ggml shape [${r.ne.join(", ")}], the adapter's tensor needs [${ne.join(", ")}]`;
  if (r.quantized || r.dtype === "F64") return `${name} is ${r.dtype}: merge into the F16 GGUF, then quantize`;
  // a tied model reads its output from token_embd too; the adapter's embeddings leave the output as it was
  if (base === "token_embd" && !params.ranges.has("output.weight"))
    return `${name} is also the model's output (tied: there is no output.weight), which the adapter does not change`;
  const heads = qkPermutationHeads({
    architecture: params.architecture,
    tensor: base,
    nHead: params.nHead,
    nHeadKv: params.nHeadKv,
  });
  if (heads !== undefined && (heads < 1 || shape[0]! % (2 * heads) !== 0))
    return `${name} needs llama.cpp's q/k permutation but the head count does not split its rows`;
  const order = qkvRowOrder({
    architecture: params.architecture,
    tensor: base,
    rows: shape[0] ?? 0,
    nHead: params.nHead,
    nHeadKv: params.nHeadKv,
  });
  if (typeof order === "string") return `${name} is stored in llama.cpp's q/k/v row order, but ${order}`;
  return {
    ...r,
    dtype: r.dtype as "F32" | "F16" | "BF16",
    matchedBy: mapped ? "mapping" : "exact",
    ...(heads !== undefined ? { permuteHeads: heads } : {}),
    ...(order !== undefined ? { rowOrder: order } : {}),
  };
}

import { VeraError } from "../errors.js";
import { parseWeightMapping } from "../locate/weight-mapping.js";
import { parseStrictJson } from "../util/strict-json.js";
import { GgufErrorCode } from "./error-codes.js";

const LLAMA_LIKE: Record<string, string> = {
  "self_attn.q_proj": "attn_q",
  "self_attn.k_proj": "attn_k",
  "self_attn.v_proj": "attn_v",
  "self_attn.o_proj": "attn_output",
  "mlp.gate_proj": "ffn_gate",
  "mlp.up_proj": "ffn_up",
  "mlp.down_proj": "ffn_down",
};

/** Falcon's and Bloom's block modules (`transformer.h.N.`...). */
const FUSED_QKV_SELF_ATTENTION: Record<string, string> = {
  "self_attention.query_key_value": "attn_qkv",
  "self_attention.dense": "attn_output",
  "mlp.dense_h_to_4h": "ffn_up",
  "mlp.dense_4h_to_h": "ffn_down",
};

/**
 * Per llama.cpp architecture (general.architecture): Hugging Face module suffix inside block N ->
 * llama.cpp tensor base name inside `blk.N.` (from gguf-py's tensor_mapping.py).
 */
const BLOCK_TABLES: Record<string, Record<string, string>> = {
  llama: LLAMA_LIKE,
  qwen2: LLAMA_LIKE,
  qwen3: LLAMA_LIKE,
  gemma: LLAMA_LIKE,
  gemma2: LLAMA_LIKE,
  gemma3: LLAMA_LIKE,
  phi3: {
    "self_attn.qkv_proj": "attn_qkv",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
  },
  gpt2: { "attn.c_attn": "attn_qkv", "attn.c_proj": "attn_output", "mlp.c_fc": "ffn_up", "mlp.c_proj": "ffn_down" },
  // fused query_key_value: llama.cpp stores its rows in another order (qkvRowOrder)
  gptneox: {
    "attention.query_key_value": "attn_qkv",
    "attention.dense": "attn_output",
    "mlp.dense_h_to_4h": "ffn_up",
    "mlp.dense_4h_to_h": "ffn_down",
  },
  falcon: FUSED_QKV_SELF_ATTENTION,
  bloom: FUSED_QKV_SELF_ATTENTION,
  // encoder-decoder: enc.blk.N / dec.blk.N, named by t5TensorName
  t5: {},
  // encoder blocks `encoder.layer.N.`; llama.cpp's converter leaves the pooler out
  bert: {
    "attention.self.query": "attn_q",
    "attention.self.key": "attn_k",
    "attention.self.value": "attn_v",
    "attention.output.dense": "attn_output",
    "intermediate.dense": "ffn_up",
    "output.dense": "ffn_down",
  },
};

/** The input embeddings of every architecture with a table (`model.embed_tokens`, GPT-2's `transformer.wte`). */
const TOKEN_EMBEDDINGS = /(^|\.)(embed_tokens|wte)$/;

const T5_LEAF: Record<string, string> = { q: "q", k: "k", v: "v", o: "o" };
const T5_FFN: Record<string, string> = { wi: "ffn_up", wo: "ffn_down", wi_0: "ffn_gate", wi_1: "ffn_up" };

/**
 * T5's llama.cpp names (gguf-py's tensor_mapping.py): `<encoder|decoder>.block.N.layer.L.SelfAttention.<q|k|v|o>` ->
 * `<enc|dec>.blk.N.attn_<q|k|v|o>`, the decoder's `EncDecAttention` -> `dec.blk.N.cross_attn_<q|k|v|o>`,
 * `DenseReluDense.<wi|wo|wi_0|wi_1>` -> `ffn_up`, `ffn_down`, `ffn_gate`, `ffn_up`.
 */
function t5TensorName(module: string): string | undefined {
  const m =
    /^(?:.*\.)?(encoder|decoder)\.block\.(\d+)\.layer\.\d+\.(SelfAttention|EncDecAttention|DenseReluDense)\.(\w+)$/.exec(
      module,
    );
  if (!m) return undefined;
  const [, side, block, part, leaf] = m as unknown as [string, string, string, string, string];
  const prefix = `${side === "encoder" ? "enc" : "dec"}.blk.${Number(block)}.`;
  if (part === "DenseReluDense") return Object.hasOwn(T5_FFN, leaf) ? prefix + T5_FFN[leaf] : undefined;
  if (!Object.hasOwn(T5_LEAF, leaf)) return undefined;
  if (part === "EncDecAttention") return side === "decoder" ? `${prefix}cross_attn_${leaf}` : undefined;
  return `${prefix}attn_${leaf}`;
}

/**
 * Architectures whose attn_q/attn_k rows convert_hf_to_gguf permutes with LlamaModel.permute's formula (Llama and
 * Mistral; DeciModel, MiniCPMModel, OlmoModel, ArcticModel, DeepseekModel, ChameleonModel, GraniteModel and its MoE):
 * a merge through a mapping file permutes the delta the same way instead of adding it in the checkpoint's order.
 */
const PERMUTED = new Set([
  "llama",
  "deci",
  "minicpm",
  "olmo",
  "arctic",
  "deepseek",
  "chameleon",
  "granite",
  "granitemoe",
]);
/**
 * BaichuanModel / XverseModel permute with another formula (n_head // n_head_kv heads for attn_k), the same as
 * LlamaModel's only without grouped kv heads: with them, no permutation is known here (0 heads: refused).
 */
const PERMUTED_WITHOUT_GQA = new Set(["baichuan", "xverse"]);

/** transformers model_type -> llama.cpp general.architecture (Mistral 7B converts as "llama"). */
const FROM_MODEL_TYPE: Record<string, string> = {
  llama: "llama",
  mistral: "llama",
  qwen2: "qwen2",
  qwen3: "qwen3",
  gemma: "gemma",
  gemma2: "gemma2",
  gemma3_text: "gemma3",
  phi3: "phi3",
  gpt2: "gpt2",
  gpt_neox: "gptneox",
  falcon: "falcon",
  bloom: "bloom",
  t5: "t5",
  bert: "bert",
};

/** The llama.cpp architectures with a built-in tensor-name table. */
export const GGUF_KNOWN_ARCHITECTURES: readonly string[] = Object.keys(BLOCK_TABLES);

/** llama.cpp architecture of a transformers model_type, or undefined when there is no known one. */
export function ggufArchitectureOfModelType(modelType: string): string | undefined {
  return Object.hasOwn(FROM_MODEL_TYPE, modelType) ? FROM_MODEL_TYPE[modelType] : undefined;
}

/**
 * A user mapping: module path (Hugging Face) -> llama.cpp tensor name, without ".weight". Keys and values
 * may hold `{bid}` for the block number, e.g. `{"model.layers.{bid}.attn.wq": "blk.{bid}.attn_q"}`.
 */
export type GgufNameMapping = Record<string, string>;

/**
 * Parse a mapping file's text: the format every container shares (`{"modules": {MODULE: TENSOR | {"initializer":
 * TENSOR}}}`, see `parseWeightMapping`), or the older flat JSON object of module -> tensor name. Module paths
 * and tensor names may hold `{bid}` for the block number; a trailing `.weight` is dropped from both.
 */
export function parseGgufNameMapping(text: string, label = "mapping"): GgufNameMapping {
  let v: unknown;
  try {
    v = parseStrictJson(text);
  } catch (e) {
    throw new VeraError(GgufErrorCode.GGUF_MAPPING, `${label}: not JSON (${(e as Error).message})`, { path: label });
  }
  if (typeof v !== "object" || v === null || Array.isArray(v))
    throw new VeraError(GgufErrorCode.GGUF_MAPPING, `${label}: expected a JSON object of module -> tensor name`, {
      path: label,
    });
  const entries =
    "modules" in v
      ? Object.entries(parseWeightMapping({ source: v })).map(([k, e]) => [k, e.initializer] as const)
      : Object.entries(v);
  const out: GgufNameMapping = {};
  for (const [k, x] of entries) {
    if (typeof x !== "string" || x.length === 0)
      throw new VeraError(GgufErrorCode.GGUF_MAPPING, `${label}: "${k}" must map to a tensor name string`, {
        path: `${label}/${k}`,
        received: typeof x,
      });
    out[k.replace(/\.weight$/, "")] = x.replace(/\.weight$/, "");
  }
  return out;
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

function fromMapping(mapping: GgufNameMapping, module: string): string | undefined {
  if (Object.hasOwn(mapping, module)) return mapping[module];
  for (const [k, v] of Object.entries(mapping)) {
    if (!k.includes("{bid}")) continue;
    const m = new RegExp(`^${escapeRe(k).replace("\\{bid\\}", "(\\d+)")}$`).exec(module);
    if (m) return v.replaceAll("{bid}", m[1]!);
  }
  return undefined;
}

/** Parameters of {@link ggufTensorName}. */
export interface GgufTensorNameParams {
  /** llama.cpp architecture (general.architecture). */
  architecture: string;
  /** Hugging Face module path, e.g. `model.layers.0.self_attn.q_proj`. */
  module: string;
  /** User mapping, consulted first. @default undefined */
  mapping?: GgufNameMapping;
}

/**
 * llama.cpp's tensor base name (no ".weight") of a Hugging Face module, e.g.
 * `model.layers.3.mlp.down_proj` -> `blk.3.ffn_down`, `lm_head` -> `output`, `model.embed_tokens` -> `token_embd`;
 * undefined when neither the mapping nor the architecture's table knows it.
 */
export function ggufTensorName(params: GgufTensorNameParams): string | undefined {
  if (params.mapping) {
    const m = fromMapping(params.mapping, params.module);
    if (m !== undefined) return m;
  }
  const table = BLOCK_TABLES[params.architecture];
  if (!table) return undefined;
  if (/(^|\.)lm_head$/.test(params.module)) return "output";
  if (params.architecture === "t5") return t5TensorName(params.module);
  if (TOKEN_EMBEDDINGS.test(params.module)) return "token_embd";
  const m = /^(?:.*\.)?(?:layers|layer|h|blocks)\.(\d+)\.(.+)$/.exec(params.module);
  if (!m) return undefined;
  const t = Object.hasOwn(table, m[2]!) ? table[m[2]!] : undefined;
  return t === undefined ? undefined : `blk.${Number(m[1])}.${t}`;
}

/** Whether the architecture has a built-in table (otherwise a mapping file is needed). */
export function isKnownGgufArchitecture(architecture: string): boolean {
  return Object.hasOwn(BLOCK_TABLES, architecture);
}

/**
 * Heads whose rows llama.cpp permutes for a tensor (see {@link permuteQkRows}): n_head for `blk.N.attn_q`,
 * n_head_kv for `blk.N.attn_k` of the architectures whose converter permutes them (PERMUTED); 0 (refused) where the
 * permutation is not known for these head counts; undefined for every other tensor.
 */
export function qkPermutationHeads(params: {
  architecture: string;
  tensor: string;
  nHead: number;
  nHeadKv: number;
}): number | undefined {
  const plain = PERMUTED_WITHOUT_GQA.has(params.architecture);
  if (!PERMUTED.has(params.architecture) && !plain) return undefined;
  const q = /^blk\.\d+\.attn_q$/.test(params.tensor);
  if (!q && !/^blk\.\d+\.attn_k$/.test(params.tensor)) return undefined;
  if (plain && params.nHead !== params.nHeadKv) return 0;
  return q ? params.nHead : params.nHeadKv;
}

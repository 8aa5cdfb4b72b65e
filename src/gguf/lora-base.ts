import { VeraError } from "../errors.js";
import { parseStrictJson } from "../util/strict-json.js";
import { GgufErrorCode } from "./error-codes.js";
import { ggufScalar } from "./read-gguf.js";
import { ggufArchitectureOfModelType } from "./tensor-names.js";
import { GgufValueType, type GgufFile } from "./types.js";

/** What the LoRA export needs to know of the base model. */
export interface GgufLoraBase {
  /** llama.cpp architecture (general.architecture). */
  architecture: string;
  /** Attention heads (for the attn_q permutation). */
  nHead?: number;
  /** Key/value heads (for the attn_k permutation). @default nHead */
  nHeadKv?: number;
  /** The base's tensors (name -> ggml ne) when known (a GGUF base): every adapted tensor is checked against them. */
  tensors?: Map<string, number[]>;
  /** Tensors known to be absent without a tensor list (a config.json with tied embeddings has no output.weight). */
  absentTensors?: string[];
  /** Where the description came from, for messages. */
  label: string;
}

function headCount(file: GgufFile, key: string, label: string): number | undefined {
  const v = file.metadata.get(key);
  if (!v) return undefined;
  const values = v.type === GgufValueType.ARRAY ? v.value : [v.value];
  const nums = values.map((x) => (typeof x === "bigint" ? Number(x) : x));
  const first = nums[0];
  if (typeof first !== "number" || !Number.isInteger(first) || nums.some((x) => x !== first))
    throw new VeraError(GgufErrorCode.GGUF_BASE_MISMATCH, `${label}: ${key} is not one integer head count`, {
      path: key,
      received: values.length > 8 ? `${values.length} values` : values.map(String),
    });
  return first;
}

/** The base description of a GGUF model file's header (see readGguf). */
export function loraBaseFromGguf(file: GgufFile, label = "base"): GgufLoraBase {
  const arch = ggufScalar(file, "general.architecture");
  if (typeof arch !== "string")
    throw new VeraError(GgufErrorCode.GGUF_VALUE_TYPE, `${label}: general.architecture is missing or not a string`, {
      path: "general.architecture",
    });
  const nHead = headCount(file, `${arch}.attention.head_count`, label);
  const nHeadKv = headCount(file, `${arch}.attention.head_count_kv`, label);
  return {
    architecture: arch,
    ...(nHead !== undefined ? { nHead } : {}),
    ...(nHeadKv !== undefined ? { nHeadKv } : nHead !== undefined ? { nHeadKv: nHead } : {}),
    tensors: new Map(file.tensors.map((t) => [t.name, t.ne])),
    label,
  };
}

/**
 * The base description of a transformers config.json (model_type -> llama.cpp architecture, head
 * counts). No tensor list: names come from the architecture's table alone.
 */
export function loraBaseFromConfig(configText: string, label = "config.json"): GgufLoraBase {
  let cfg: Record<string, unknown>;
  try {
    cfg = parseStrictJson(configText) as Record<string, unknown>;
  } catch (e) {
    throw new VeraError(GgufErrorCode.GGUF_MAPPING, `${label}: not JSON (${(e as Error).message})`, { path: label });
  }
  if (typeof cfg !== "object" || cfg === null || typeof cfg["model_type"] !== "string")
    throw new VeraError(GgufErrorCode.GGUF_UNKNOWN_ARCHITECTURE, `${label}: no model_type`, { path: label });
  const modelType = cfg["model_type"];
  const arch = ggufArchitectureOfModelType(modelType) ?? modelType;
  const int = (k: string) => (typeof cfg[k] === "number" && Number.isInteger(cfg[k]) ? (cfg[k] as number) : undefined);
  const nHead = int("num_attention_heads") ?? int("n_head");
  // Falcon: the kv heads its weights hold (transformers' FalconAttention), not num_kv_heads alone
  const falconKv =
    modelType === "falcon" && cfg["new_decoder_architecture"] !== true
      ? cfg["multi_query"] !== false
        ? 1
        : nHead
      : int("num_kv_heads");
  const nHeadKv = int("num_key_value_heads") ?? falconKv ?? nHead;
  // transformers defaults tie_word_embeddings to true; llama.cpp then has no output.weight (it reuses token_embd)
  const tied = cfg["tie_word_embeddings"] !== false;
  return {
    architecture: arch,
    ...(nHead !== undefined ? { nHead } : {}),
    ...(nHeadKv !== undefined ? { nHeadKv } : {}),
    ...(tied ? { absentTensors: ["output.weight"] } : {}),
    label,
  };
}

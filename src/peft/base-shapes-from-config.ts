import { VeraError } from "../errors.js";
import type { Layout } from "../format/types.js";
import type { BaseModule, BaseShapes } from "./base-shapes.js";
import { PeftErrorCode } from "./error-codes.js";

/** Parameters of {@link baseShapesFromConfig}. */
export interface BaseShapesFromConfigParams {
  /** A parsed transformers `config.json`. */
  config: unknown;
  /** Where it came from, for messages. @default "config.json" */
  label?: string;
}

const LLAMA_LIKE_TYPES = [
  "llama",
  "mistral",
  "mixtral",
  "qwen2",
  "qwen3",
  "gemma",
  "gemma2",
  "gemma3_text",
  "olmo",
  "olmo2",
  "granite",
  "phi3",
] as const;
const BERT_LIKE_TYPES = ["bert", "roberta", "xlm-roberta"] as const;

/** The `model_type` values {@link baseShapesFromConfig} understands. */
export const SUPPORTED_MODEL_TYPES = [...LLAMA_LIKE_TYPES, "gpt2", ...BERT_LIKE_TYPES] as const;

const LLAMA_LIKE = new Set<string>(LLAMA_LIKE_TYPES);
const BERT_LIKE = new Set<string>(BERT_LIKE_TYPES);

/**
 * Most modules a config may describe (layers x modules per layer). The largest supported models have a
 * few thousand; the cap keeps a hostile config.json (`"num_hidden_layers": 1e15`) from taking unbounded
 * time and memory.
 */
export const MAX_CONFIG_MODULES = 100_000;

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * Module shapes of a transformers model from its `config.json` alone (no weights read): Llama-style
 * decoders (llama, mistral, mixtral, qwen2, qwen3, gemma, gemma2, gemma3_text, olmo, olmo2, granite),
 * Phi-3 (fused qkv_proj / gate_up_proj), GPT-2 (Conv1D) and BERT/RoBERTa encoders. Paths are those of the
 * usual task model (`model.layers.0.self_attn.q_proj`, `transformer.h.0.attn.c_attn`, `encoder.layer.0...`);
 * the importer matches them to adapter paths by dot-suffix, so prefixes such as `bert.` do not matter.
 * Throws `PEFT_BASE_UNSUPPORTED` for another model_type, `PEFT_CONFIG_INVALID` for missing fields.
 */
export function baseShapesFromConfig(params: BaseShapesFromConfigParams): BaseShapes {
  const label = params.label ?? "config.json";
  const c = params.config;
  if (!isObj(c))
    throw new VeraError(PeftErrorCode.PEFT_CONFIG_INVALID, `${label} is not a JSON object`, { path: label });
  const modelType = c["model_type"];
  if (typeof modelType !== "string")
    throw new VeraError(
      PeftErrorCode.PEFT_BASE_UNSUPPORTED,
      `${label} has no model_type; pass the weights (model.safetensors) or an ONNX model as the base instead`,
      {
        path: `${label}/model_type`,
        expected: SUPPORTED_MODEL_TYPES.join("|"),
      },
    );
  const int = (key: string, fallback?: number): number => {
    const v = c[key];
    if (v === undefined || v === null) {
      if (fallback !== undefined) return fallback;
      throw new VeraError(PeftErrorCode.PEFT_CONFIG_INVALID, `${label} (${modelType}) needs "${key}"`, {
        path: `${label}/${key}`,
        expected: "a positive integer",
      });
    }
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 1)
      throw new VeraError(PeftErrorCode.PEFT_CONFIG_INVALID, `${label}: "${key}" must be a positive integer`, {
        path: `${label}/${key}`,
        expected: "a positive integer",
        received: v,
      });
    return v;
  };
  const archs = Array.isArray(c["architectures"])
    ? (c["architectures"] as unknown[]).filter((x): x is string => typeof x === "string")
    : [];
  const arch = archs[0] ?? "";
  const numLabels = (): number =>
    isObj(c["id2label"]) ? Object.keys(c["id2label"] as object).length : int("num_labels", 2);
  const modules: BaseModule[] = [];
  const bound = (layers: number, perLayer: number, key: string): void => {
    if (layers * perLayer > MAX_CONFIG_MODULES)
      throw new VeraError(
        PeftErrorCode.PEFT_CONFIG_INVALID,
        `${label}: "${key}" = ${layers} describes ${layers * perLayer} modules, more than ${MAX_CONFIG_MODULES}`,
        { path: `${label}/${key}`, expected: `<= ${Math.floor(MAX_CONFIG_MODULES / perLayer)}`, received: layers },
      );
  };
  const add = (path: string, inFeatures: number, outFeatures: number, layout: Layout = "linear") =>
    modules.push({ path, shapes: [{ inFeatures, outFeatures, layout }] });

  if (LLAMA_LIKE.has(modelType)) {
    const H = int("hidden_size");
    const L = int("num_hidden_layers");
    const nH = int("num_attention_heads");
    const nKV = int("num_key_value_heads", nH);
    const hd = int("head_dim", Math.floor(H / nH));
    const I = int("intermediate_size");
    bound(L, modelType === "mixtral" ? 2 + 3 * int("num_local_experts") : 7, "num_hidden_layers");
    for (let i = 0; i < L; i++) {
      const p = `model.layers.${i}`;
      if (modelType === "phi3") {
        add(`${p}.self_attn.qkv_proj`, H, nH * hd + 2 * nKV * hd);
        add(`${p}.mlp.gate_up_proj`, H, 2 * I);
      } else {
        add(`${p}.self_attn.q_proj`, H, nH * hd);
        add(`${p}.self_attn.k_proj`, H, nKV * hd);
        add(`${p}.self_attn.v_proj`, H, nKV * hd);
      }
      add(`${p}.self_attn.o_proj`, nH * hd, H);
      if (modelType === "mixtral") {
        const E = int("num_local_experts");
        add(`${p}.block_sparse_moe.gate`, H, E);
        for (let e = 0; e < E; e++) {
          add(`${p}.block_sparse_moe.experts.${e}.w1`, H, I);
          add(`${p}.block_sparse_moe.experts.${e}.w2`, I, H);
          add(`${p}.block_sparse_moe.experts.${e}.w3`, H, I);
        }
      } else {
        if (modelType !== "phi3") {
          add(`${p}.mlp.gate_proj`, H, I);
          add(`${p}.mlp.up_proj`, H, I);
        }
        add(`${p}.mlp.down_proj`, I, H);
      }
    }
    if (/ForSequenceClassification$/.test(arch)) add("score", H, numLabels());
    else add("lm_head", H, int("vocab_size"));
    return { source: "config", description: `${label} (${modelType}${arch ? `, ${arch}` : ""})`, modules };
  }
  if (modelType === "gpt2") {
    const H = int("n_embd");
    const L = int("n_layer");
    const inner = int("n_inner", 4 * H);
    bound(L, 4, "n_layer");
    for (let i = 0; i < L; i++) {
      const p = `transformer.h.${i}`;
      add(`${p}.attn.c_attn`, H, 3 * H, "conv1d");
      add(`${p}.attn.c_proj`, H, H, "conv1d");
      add(`${p}.mlp.c_fc`, H, inner, "conv1d");
      add(`${p}.mlp.c_proj`, inner, H, "conv1d");
    }
    if (/ForSequenceClassification$/.test(arch)) add("score", H, numLabels());
    else add("lm_head", H, int("vocab_size"));
    return { source: "config", description: `${label} (${modelType}${arch ? `, ${arch}` : ""})`, modules };
  }
  if (BERT_LIKE.has(modelType)) {
    const H = int("hidden_size");
    const L = int("num_hidden_layers");
    const I = int("intermediate_size");
    bound(L, 6, "num_hidden_layers");
    for (let i = 0; i < L; i++) {
      const p = `encoder.layer.${i}`;
      add(`${p}.attention.self.query`, H, H);
      add(`${p}.attention.self.key`, H, H);
      add(`${p}.attention.self.value`, H, H);
      add(`${p}.attention.output.dense`, H, H);
      add(`${p}.intermediate.dense`, H, I);
      add(`${p}.output.dense`, I, H);
    }
    add("pooler.dense", H, H);
    if (/ForSequenceClassification$/.test(arch)) {
      if (modelType === "bert") add("classifier", H, numLabels());
      else {
        add("classifier.dense", H, H);
        add("classifier.out_proj", H, numLabels());
      }
    }
    return { source: "config", description: `${label} (${modelType}${arch ? `, ${arch}` : ""})`, modules };
  }
  throw new VeraError(
    PeftErrorCode.PEFT_BASE_UNSUPPORTED,
    `${label}: model_type "${modelType}" is not one verakit can size from config.json; pass the weights (model.safetensors or its index) or an ONNX model as the base`,
    {
      path: `${label}/model_type`,
      expected: SUPPORTED_MODEL_TYPES.join("|"),
      received: modelType,
    },
  );
}

/**
 * Module shapes proven from a PEFT VeRA adapter alone, without the base model. PEFT stores no in_features:
 * per module it stores vera_lambda_b (length out_features) and vera_lambda_d (length r), and, with
 * save_projection, vera_A (r x max_in) and vera_B (max_out x r), where max_in / max_out are the largest
 * in_features / out_features over ALL targeted layers. So out_features is always known, and in_features
 * only where something pins it down. Each rule below says what it proves and why; when none applies the
 * answer is "not certain" with the reason, and the caller asks for the base model.
 * @internal
 */
import type { PyObject } from "./py-json.js";

/** What is known of one adapted module before its in_features are. */
export interface AdapterModuleOutline {
  /** Module path without PEFT's `base_model.model.` prefix. */
  name: string;
  /** Length of vera_lambda_b. */
  outFeatures: number;
}

/** Parameters of {@link inferInFeatures}. */
export interface InferInFeaturesParams {
  /** The parsed adapter_config.json. */
  config: PyObject;
  /** Every adapted module (sorted by name). */
  modules: AdapterModuleOutline[];
  /** Columns of the stored vera_A (max_in); undefined when the file holds no projections. */
  storedMaxIn?: number;
}

/** The answer of {@link inferInFeatures}. */
export type InferInFeaturesResult =
  | {
      ok: true;
      /** in_features of every module, in the order given. */
      inFeatures: number[];
      /** How they were proven, for people (the import report's dimension source). */
      reason: string;
      /** The transformers class the config names, when that was part of the proof. */
      architecture?: string;
    }
  | { ok: false; reason: string };

/**
 * transformers decoder classes in which the named modules are `nn.Linear(config.hidden_size, ...)`: the
 * attention's q/k/v projections and the MLP's gate/up projections read the residual stream, whose width is
 * hidden_size. Their outputs differ (heads x head_dim, kv_heads x head_dim, intermediate_size), and the
 * modules NOT listed read something else (o_proj: heads x head_dim, down_proj: intermediate_size), so they
 * are never inferred.
 */
const HIDDEN_IN_MODULES: ReadonlyArray<{ classes: RegExp; library: RegExp; modules: RegExp[] }> = [
  {
    classes: /^(Llama|Mistral|Qwen2|Qwen3|Gemma|Gemma2)For[A-Za-z]+$/,
    library: /^transformers\.models\.(llama|mistral|qwen2|qwen3|gemma|gemma2)\.modeling_\1$/,
    modules: [/(^|\.)layers\.[0-9]+\.self_attn\.[qkv]_proj$/, /(^|\.)layers\.[0-9]+\.mlp\.(gate|up)_proj$/],
  },
  {
    // Phi-3 fuses q/k/v into qkv_proj and gate/up into gate_up_proj; both read hidden_size
    classes: /^Phi3For[A-Za-z]+$/,
    library: /^transformers\.models\.phi3\.modeling_phi3$/,
    modules: [/(^|\.)layers\.[0-9]+\.self_attn\.qkv_proj$/, /(^|\.)layers\.[0-9]+\.mlp\.gate_up_proj$/],
  },
];

/**
 * The transformers class the config names, with certainty: PEFT writes `auto_mapping.base_model_class`
 * (with `parent_library`, the module that defines it) when the adapter has no task_type. A class of that
 * name defined outside transformers is another model, so a parent_library that is not transformers' own
 * module for the class makes it uncertain. `base_model_name_or_path` names a repository, not a class, and
 * is not used.
 */
function namedArchitecture(config: PyObject): { cls: string; rule: (typeof HIDDEN_IN_MODULES)[number] } | string {
  const am = config.get("auto_mapping");
  const cls = am instanceof Map ? am.get("base_model_class") : undefined;
  if (typeof cls !== "string")
    return "adapter_config.json names no model class (auto_mapping.base_model_class, written by PEFT when task_type is null)";
  const rule = HIDDEN_IN_MODULES.find((r) => r.classes.test(cls));
  if (!rule) return `the model class ${cls} is not one whose module sizes verakit knows`;
  const lib = (am as PyObject).get("parent_library");
  if (lib !== undefined && lib !== null && !(typeof lib === "string" && rule.library.test(lib)))
    return `the model class ${cls} comes from ${JSON.stringify(lib)}, not from transformers`;
  return { cls, rule };
}

/**
 * in_features of every module of a PEFT VeRA adapter, when the adapter proves them. Two rules:
 *
 * 1. A single module with stored projections: max_in is the largest in_features of the targeted layers,
 *    and with one layer that is its in_features.
 * 2. The config names a known transformers class (see {@link namedArchitecture}), every module is one whose
 *    in_features is hidden_size in that class, and the projections are stored. Then every in_features is
 *    the same number H, the largest of them is H, and PEFT sized vera_A's columns as that largest value:
 *    H = max_in. Without stored projections nothing in the adapter gives H (the out_features of q_proj or
 *    up_proj are other sizes in general: head_dim and intermediate_size are free in the config), so no
 *    answer.
 *
 * The caller still checks the result against vera_B (max_out must be the largest out_features).
 */
export function inferInFeatures(params: InferInFeaturesParams): InferInFeaturesResult {
  const { modules, storedMaxIn } = params;
  if (modules.length === 1 && storedMaxIn !== undefined)
    return {
      ok: true,
      inFeatures: [storedMaxIn],
      reason: "inferred: a single module, in_features = columns of vera_A",
    };
  const arch = namedArchitecture(params.config);
  if (typeof arch === "string") return { ok: false, reason: arch };
  const others = modules.filter((m) => !arch.rule.modules.some((re) => re.test(m.name)));
  if (others.length > 0)
    return {
      ok: false,
      reason:
        `in ${arch.cls}, ${others
          .slice(0, 3)
          .map((m) => m.name)
          .join(", ")}${others.length > 3 ? ` and ${others.length - 3} more` : ""} ` +
        `${others.length === 1 ? "is not a module" : "are not modules"} whose in_features is the hidden size`,
    };
  if (storedMaxIn === undefined)
    return {
      ok: false,
      reason: `every module of ${arch.cls} reads the hidden size, but the adapter does not store vera_A (save_projection false), which would give it`,
    };
  return {
    ok: true,
    inFeatures: modules.map(() => storedMaxIn),
    architecture: arch.cls,
    reason:
      `inferred without a base: adapter_config.json names ${arch.cls}, in which every adapted module ` +
      `reads the hidden size, and vera_A's ${storedMaxIn} columns are that size`,
  };
}

/**
 * Stable error codes of the PEFT converters (`importPeft`, `exportPeft`, `expandToLora`, the base-shape
 * readers and the PEFT folder edges). The string values never change once released.
 */
export const PeftErrorCode = {
  /** adapter_config.json is missing (or the folder holds no adapter). */
  PEFT_CONFIG_MISSING: "PEFT_CONFIG_MISSING",
  /** adapter_config.json is not valid JSON, not an object, or a field has the wrong type. */
  PEFT_CONFIG_INVALID: "PEFT_CONFIG_INVALID",
  /** peft_type is not "VERA" (import) or a field value is outside what PEFT accepts. */
  PEFT_NOT_VERA: "PEFT_NOT_VERA",
  /** The weights are a pickle (adapter_model.bin): refused, never unpickled. */
  PEFT_PICKLE_REFUSED: "PEFT_PICKLE_REFUSED",
  /** adapter_model.safetensors is missing. */
  PEFT_WEIGHTS_MISSING: "PEFT_WEIGHTS_MISSING",
  /** A vera_lambda_b without its vera_lambda_d (or the reverse). */
  PEFT_LAMBDA_UNPAIRED: "PEFT_LAMBDA_UNPAIRED",
  /** A vector's length disagrees with r (lambda_d) or with the module's out_features (lambda_b). */
  PEFT_VECTOR_LENGTH: "PEFT_VECTOR_LENGTH",
  /** A tensor has a dtype or rank (number of dims) PEFT never writes for that key. */
  PEFT_TENSOR_DTYPE: "PEFT_TENSOR_DTYPE",
  /** A tensor key the importer cannot place (not a lambda, projection, modules_to_save or bias tensor). */
  PEFT_TENSOR_UNEXPECTED: "PEFT_TENSOR_UNEXPECTED",
  /** vera_A / vera_B have the wrong shape (or only one of them is present). */
  PEFT_PROJECTION_SHAPE: "PEFT_PROJECTION_SHAPE",
  /** save_projection=true in the config but the file has no vera_A / vera_B. */
  PEFT_PROJECTION_MISSING: "PEFT_PROJECTION_MISSING",
  /** Exporting projections that PEFT (<= 0.20, or without save_projection) would silently regenerate differently. */
  PEFT_PROJECTION_NOT_REGENERABLE: "PEFT_PROJECTION_NOT_REGENERABLE",
  /** in_features cannot be determined without a base model (say which with --base). */
  PEFT_BASE_REQUIRED: "PEFT_BASE_REQUIRED",
  /** An adapted module is absent from the base model. */
  PEFT_BASE_MODULE_MISSING: "PEFT_BASE_MODULE_MISSING",
  /** An adapted module matches several modules of the base model. */
  PEFT_BASE_AMBIGUOUS: "PEFT_BASE_AMBIGUOUS",
  /** The base model's shapes disagree with the adapter (lambda_b length, stored projections). */
  PEFT_BASE_SHAPE: "PEFT_BASE_SHAPE",
  /** The base description is not one the readers understand (unknown model_type, not a weights file). */
  PEFT_BASE_UNSUPPORTED: "PEFT_BASE_UNSUPPORTED",
  /** A module path verakit cannot store (format module-name rules). */
  PEFT_MODULE_NAME: "PEFT_MODULE_NAME",
  /** The named adapter is not in the folder, or several are and none was chosen. */
  PEFT_ADAPTER_NOT_FOUND: "PEFT_ADAPTER_NOT_FOUND",
  /** --peft-compat is not a version string, or asks for something that version cannot load. */
  PEFT_COMPAT: "PEFT_COMPAT",
  /**
   * A string target_modules that is not a Python regular expression, or uses what cannot be matched in
   * linear time (a backreference, lookaround, a conditional, an atomic group, a possessive quantifier):
   * the message names the construct.
   */
  PEFT_TARGET_REGEX: "PEFT_TARGET_REGEX",
  /** The requested LoRA rank is not a positive integer <= r. */
  PEFT_LORA_RANK: "PEFT_LORA_RANK",
  /**
   * The adapter carries tensors besides its VeRA vectors (modules_to_save heads, trainable biases) and the output
   * cannot hold them (GGUF LoRA, vLLM/TGI/LoRAX folders, a LoRA .onnx_adapter); `dropCarried` / `--drop-carried`
   * drops them knowingly.
   */
  ADAPTER_CARRIED_TENSORS: "ADAPTER_CARRIED_TENSORS",
  /**
   * An adapter imported from PEFT's PVeRA lacks a log-variance half (of a lambda_d, or pvera_A's rows) that PVeRA's
   * folder needs: export-peft cannot write it back as PVeRA.
   */
  PEFT_PVERA_INCOMPLETE: "PEFT_PVERA_INCOMPLETE",
} as const;

/** One of {@link PeftErrorCode}'s values. */
export type PeftErrorCodeValue = (typeof PeftErrorCode)[keyof typeof PeftErrorCode];

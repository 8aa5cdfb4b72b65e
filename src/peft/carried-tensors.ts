import type { ExtraTensor, VeraAdapter } from "../format/types.js";
import { MODEL_PREFIX } from "./internal.js";
import { isPveraSamplingTensor } from "./pvera-keys.js";

/**
 * What a carried tensor is, for the paths that must apply it to a base model:
 * - `modules_to_save`: a full copy of a module PEFT trains and saves whole (a classifier head); its tensors
 *   replace the base model's parameters of the same name.
 * - `bias`: a trainable bias (`bias="vera_only"` or `"all"`); it replaces the base model's bias.
 * - `other`: anything else the adapter file holds; no path knows where it belongs.
 */
export type CarriedTensorKind = "modules_to_save" | "bias" | "other";

/** One carried tensor and the base-model parameter it replaces. */
export interface CarriedTensorTarget {
  /** The tensor as the adapter holds it (name = the PEFT key, e.g. `base_model.model.classifier.dense.weight`). */
  tensor: ExtraTensor;
  kind: CarriedTensorKind;
  /**
   * The base model's parameter name (transformers state-dict key), e.g. `classifier.dense.weight` or
   * `roberta.encoder.layer.0.attention.self.query.bias`. Empty for `other` tensors that have no
   * `base_model.model.` prefix.
   */
  param: string;
}

/** Parameters of {@link carriedTensorTargets}. */
export interface CarriedTensorTargetsParams {
  /** The adapter; its `extraTensors` are classified, `training.modules_to_save` and `training.bias` decide. */
  adapter: VeraAdapter;
}

/**
 * Classify every tensor an adapter carries besides its VeRA vectors and name the base-model parameter it
 * replaces, as PEFT applies it: PEFT saves a `modules_to_save` module's parameters as
 * `base_model.model.<module>.<param>` (older versions kept a `.modules_to_save.` segment) and a trainable
 * bias of an adapted layer as `base_model.model.<module>.base_layer.bias`. A path that cannot apply a
 * tensor must refuse it by name; no path may drop one silently. PVeRA's sampling-only halves
 * (src/peft/pvera-keys.ts) are not listed: they apply to no model in eval mode (import refuses a sampling PVeRA).
 */
export function carriedTensorTargets(params: CarriedTensorTargetsParams): CarriedTensorTarget[] {
  const { adapter } = params;
  const training = adapter.training ?? {};
  const mts = Array.isArray(training["modules_to_save"])
    ? (training["modules_to_save"] as unknown[]).filter((x): x is string => typeof x === "string")
    : [];
  const bias = typeof training["bias"] === "string" ? training["bias"] : "none";
  return (adapter.extraTensors ?? [])
    .filter((t) => !isPveraSamplingTensor(t.name))
    .map((tensor) => ({
      tensor,
      ...carriedTensorKind({ name: tensor.name, modulesToSave: mts, bias }),
    }));
}

/** Parameters of {@link carriedTensorKind}. */
export interface CarriedTensorKindParams {
  /** The PEFT key of the tensor. */
  name: string;
  /** adapter_config.json's modules_to_save. */
  modulesToSave: readonly string[];
  /** adapter_config.json's bias ("none", "all", "vera_only"). */
  bias: string;
}

/** What one carried PEFT key is and the base parameter it replaces (see {@link carriedTensorTargets}). */
export function carriedTensorKind(params: CarriedTensorKindParams): { kind: CarriedTensorKind; param: string } {
  const { name } = params;
  if (!name.startsWith(MODEL_PREFIX)) return { kind: "other", param: "" };
  const param = name
    .slice(MODEL_PREFIX.length)
    .split(".")
    .filter((s, i, all) => s !== "modules_to_save" && !(s === "base_layer" && i === all.length - 2))
    .join(".");
  if (savedByModule(param, params.modulesToSave)) return { kind: "modules_to_save", param };
  if (params.bias !== "none" && param.endsWith(".bias")) return { kind: "bias", param };
  return { kind: "other", param };
}

/**
 * PEFT wraps every module whose path ends with a modules_to_save entry, as a plain string suffix
 * (`key.endswith(target_key)` in PEFT's `_set_trainable`: "classifier" also wraps DistilBERT's
 * `pre_classifier`); the module's parameters lie below that path.
 */
function savedByModule(param: string, modulesToSave: readonly string[]): boolean {
  const parts = param.split(".");
  for (let k = 1; k < parts.length; k++) {
    const prefix = parts.slice(0, k).join(".");
    if (modulesToSave.some((m) => m !== "" && prefix.endsWith(m))) return true;
  }
  return false;
}

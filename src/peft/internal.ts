/**
 * Helpers shared by the PEFT converters.
 * @internal Never exported from the package; tests may import this file directly.
 */
import { compilePyRegex, PyRegexError, type PyRegex } from "../util/py-regex.js";
import { VeraError } from "../errors.js";
import type { VeraAdapter, VectorDtype } from "../format/types.js";
import { bf16ArrayToF32, f16ArrayToF32, f32ArrayToBf16, f32ArrayToF16 } from "../numeric/half.js";
import { asFloat32, asUint16 } from "../safetensors/parse.js";
import type { Dtype } from "../safetensors/dtypes.js";
import {
  bytesOf,
  layoutSafetensors,
  writeSafetensors,
  type SafetensorsLayout,
  type TensorSpec,
  type TensorToWrite,
} from "../safetensors/write.js";
import { PeftErrorCode } from "./error-codes.js";
import { dumpsPy, isPyInt, parsePyJson, PyJsonError, type PyJson, type PyObject } from "./py-json.js";

/** Prefix of every per-module key in a PEFT adapter file. */
export const MODEL_PREFIX = "base_model.model.";
/** Keys of the saved projections. */
export const KEY_VERA_A = "base_model.vera_A";
export const KEY_VERA_B = "base_model.vera_B";

/** Fields of VeraConfig in PEFT 0.21 (PeftConfig base fields included). */
export const VERA_CONFIG_FIELDS = new Set([
  "task_type",
  "peft_type",
  "auto_mapping",
  "peft_version",
  "base_model_name_or_path",
  "revision",
  "inference_mode",
  "r",
  "target_modules",
  "projection_prng_key",
  "save_projection",
  "vera_dropout",
  "d_initial",
  "fan_in_fan_out",
  "bias",
  "modules_to_save",
  "init_weights",
  "layers_to_transform",
  "layers_pattern",
]);
/** Fields VeraConfig had in PEFT 0.11-0.13 (which raise TypeError on any other key). */
export const VERA_CONFIG_FIELDS_0_11 = new Set([...VERA_CONFIG_FIELDS].filter((f) => f !== "peft_version"));

/** Fields of LoraConfig that PEFT 0.11-0.13 know (they raise TypeError on any other key). */
export const LORA_CONFIG_FIELDS_0_11 = new Set([
  "task_type",
  "peft_type",
  "auto_mapping",
  "base_model_name_or_path",
  "revision",
  "inference_mode",
  "r",
  "target_modules",
  "lora_alpha",
  "lora_dropout",
  "fan_in_fan_out",
  "bias",
  "use_rslora",
  "modules_to_save",
  "init_lora_weights",
  "layers_to_transform",
  "layers_pattern",
  "rank_pattern",
  "alpha_pattern",
  "megatron_config",
  "megatron_core",
  "loftq_config",
  "use_dora",
  "layer_replication",
]);

/** The PEFT version whose output verakit reproduces by default. */
export const DEFAULT_PEFT_VERSION = "0.21.0";

/** A parsed PEFT version (major, minor, patch). */
export interface PeftVersion {
  major: number;
  minor: number;
  patch: number;
  text: string;
}

/** Parse "0.13", "0.13.2", "v0.21.0", "0.22.0.dev0", "0.21.0@abc" into numbers. Throws PEFT_COMPAT. */
export function parsePeftVersion(text: string): PeftVersion {
  const m = /^v?(\d{1,4})\.(\d{1,4})(?:\.(\d{1,4}))?(?:[.+@-].*)?$/.exec(text.trim());
  if (!m)
    throw new VeraError(PeftErrorCode.PEFT_COMPAT, `"${text}" is not a PEFT version (expected e.g. 0.13 or 0.21.0)`, {
      path: "peftCompat",
      expected: "MAJOR.MINOR[.PATCH]",
      received: text,
    });
  return { major: Number(m[1]), minor: Number(m[2]), patch: Number(m[3] ?? 0), text: text.trim() };
}

/** Compare versions by (major, minor, patch). */
export function compareVersions(a: PeftVersion, b: { major: number; minor: number; patch?: number }): number {
  return a.major - b.major || a.minor - b.minor || a.patch - (b.patch ?? 0);
}

/** A tensor's name, dtype and shape (its bytes come later). */
export type { TensorSpec } from "../safetensors/write.js";

/**
 * Lay out a safetensors file as `safetensors.torch.save_file(tensors, metadata=...)` does (the one
 * writer's `order: "torch"`): the header bytes (with the 8-byte length), each tensor's absolute byte
 * offset, and the file size. No tensor bytes are allocated, so files larger than memory can be streamed.
 */
export function layoutTorchSafetensors(specs: TensorSpec[], metadata: Record<string, string>): SafetensorsLayout {
  return layoutSafetensors({ tensors: specs, metadata, order: "torch" });
}

/** Serialise tensors exactly as `safetensors.torch.save_file(tensors, metadata=...)` does. */
export function writeTorchSafetensors(tensors: TensorToWrite[], metadata: Record<string, string>): Uint8Array {
  return writeSafetensors({ tensors, metadata, order: "torch" });
}

/** Decode a 1-D or 2-D float tensor (F32/F16/BF16) to float32 values (exact). */
export function decodeFloat(bytes: Uint8Array, dtype: Dtype): Float32Array {
  if (dtype === "F32") return Float32Array.from(asFloat32(bytes));
  if (dtype === "F16") return f16ArrayToF32(asUint16(bytes));
  if (dtype === "BF16") return bf16ArrayToF32(asUint16(bytes));
  throw new Error(`decodeFloat: ${dtype}`);
}

/** Encode float32 values in a vector dtype (F16/BF16 round to nearest even; exact when the values came from that dtype). */
export function encodeFloat(v: Float32Array, dtype: VectorDtype): Uint8Array {
  if (dtype === "F32") return bytesOf(Float32Array.from(v));
  return bytesOf(dtype === "F16" ? f32ArrayToF16(v) : f32ArrayToBf16(Float32Array.from(v)));
}

/** True when two float32 arrays hold the same bit patterns. */
export function sameBits(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

/** Parse adapter_config.json text; PEFT_CONFIG_INVALID when it is not a JSON object. */
export function parseConfigText(text: string, label: string): PyObject {
  let v: PyJson;
  try {
    v = parsePyJson(text);
  } catch (e) {
    throw new VeraError(
      PeftErrorCode.PEFT_CONFIG_INVALID,
      `${label} is not valid JSON: ${(e as PyJsonError).message}`,
      { path: label, cause: e },
    );
  }
  if (!(v instanceof Map))
    throw new VeraError(PeftErrorCode.PEFT_CONFIG_INVALID, `${label} must be a JSON object`, {
      path: label,
      expected: "object",
      received: v === null ? "null" : Array.isArray(v) ? "array" : typeof v,
    });
  return v;
}

/** What verakit keeps of an imported PEFT adapter under `adapter.extra.peft`. */
export interface PeftOrigin {
  /** adapter_config.json exactly as read. */
  adapter_config: string;
  /** Name of the adapter (PEFT writes non-default adapters in a sub-folder of that name). */
  adapter_name?: string;
  /** The safetensors `__metadata__` when it was not {"format": "pt"}. */
  weights_metadata?: Record<string, string>;
  /** Per-key dtypes of lambda tensors that differ from the adapter's vectorDtype. */
  vector_dtypes?: Record<string, VectorDtype>;
  /** dtype the projections were stored in, when not F32. */
  projection_dtype?: VectorDtype;
  /**
   * PEFT's PVeRA config (adapter_config.json exactly as read) when the adapter was a PVeRA adapter; `adapter_config`
   * then holds its VeRA reading. exportPeft writes a PVeRA folder from it.
   */
  pvera_config?: string;
}

/** The PEFT origin of an adapter, when it was imported from PEFT. */
export function peftOrigin(adapter: VeraAdapter): PeftOrigin | undefined {
  const p = adapter.extra?.["peft"];
  if (typeof p !== "object" || p === null) return undefined;
  const o = p as Record<string, unknown>;
  if (typeof o["adapter_config"] !== "string") return undefined;
  return o as unknown as PeftOrigin;
}

/**
 * The target_modules regex as a linear-time matcher (Python `re.fullmatch` semantics); compiled once per pattern.
 *
 * @throws VeraError `PEFT_TARGET_REGEX` naming the construct it cannot match in linear time, or Python's syntax error.
 */
export function targetRegex(pattern: string): PyRegex {
  const cached = regexCache.get(pattern);
  if (cached) return cached;
  let rx: PyRegex;
  try {
    rx = compilePyRegex(pattern);
  } catch (e) {
    if (!(e instanceof PyRegexError)) throw e;
    const shown = pattern.length > 200 ? `${pattern.slice(0, 200)}...` : pattern;
    throw new VeraError(PeftErrorCode.PEFT_TARGET_REGEX, `target_modules ${JSON.stringify(shown)}: ${e.message}`, {
      path: "target_modules",
      expected: e.unsupported
        ? "a regular expression without backreferences, lookaround or possessive repeats"
        : "a Python regular expression",
      received: e.construct,
    });
  }
  if (regexCache.size > 64) regexCache.clear();
  regexCache.set(pattern, rx);
  return rx;
}
const regexCache = new Map<string, PyRegex>();

/**
 * Does `name` match PEFT target_modules (a list: exact or dot-suffix; a string: `re.fullmatch`, run by a
 * linear-time matcher, so no pattern can make it backtrack)? Undefined for "all-linear" and other shapes.
 *
 * @throws VeraError `PEFT_TARGET_REGEX` for a string the matcher refuses (see {@link targetRegex}).
 */
export function matchesTargets(name: string, targets: PyJson | undefined): boolean | undefined {
  if (Array.isArray(targets)) {
    return targets.some((t) => typeof t === "string" && (name === t || name.endsWith("." + t)));
  }
  if (typeof targets === "string") {
    if (targets === "all-linear") return undefined;
    return targetRegex(targets).fullmatch(name);
  }
  return undefined;
}

/** An int field of a config object (bigint), or undefined when absent/null. */
export function intField(cfg: PyObject, key: string): bigint | undefined {
  const v = cfg.get(key);
  return isPyInt(v) ? v.value : undefined;
}

export { dumpsPy };

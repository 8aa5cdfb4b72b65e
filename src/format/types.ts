import type { Dtype } from "../safetensors/dtypes.js";
import type { Arithmetic, ProjectionRounding } from "../projections/generate.js";

/** The format version this implementation writes. */
export const FORMAT_VERSION = "1.0";
/** Major version this implementation reads. */
export const FORMAT_MAJOR = 1;
/** Minor version this implementation knows fully. */
export const FORMAT_MINOR = 0;
/** Default file name of a verakit adapter. */
export const DEFAULT_FILE_NAME = "adapter.vera.safetensors";
/** The only PRNG algorithm of format 1.0. */
export const PRNG_TORCH_MT19937_KAIMING = "torch.mt19937.kaiming_uniform";
/** Prefix of carried opaque tensors. */
export const EXTRA_TENSOR_PREFIX = "__extra__.";
/** Upper bound on rank, max_in and max_out. */
export const MAX_DIM = 2 ** 24;

/** Weight layout of the adapted module: `linear` stores W as (out, in); `conv1d` as (in, out) (fan_in_fan_out). */
export type Layout = "linear" | "conv1d";
/** Storage dtype of the d and b vectors. F32 is lossless; F16/BF16 are opt-in and lossy. */
export type VectorDtype = "F32" | "F16" | "BF16";

/** One adapted module. */
export interface VeraModule {
  /** Full module path in the base model, e.g. `model.layers.0.self_attn.q_proj`. */
  name: string;
  inFeatures: number;
  outFeatures: number;
  layout: Layout;
  /** d, length rank. */
  lambdaD: Float32Array;
  /** b, length outFeatures. */
  lambdaB: Float32Array;
}

/** PRNG that regenerates the projections. */
export interface PrngSpec {
  algorithm: typeof PRNG_TORCH_MT19937_KAIMING;
  /** Any integer torch.manual_seed accepts, [-2^63, 2^64 - 1]. */
  seed: bigint;
  arithmetic: Arithmetic;
}

/** A tensor carried through unchanged (e.g. PEFT modules_to_save or bias tensors). */
export interface ExtraTensor {
  name: string;
  dtype: Dtype;
  shape: number[];
  data: Uint8Array;
}

/** A VeRA adapter in memory. */
export interface VeraAdapter {
  prng: PrngSpec;
  rank: number;
  /** Columns of A (>= every module's inFeatures). */
  maxIn: number;
  /** Rows of B (>= every module's outFeatures). */
  maxOut: number;
  /** Rounding applied to the regenerated projections. */
  projectionRounding: ProjectionRounding;
  /** The escape hatch: projections kept explicitly because they cannot be regenerated. */
  storedProjections?: { A: Float32Array; B: Float32Array };
  /** Storage dtype of the vectors. */
  vectorDtype: VectorDtype;
  /** Sorted by name on write; a read adapter has them sorted. */
  modules: VeraModule[];
  baseModel?: { id?: string; revision?: string };
  /** Informational training fields (d_initial, task_type, vera_dropout, bias, ...). */
  training?: Record<string, unknown>;
  /** Tensors carried through unchanged (stored under `__extra__.<name>`). */
  extraTensors?: ExtraTensor[];
  /** Metadata carried through unchanged (e.g. fields of an imported config). */
  extra?: Record<string, unknown>;
}

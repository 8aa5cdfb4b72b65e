/**
 * The compute-backend interface for the merge kernel:
 *   W_out = round_to_dtype(W + diag(lambdaB) * B_s * diag(lambdaD) * A_s)
 * in the weight's stored layout. Every backend is tested against the reference backend.
 */

import type { WeightDtype, WeightLayout } from "../dtypes.js";

export type { WeightDtype, WeightLayout } from "../dtypes.js";

/** One weight to merge. */
export interface MergeTask {
  /** Module path, used in errors and reports. */
  name: string;
  dtype: WeightDtype;
  layout: WeightLayout;
  outFeatures: number;
  inFeatures: number;
  rank: number;
  /** Little-endian weight bytes; the merged values are written back IN PLACE. */
  weight: Uint8Array;
  /**
   * A slice, rank x inFeatures, row-major float32. Tasks with the same inFeatures SHOULD pass the
   * same Float32Array object so a backend can keep it resident (it is the same shared matrix).
   */
  a: Float32Array;
  /** B slice, outFeatures x rank, row-major float32 (same object for equal outFeatures). */
  b: Float32Array;
  /** lambda_d, length rank. */
  lambdaD: Float32Array;
  /** lambda_b, length outFeatures. */
  lambdaB: Float32Array;
}

/** What a backend reports for one merged task. */
export interface MergeTaskResult {
  name: string;
  /** max |delta| over the weight, in float32. */
  maxAbsDelta: number;
}

/** What a backend says about where it runs (for reports and `--json` output). */
export interface BackendInfo {
  /** Stable backend name, e.g. `reference`, `ort-cpu`, `webgpu`. */
  name: string;
  /** Where it runs, in words: `cpu, 2 threads`, a GPU adapter's description, ... */
  device: string;
  /** True for software renderers (lavapipe, SwiftShader): correct, never fast. */
  software?: boolean;
  /** Backends `auto` tried first and passed over, with the reason (unavailable, software adapter, ...). */
  skipped?: Array<{ name: string; reason: string }>;
  /** What did not go as asked but did not stop the backend (a worker thread that could not start, ...). */
  warnings?: string[];
}

/** A merge kernel implementation. */
export interface ComputeBackend {
  /** Stable name used by `--backend`. */
  readonly name: string;
  /** Where it runs (optional for third-party backends). */
  readonly info?: BackendInfo;
  /**
   * Merge every task in place. Throws a VeraError with code `MERGE_OVERFLOW` naming the module when
   * a merged value is beyond the dtype's finite range (the weight is then left unchanged).
   */
  merge(tasks: MergeTask[]): Promise<MergeTaskResult[]>;
  /**
   * True when the backend merges weights held in a SharedArrayBuffer without copying them (it merges on another
   * thread): a caller that allocates the weights' buffers puts them there.
   */
  readonly sharedBuffers?: boolean;
  /** How many `merge` calls it runs at once (a caller may keep that many in flight). @default 1 */
  readonly concurrency?: number;
  /** Release resources (GPU devices, worker threads, sessions). */
  dispose?(): Promise<void>;
}

/**
 * Stable error codes of the compute backends. The string values never change once released.
 */
export const ComputeErrorCode = {
  /**
   * A merged value is beyond the weight dtype's finite range (it would round to +-Inf while the
   * original element was finite). `path` names the module; that module's weight is left unchanged.
   */
  MERGE_OVERFLOW: "MERGE_OVERFLOW",
  /** A merge task is malformed: a factor's length disagrees with the shapes, a bad dtype or layout, non-finite factors. */
  COMPUTE_TASK_INVALID: "COMPUTE_TASK_INVALID",
  /** No backend has this name. `expected` lists the known names. */
  COMPUTE_UNKNOWN_BACKEND: "COMPUTE_UNKNOWN_BACKEND",
  /** The named backend cannot run here (package not installed, no adapter, no execution provider); the message says why. */
  COMPUTE_UNAVAILABLE: "COMPUTE_UNAVAILABLE",
  /** The backend failed while running (device lost, runtime error); the message carries the underlying error. */
  COMPUTE_FAILED: "COMPUTE_FAILED",
} as const;

/** One of the {@link ComputeErrorCode} values. */
export type ComputeErrorCodeValue = (typeof ComputeErrorCode)[keyof typeof ComputeErrorCode];

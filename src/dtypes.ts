/**
 * Types shared by the pure core (onnx, merge plans, containers) and the compute backends: the
 * element types and layouts a weight can be merged in, and their sizes. A leaf: imports nothing.
 */

/** Element type of a stored weight. */
export type WeightDtype = "F32" | "F16" | "BF16";

/**
 * Memory layout of a stored weight matrix (row-major):
 * - `out_in`: shape (out, in), as torch.nn.Linear stores it;
 * - `in_out`: shape (in, out), as ONNX MatMul initializers and GPT-2 Conv1D store it.
 */
export type WeightLayout = "out_in" | "in_out";

/** Bytes per element of each weight dtype. */
export const WEIGHT_DTYPE_BYTES: Readonly<Record<WeightDtype, number>> = { F32: 4, F16: 2, BF16: 2 };

/** Bytes per element of a weight dtype. */
export function weightDtypeSize(dtype: WeightDtype): number {
  return WEIGHT_DTYPE_BYTES[dtype];
}

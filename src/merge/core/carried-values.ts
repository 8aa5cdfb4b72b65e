/**
 * The stored bytes a carried tensor (a modules_to_save parameter, a trainable bias) takes in a model:
 * its values converted to the model's dtype (round to nearest even, as torch's `.to()` does) and, for a
 * weight the model stores transposed, transposed. Pure.
 */
import type { WeightDtype } from "../../dtypes.js";
import { VeraError } from "../../errors.js";
import type { ExtraTensor } from "../../format/types.js";
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from "../../numeric/half.js";
import type { CarriedTensorTarget } from "../../peft/carried-tensors.js";
import { MergeErrorCode } from "../error-codes.js";

/** Parameters of {@link carriedValues}. */
export interface CarriedValuesParams {
  /** The adapter's tensor (F32, F16 or BF16). */
  tensor: ExtraTensor;
  /** The model tensor's dtype. */
  dtype: WeightDtype;
  /** The model stores the 2-D tensor transposed (ONNX MatMul's (in, out) for a Linear weight). @default false */
  transpose?: boolean;
}

/** The adapter tensor's values as float32 numbers (exact for F32, F16 and BF16). */
function valuesOf(t: ExtraTensor): Float32Array {
  const n = t.shape.reduce((a, b) => a * b, 1);
  const dv = new DataView(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  const out = new Float32Array(n);
  const size = t.dtype === "F32" ? 4 : 2;
  if ((t.dtype !== "F32" && t.dtype !== "F16" && t.dtype !== "BF16") || t.data.byteLength !== n * size)
    throw new VeraError(
      MergeErrorCode.MERGE_CARRIED_TENSOR,
      `adapter tensor ${JSON.stringify(t.name)} is ${t.dtype} with ${t.data.byteLength} bytes for shape [${t.shape.join(", ")}]; only F32, F16 and BF16 tensors can replace a model's`,
      { path: t.name, expected: "F32 | F16 | BF16", received: t.dtype },
    );
  for (let i = 0; i < n; i++)
    out[i] =
      t.dtype === "F32"
        ? dv.getFloat32(i * 4, true)
        : t.dtype === "F16"
          ? f16BitsToF32(dv.getUint16(i * 2, true))
          : bf16BitsToF32(dv.getUint16(i * 2, true));
  return out;
}

/**
 * The bytes a carried tensor is stored as in the model: little-endian `dtype` values, rounded once to
 * nearest even from the adapter's values, transposed when asked.
 *
 * @throws VeraError `MERGE_CARRIED_TENSOR` when the adapter tensor is not F32/F16/BF16.
 */
export function carriedValues(params: CarriedValuesParams): Uint8Array {
  const { tensor, dtype } = params;
  let v = valuesOf(tensor);
  if (params.transpose && tensor.shape.length === 2) {
    const [r, c] = tensor.shape as [number, number];
    const t = new Float32Array(v.length);
    for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) t[j * r + i] = v[i * c + j]!;
    v = t;
  }
  const size = dtype === "F32" ? 4 : 2;
  const out = new Uint8Array(v.length * size);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < v.length; i++) {
    if (dtype === "F32") dv.setFloat32(i * 4, v[i]!, true);
    else dv.setUint16(i * 2, dtype === "F16" ? f32ToF16Bits(v[i]!) : f32ToBf16Bits(v[i]!), true);
  }
  return out;
}

/** Where a carried tensor goes in a model, as a container located it. */
export interface CarriedPlacement {
  target: CarriedTensorTarget;
  /** The model's tensor name (an untied copy's original for ONNX). */
  tensor: string;
  dtype: WeightDtype;
  /** Stored transposed against the adapter's (PyTorch) layout. */
  transposed: boolean;
  /** How the model's tensor was found. */
  matchedBy: string;
}

/** One carried tensor a container cannot place, and why. */
export interface CarriedRefusal {
  target: CarriedTensorTarget;
  reason: string;
}

/**
 * Refuse every carried tensor a container could not place, by name, before anything is written.
 *
 * @throws VeraError `MERGE_CARRIED_TENSOR` listing each tensor and its reason (issues hold one each).
 */
export function refuseCarried(refusals: readonly CarriedRefusal[], label: string): void {
  if (refusals.length === 0) return;
  const list = refusals.map((r) => `${r.target.tensor.name} (${r.reason})`);
  throw new VeraError(
    MergeErrorCode.MERGE_CARRIED_TENSOR,
    `${label}: the adapter carries ${refusals.length} tensor(s) that replace the base model's and cannot be placed in it: ${list.join("; ")}. ` +
      "Merging without them would give a model whose function differs from the adapter's",
    {
      path: refusals[0]!.target.tensor.name,
      expected: "every carried tensor placed in the model",
      received: list,
      issues: refusals.map((r) => ({
        code: MergeErrorCode.MERGE_CARRIED_TENSOR,
        message: `${r.target.tensor.name}: ${r.reason}`,
        path: r.target.tensor.name,
      })),
    },
  );
}

/** A shape as text. */
export function shapeText(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}

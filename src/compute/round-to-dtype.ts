import { f32ToBf16Bits, f32ToF16Bits, f16BitsToF32, bf16BitsToF32 } from "../numeric/half.js";
import { WEIGHT_DTYPE_BYTES, type WeightDtype } from "../dtypes.js";

/** Precision (significand bits incl. the implicit one) and exponent range of each weight dtype. */
const FORMATS: Record<WeightDtype, { p: number; emin: number; emax: number }> = {
  F32: { p: 24, emin: -126, emax: 127 },
  F16: { p: 11, emin: -14, emax: 15 },
  BF16: { p: 8, emin: -126, emax: 127 },
};

/** Largest finite value of each dtype. */
export const DTYPE_MAX: Readonly<Record<WeightDtype, number>> = {
  F32: (2 - 2 ** -23) * 2 ** 127,
  F16: 65504,
  BF16: (2 - 2 ** -7) * 2 ** 127,
};

/**
 * Smallest magnitude that rounds to infinity in each dtype (max finite + half an ulp: the tie
 * goes to the even neighbour, which is the power of two beyond the range).
 */
export const DTYPE_OVERFLOW_THRESHOLD: Readonly<Record<WeightDtype, number>> = {
  F32: 2 ** 128 - 2 ** 103,
  F16: 65520,
  BF16: 2 ** 128 - 2 ** 119,
};

/** Bytes per element of each dtype. */
export const DTYPE_BYTES: Readonly<Record<WeightDtype, number>> = WEIGHT_DTYPE_BYTES;

/**
 * Round a float64 value ONCE to the nearest value of `dtype` (IEEE round-to-nearest-even,
 * gradual underflow, overflow to +-Infinity), returned as a number. There is no intermediate
 * float32 step, so there is no double rounding (float64 -> float32 -> float16 can differ from
 * float64 -> float16 when the float32 result lands exactly on a float16 tie). NaN stays NaN.
 */
export function roundToDtype(x: number, dtype: WeightDtype): number {
  if (dtype === "F32") return Math.fround(x);
  if (!Number.isFinite(x) || x === 0) return x;
  const { p, emin, emax } = FORMATS[dtype];
  const a = Math.abs(x);
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--;
  else if (2 ** (e + 1) <= a) e++;
  const q = 2 ** (Math.max(e, emin) - p + 1); // the quantum (ulp) at this magnitude
  const n = a / q; // exact: division by a power of two
  let k = Math.floor(n);
  const frac = n - k; // exact: n has at most 53 significant bits and k < 2^(p+1)
  if (frac > 0.5 || (frac === 0.5 && k % 2 === 1)) k++;
  const v = k * q;
  const r = v > (2 - 2 ** (1 - p)) * 2 ** emax ? Infinity : v;
  return x < 0 ? -r : r;
}

/** Encode a value that is exactly representable in `dtype` as its bit pattern (16 or 32 bits). */
export function encodeExact(v: number, dtype: Exclude<WeightDtype, "F32">): number {
  return dtype === "F16" ? f32ToF16Bits(v) : f32ToBf16Bits(v);
}

/** Decode a 16-bit pattern of `dtype` to its exact value. */
export function decodeHalf(bits: number, dtype: Exclude<WeightDtype, "F32">): number {
  return dtype === "F16" ? f16BitsToF32(bits) : bf16BitsToF32(bits);
}

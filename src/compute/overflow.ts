/** Overflow helpers shared by the fast backends (internal). */
import { VeraError } from "../errors.js";
import type { WeightDtype } from "../dtypes.js";
import type { MergeTask } from "./backend.js";
import { ComputeErrorCode } from "./error-codes.js";
import { decodeHalf, DTYPE_OVERFLOW_THRESHOLD } from "./round-to-dtype.js";

const rowMax = new WeakMap<Float32Array, Float64Array>();

/** max_j |A_kj| for every k, cached per A array. */
function maxAbsRows(a: Float32Array, r: number, n: number): Float64Array {
  let m = rowMax.get(a);
  if (!m || m.length !== r) {
    m = new Float64Array(r);
    for (let k = 0; k < r; k++) {
      let x = 0;
      for (let j = 0; j < n; j++) {
        const v = Math.abs(a[k * n + j]!);
        if (v > x) x = v;
      }
      m[k] = x;
    }
    rowMax.set(a, m);
  }
  return m;
}

const colMax = new WeakMap<Float32Array, Float64Array>();

/** max_i |B_ik| for every k, cached per B array (B is shared by every layer with the same out_features). */
function maxAbsCols(b: Float32Array, o: number, r: number): Float64Array {
  let m = colMax.get(b);
  if (!m || m.length !== r) {
    m = new Float64Array(r);
    for (let i = 0; i < o; i++)
      for (let k = 0; k < r; k++) {
        const v = Math.abs(b[i * r + k]!);
        if (v > m[k]!) m[k] = v;
      }
    colMax.set(b, m);
  }
  return m;
}

/**
 * An upper bound on |delta_ij| over the whole weight as any float32 backend computes it:
 * max_i |lambdaB_i| * sum_k |lambdaD_k| * max_i |B_ik| * max_j |A_kj|, widened by the float32
 * error bound. Costs O(out + r) per task once the column maxima of the shared A and B are cached.
 */
export function deltaBound(task: MergeTask): number {
  const { outFeatures: o, inFeatures: n, rank: r, a, b, lambdaB, lambdaD } = task;
  const ma = maxAbsRows(a, r, n);
  const mb = maxAbsCols(b, o, r);
  let s = 0;
  for (let k = 0; k < r; k++) s += Math.abs(lambdaD[k]!) * mb[k]! * ma[k]!;
  let lb = 0;
  for (let i = 0; i < o; i++) lb = Math.max(lb, Math.abs(lambdaB[i]!));
  const gamma = ((r + 3) * 2 ** -24) / (1 - (r + 3) * 2 ** -24);
  return s * lb * (1 + 2 * gamma) + (r + 4) * 2 ** -126;
}

/** The smallest 15-bit magnitude pattern of a 16-bit dtype whose value is >= limit (0x7fff+1 if none). */
function firstPatternAtLeast(limit: number, dtype: "F16" | "BF16"): number {
  let lo = 0;
  let hi = 0x8000;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    const v = decodeHalf(mid, dtype);
    if (v >= limit || Number.isNaN(v)) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/**
 * For a 16-bit dtype: the smallest magnitude bit pattern (sign cleared) at which an element could
 * overflow once |delta| <= bound. Every element whose `bits & 0x7fff` is below it is safe; NaN and
 * Inf patterns are never below it.
 */
export function riskyPattern(dtype: "F16" | "BF16", bound: number): number {
  const limit = DTYPE_OVERFLOW_THRESHOLD[dtype] * (1 - 2 ** -20) - bound;
  return limit > 0 ? firstPatternAtLeast(limit, dtype) : 0;
}

/**
 * True when no element of the weight can overflow once |delta| <= bound (all |W| + bound stay
 * below the dtype's overflow threshold, with a margin for float32 rounding). A NaN anywhere makes
 * it false. Read-only scan in JavaScript.
 */
export function provablyNoOverflow(task: MergeTask, bound: number): boolean {
  const limit = DTYPE_OVERFLOW_THRESHOLD[task.dtype] * (1 - 2 ** -20) - bound;
  if (!(limit > 0)) return false;
  const w = task.weight;
  const count = task.outFeatures * task.inFeatures;
  if (task.dtype === "F32") {
    const v =
      w.byteOffset % 4 === 0 ? new Float32Array(w.buffer, w.byteOffset, count) : new Float32Array(w.slice().buffer);
    for (let i = 0; i < count; i++) if (!(Math.abs(v[i]!) < limit)) return false;
    return true;
  }
  const first = firstPatternAtLeast(limit, task.dtype);
  const v = w.byteOffset % 2 === 0 ? new Uint16Array(w.buffer, w.byteOffset, count) : new Uint16Array(w.slice().buffer);
  for (let i = 0; i < count; i++) if ((v[i]! & 0x7fff) >= first) return false;
  return true;
}

/** Index (memory order) of the first element that was finite in `before` and is not in `after`, or -1. */
export function findOverflow(dtype: WeightDtype, before: Uint8Array, after: Uint8Array): number {
  const b = new DataView(before.buffer, before.byteOffset, before.byteLength);
  const a = new DataView(after.buffer, after.byteOffset, after.byteLength);
  if (dtype === "F32") {
    for (let i = 0; i < before.byteLength / 4; i++) {
      if (Number.isFinite(b.getFloat32(i * 4, true)) && !Number.isFinite(a.getFloat32(i * 4, true))) return i;
    }
    return -1;
  }
  const inf = dtype === "F16" ? 0x7c00 : 0x7f80;
  for (let i = 0; i < before.byteLength / 2; i++) {
    if ((b.getUint16(i * 2, true) & inf) !== inf && (a.getUint16(i * 2, true) & inf) === inf) return i;
  }
  return -1;
}

/** The `MERGE_OVERFLOW` error for element `index` (memory order) of a task. */
export function overflowError(task: MergeTask, index: number): VeraError {
  const minor = task.layout === "out_in" ? task.inFeatures : task.outFeatures;
  const [row, col] =
    task.layout === "out_in" ? [Math.floor(index / minor), index % minor] : [index % minor, Math.floor(index / minor)];
  return new VeraError(
    ComputeErrorCode.MERGE_OVERFLOW,
    `merging ${JSON.stringify(task.name)} overflows ${task.dtype} at element [${row}, ${col}] (out, in): the merged value is beyond the largest finite value; the weight was left unchanged`,
    { path: task.name, expected: `finite ${task.dtype} values`, received: "+-Infinity" },
  );
}

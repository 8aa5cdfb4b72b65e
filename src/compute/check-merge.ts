import type { MergeTask } from "./backend.js";
import { decodeHalf, roundToDtype } from "./round-to-dtype.js";

/** Params of {@link checkMerge}. */
export interface CheckMergeParams {
  /** The task as it was merged (its `weight` now holds the backend's result). */
  task: MergeTask;
  /** The weight bytes before the merge. */
  original: Uint8Array;
  /**
   * Extra relative slack in units of float32 epsilon (2^-23), on top of the derived bound; 0 holds
   * a backend to the bound exactly.
   * @default 0
   */
  slackUlps?: number;
}

/** One element outside the allowed interval. */
export interface MergeMismatch {
  /** Output feature index. */
  row: number;
  /** Input feature index. */
  col: number;
  /** The value the backend produced. */
  received: number;
  /** The reference value (float64 sum, rounded once). */
  reference: number;
  /** The allowed interval [lo, hi] (values of the dtype). */
  allowed: [number, number];
}

/** What {@link checkMerge} found. */
export interface CheckMergeResult {
  ok: boolean;
  /** Elements outside the allowed interval (at most 10 listed). */
  mismatches: MergeMismatch[];
  /** How many elements are outside the allowed interval. */
  mismatchCount: number;
  /** How many elements differ from the reference at all (allowed by the bound or not). */
  differCount: number;
}

const U = 2 ** -24; // unit roundoff of float32
const TINY = 2 ** -126; // smallest normal float32: what flush-to-zero can lose per operation

/**
 * Check a backend's merged weight against the reference definition, with the tolerance every
 * non-reference backend is held to. The bound is derived, not tuned:
 *
 * A backend computing in float32 (any summation order, with or without FMA, folding lambdaB and
 * lambdaD into either factor) gets, for element (i, j) with S_ij = sum_k |lambdaB_i B_ik lambdaD_k A_kj|
 * and exact value y_ij = W_ij + delta_ij,
 *
 *   |y32_ij - y_ij| <= E_ij = gamma(r + 3) * S_ij + u * (|W_ij| + |delta_ij| + gamma(r + 3) * S_ij) + (r + 4) * 2^-126
 *
 * (gamma(n) = n u / (1 - n u), u = 2^-24: the dot product of length r plus two folding products,
 * then one rounding of the sum to float32; the last term allows flush-to-zero of float32
 * subnormals, which WGSL permits). Rounding is monotonic, so the backend's final value must lie in
 * [round_dtype(y - E), round_dtype(y + E)]: at most one ulp of the dtype away from the reference,
 * and only where the exact value sits within E of a rounding boundary. This also covers double
 * rounding (float32 first, then float16/bfloat16).
 */
export function checkMerge(params: CheckMergeParams): CheckMergeResult {
  const { task, original, slackUlps = 0 } = params;
  const { outFeatures: o, inFeatures: n, rank: r, dtype, layout, a, b, lambdaB, lambdaD } = task;
  const gamma = ((r + 3) * U) / (1 - (r + 3) * U);
  const before = new DataView(original.buffer, original.byteOffset, original.byteLength);
  const after = new DataView(task.weight.buffer, task.weight.byteOffset, task.weight.byteLength);
  const read = (dv: DataView, idx: number): number =>
    dtype === "F32" ? dv.getFloat32(idx * 4, true) : decodeHalf(dv.getUint16(idx * 2, true), dtype);
  const mismatches: MergeMismatch[] = [];
  let mismatchCount = 0;
  let differCount = 0;
  const acc = new Float64Array(n);
  const absAcc = new Float64Array(n);
  for (let i = 0; i < o; i++) {
    acc.fill(0);
    absAcc.fill(0);
    for (let k = 0; k < r; k++) {
      const c = b[i * r + k]! * lambdaD[k]!;
      if (c === 0) continue;
      for (let j = 0; j < n; j++) {
        const p = c * a[k * n + j]!;
        acc[j]! += p;
        absAcc[j]! += Math.abs(p);
      }
    }
    const lb = lambdaB[i]!;
    for (let j = 0; j < n; j++) {
      const idx = layout === "out_in" ? i * n + j : j * o + i;
      const w = read(before, idx);
      const got = read(after, idx);
      const delta = lb * acc[j]!;
      const s = Math.abs(lb) * absAcc[j]!;
      const y = w + delta;
      const ref = roundToDtype(y, dtype);
      if (Number.isNaN(w) || !Number.isFinite(w)) {
        if (!Object.is(got, ref) && !(Number.isNaN(got) && Number.isNaN(ref))) {
          mismatchCount++;
          differCount++;
          if (mismatches.length < 10)
            mismatches.push({ row: i, col: j, received: got, reference: ref, allowed: [ref, ref] });
        }
        continue;
      }
      const e =
        gamma * s + U * (Math.abs(w) + Math.abs(delta) + gamma * s) + (r + 4) * TINY + slackUlps * 2 * U * Math.abs(y);
      const lo = roundToDtype(y - e, dtype);
      const hi = roundToDtype(y + e, dtype);
      if (got !== ref) differCount++;
      if (!(got >= lo && got <= hi)) {
        mismatchCount++;
        if (mismatches.length < 10)
          mismatches.push({ row: i, col: j, received: got, reference: ref, allowed: [lo, hi] });
      }
    }
  }
  return { ok: mismatchCount === 0, mismatches, mismatchCount, differCount };
}

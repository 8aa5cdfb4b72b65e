import { VeraError } from "../errors.js";
import type { ComputeBackend, MergeTask, MergeTaskResult } from "./backend.js";
import { ComputeErrorCode } from "./error-codes.js";
import { decodeHalf, encodeExact, roundToDtype } from "./round-to-dtype.js";
import { validateMergeTasks } from "./validate-tasks.js";

/**
 * What the reference computes, exactly, for every element (i = output feature, j = input feature):
 *
 *   delta_ij = lambdaB_i * sum_k (B_ik * lambdaD_k) * A_kj     (products and the sum in float64)
 *   W'_ij    = round_dtype(W_ij + delta_ij)                     (the sum in float64, rounded ONCE)
 *
 * `round_dtype` is IEEE round-to-nearest-even straight from float64 to the weight's dtype (no
 * float32 step, so no double rounding for F16/BF16). B_ik * lambdaD_k is exact in float64 (two
 * 24-bit significands); the other float64 roundings are ~2^-53 relative, far below any dtype's
 * half-ulp, so the result is the correctly rounded merge except in astronomically rare ties.
 *
 * Overflow: when W_ij is finite and W'_ij is +-Infinity the task fails with `MERGE_OVERFLOW`
 * (path = module name) and that weight is left unchanged. Tasks before it stay merged.
 * `maxAbsDelta` is max |delta_ij| rounded to float32.
 */
export function mergeTaskReference(task: MergeTask): MergeTaskResult {
  const { outFeatures: o, inFeatures: n, rank: r, dtype, layout, a, b, lambdaB, lambdaD } = task;
  const src = new DataView(task.weight.buffer, task.weight.byteOffset, task.weight.byteLength);
  const out = new Uint8Array(task.weight.byteLength);
  const dst = new DataView(out.buffer);
  const acc = new Float64Array(n);
  let maxAbs = 0;
  for (let i = 0; i < o; i++) {
    acc.fill(0);
    for (let k = 0; k < r; k++) {
      const c = b[i * r + k]! * lambdaD[k]!;
      if (c === 0) continue;
      const row = k * n;
      for (let j = 0; j < n; j++) acc[j]! += c * a[row + j]!;
    }
    const lb = lambdaB[i]!;
    for (let j = 0; j < n; j++) {
      const delta = lb * acc[j]!;
      const ad = Math.abs(delta);
      if (ad > maxAbs) maxAbs = ad;
      const idx = layout === "out_in" ? i * n + j : j * o + i;
      let w: number;
      if (dtype === "F32") w = src.getFloat32(idx * 4, true);
      else w = decodeHalf(src.getUint16(idx * 2, true), dtype);
      const y = roundToDtype(w + delta, dtype);
      if (Number.isFinite(w) && !Number.isFinite(y)) {
        throw new VeraError(
          ComputeErrorCode.MERGE_OVERFLOW,
          `merging ${JSON.stringify(task.name)} overflows ${dtype} at element [${i}, ${j}] (out, in): ${w} + ${delta} is beyond the largest finite value; the weight was left unchanged`,
          { path: task.name, expected: `a finite ${dtype} value`, received: w + delta },
        );
      }
      if (dtype === "F32") dst.setFloat32(idx * 4, y, true);
      else dst.setUint16(idx * 2, encodeExact(y, dtype), true);
    }
  }
  task.weight.set(out);
  return { name: task.name, maxAbsDelta: Math.fround(maxAbs) };
}

/**
 * The pure-TypeScript reference backend: float64 accumulation, one rounding (see
 * {@link mergeTaskReference}). Runs everywhere, slowly (about 0.3-1 GFLOP/s); every other backend is
 * tested against it.
 */
export function createReferenceBackend(): ComputeBackend {
  return {
    name: "reference",
    info: { name: "reference", device: "cpu (TypeScript, float64, 1 thread)" },
    async merge(tasks: MergeTask[]): Promise<MergeTaskResult[]> {
      validateMergeTasks(tasks);
      return tasks.map((t) => mergeTaskReference(t));
    },
  };
}

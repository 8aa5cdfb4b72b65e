import { VeraError } from "../errors.js";
import type { MergeTask } from "./backend.js";
import { ComputeErrorCode } from "./error-codes.js";
import { DTYPE_BYTES } from "./round-to-dtype.js";

const checkedFactors = new WeakSet<Float32Array>();

function fail(task: MergeTask, field: string, expected: unknown, received: unknown, what: string): never {
  throw new VeraError(ComputeErrorCode.COMPUTE_TASK_INVALID, `merge task ${JSON.stringify(task.name)}: ${what}`, {
    path: `${task.name}/${field}`,
    expected,
    received,
  });
}

function checkFinite(task: MergeTask, field: string, v: Float32Array, cache: boolean): void {
  if (cache && checkedFactors.has(v)) return;
  for (let i = 0; i < v.length; i++) {
    if (!Number.isFinite(v[i]!))
      fail(task, `${field}[${i}]`, "a finite value", v[i], `${field} holds a non-finite value`);
  }
  if (cache) checkedFactors.add(v);
}

/**
 * Check a list of merge tasks before any backend touches a weight: dtype and layout known, sizes
 * positive integers, every factor of the right length and finite, weight byte length matching.
 * Throws a {@link VeraError} `COMPUTE_TASK_INVALID` naming the task and field. Shared factors
 * (`a`, `b`) are scanned once per array object.
 */
export function validateMergeTasks(tasks: readonly MergeTask[]): void {
  for (const t of tasks) {
    if (t.dtype !== "F32" && t.dtype !== "F16" && t.dtype !== "BF16")
      fail(t, "dtype", "F32, F16 or BF16", t.dtype, "unknown dtype");
    if (t.layout !== "out_in" && t.layout !== "in_out")
      fail(t, "layout", "out_in or in_out", t.layout, "unknown layout");
    for (const k of ["outFeatures", "inFeatures", "rank"] as const) {
      const v = t[k];
      if (!Number.isSafeInteger(v) || v < 1) fail(t, k, "a positive integer", v, `${k} must be a positive integer`);
    }
    const { outFeatures: o, inFeatures: i, rank: r } = t;
    const wantBytes = o * i * DTYPE_BYTES[t.dtype];
    if (!(t.weight instanceof Uint8Array) || t.weight.byteLength !== wantBytes)
      fail(
        t,
        "weight",
        `${wantBytes} bytes (${o} x ${i} ${t.dtype})`,
        t.weight?.byteLength,
        "weight size disagrees with the shape",
      );
    const lens: Array<[keyof MergeTask & ("a" | "b" | "lambdaD" | "lambdaB"), number]> = [
      ["a", r * i],
      ["b", o * r],
      ["lambdaD", r],
      ["lambdaB", o],
    ];
    for (const [k, n] of lens) {
      const v = t[k];
      if (!(v instanceof Float32Array) || v.length !== n)
        fail(
          t,
          k,
          `Float32Array of length ${n}`,
          v instanceof Float32Array ? v.length : typeof v,
          `${k} has the wrong length`,
        );
      checkFinite(t, k, v, k === "a" || k === "b");
    }
  }
}

/** The conformance checks every non-reference backend must pass (used by the backend test files). */
import { expect } from "vitest";
import type { ComputeBackend, MergeTask, WeightDtype, WeightLayout } from "../src/compute/backend.js";
import { checkMerge } from "../src/compute/check-merge.js";
import { mergeTaskReference } from "../src/compute/reference-backend.js";
import { isVeraError } from "../src/errors.js";
import { f32ToBf16Bits, f32ToF16Bits } from "../src/numeric/half.js";
import { cloneTask, randomF32, randomTask, rng, SHAPES } from "./compute-helpers.js";

/** Every shape in one batched merge call (shared A per in_features), checked against the reference bound. */
export async function expectMatchesReference(
  be: ComputeBackend,
  dtype: WeightDtype,
  layout: WeightLayout,
  seed0 = 1,
): Promise<void> {
  const sharedA = new Map<string, Float32Array>();
  const tasks: MergeTask[] = SHAPES.map(([o, n, r], i) => {
    const key = `${r}x${n}`;
    const t = randomTask({
      out: o,
      inF: n,
      rank: r,
      dtype,
      layout,
      seed: seed0 + i,
      ...(sharedA.has(key) ? { a: sharedA.get(key)! } : {}),
      byteOffset: i % 2 === 1 ? (dtype === "F32" ? 4 : 2) : 0,
    });
    sharedA.set(key, t.a);
    return t;
  });
  // one odd byte offset: an unaligned weight must work too
  tasks.push(randomTask({ out: 5, inF: 9, rank: 2, dtype, layout, seed: seed0 + 100, byteOffset: 1 }));
  const originals = tasks.map((t) => t.weight.slice());
  const refs = tasks.map((t) => mergeTaskReference(cloneTask(t)));
  const results = await be.merge(tasks);
  expect(results.map((r) => r.name)).toEqual(tasks.map((t) => t.name));
  tasks.forEach((t, i) => {
    const c = checkMerge({ task: t, original: originals[i]! });
    expect(c.mismatches, `${be.name} ${dtype} ${layout} ${t.outFeatures}x${t.inFeatures} r${t.rank}`).toEqual([]);
    const ref = refs[i]!.maxAbsDelta;
    expect(Math.abs(results[i]!.maxAbsDelta - ref)).toBeLessThanOrEqual(1e-5 * ref + 1e-30);
  });
}

/** A weight that overflows must raise MERGE_OVERFLOW naming the module and stay byte-identical. */
export async function expectOverflowLeavesWeight(
  be: ComputeBackend,
  dtype: WeightDtype,
  layout: WeightLayout,
): Promise<void> {
  const r = rng(5);
  const o = 40,
    n = 70,
    k = 4;
  const big = dtype === "F16" ? 65000 : 3.3e38;
  const w = new Uint8Array(o * n * (dtype === "F32" ? 4 : 2));
  const dv = new DataView(w.buffer);
  for (let i = 0; i < o * n; i++) {
    const v = i === o * n - 3 ? big : r() - 0.5;
    if (dtype === "F32") dv.setFloat32(i * 4, v, true);
    else dv.setUint16(i * 2, dtype === "F16" ? f32ToF16Bits(v) : f32ToBf16Bits(v), true);
  }
  const task: MergeTask = {
    name: "layers.9.mlp.down_proj",
    dtype,
    layout,
    outFeatures: o,
    inFeatures: n,
    rank: k,
    weight: w,
    a: new Float32Array(k * n).fill(1),
    b: new Float32Array(o * k).fill(1),
    lambdaD: new Float32Array(k).fill(1),
    lambdaB: new Float32Array(o).fill(dtype === "F16" ? 1000 : 3e37),
  };
  const before = w.slice();
  const e = await be.merge([task]).catch((x: unknown) => x);
  expect(isVeraError(e) && e.code, String(e)).toBe("MERGE_OVERFLOW");
  expect((e as { path?: string }).path).toBe("layers.9.mlp.down_proj");
  expect(task.weight).toEqual(before);
}

export { randomF32 };

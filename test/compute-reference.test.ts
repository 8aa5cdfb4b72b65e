import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { isVeraError } from "../src/errors.js";
import type { MergeTask } from "../src/compute/backend.js";
import { checkMerge } from "../src/compute/check-merge.js";
import { createReferenceBackend, mergeTaskReference } from "../src/compute/reference-backend.js";
import { DTYPE_MAX, DTYPE_OVERFLOW_THRESHOLD, encodeExact, roundToDtype } from "../src/compute/round-to-dtype.js";
import { f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from "../src/numeric/half.js";
import { cloneTask, DTYPES, LAYOUTS, randomTask, rng } from "./compute-helpers.js";

const f32 = (x: number) => Math.fround(x);

describe("roundToDtype", () => {
  it("agrees with the float32 -> f16/bf16 converters on float32 inputs (one rounding either way)", () => {
    fc.assert(
      fc.property(fc.float({ noNaN: true }), (x) => {
        expect(encodeExact(roundToDtype(x, "F16"), "F16")).toBe(f32ToF16Bits(x));
        expect(encodeExact(roundToDtype(x, "BF16"), "BF16")).toBe(f32ToBf16Bits(x));
        expect(roundToDtype(x, "F32")).toBe(f32(x));
      }),
      { numRuns: 3000 },
    );
  });
  it("rounds once from float64: no double rounding through float32", () => {
    const x = 1 + 2 ** -11 + 2 ** -30; // just above the f16 tie between 1 and 1 + 2^-10
    expect(f16BitsToF32(f32ToF16Bits(f32(x)))).toBe(1); // float32 first lands on the tie, ties to even -> 1
    expect(roundToDtype(x, "F16")).toBe(1 + 2 ** -10); // the correct rounding
    const y = 1 + 2 ** -8 + 2 ** -40; // bf16 analogue
    expect(roundToDtype(y, "BF16")).toBe(1 + 2 ** -7);
  });
  it("overflows exactly at max + half an ulp, keeps ties to even, and handles subnormals", () => {
    for (const d of DTYPES) {
      const t = DTYPE_OVERFLOW_THRESHOLD[d];
      expect(roundToDtype(DTYPE_MAX[d], d)).toBe(DTYPE_MAX[d]);
      expect(roundToDtype(t, d)).toBe(Infinity);
      expect(roundToDtype(-t, d)).toBe(-Infinity);
      expect(roundToDtype(t * (1 - 2 ** -40), d)).toBe(DTYPE_MAX[d]);
    }
    expect(roundToDtype(2 ** -25, "F16")).toBe(0); // tie between 0 and the smallest subnormal -> 0 (even)
    expect(roundToDtype(1.5 * 2 ** -25, "F16")).toBe(2 ** -24);
    expect(roundToDtype(3 * 2 ** -25, "F16")).toBe(2 * 2 ** -24); // tie between 1 and 2 quanta -> 2
    expect(roundToDtype(2 ** -1074, "F32")).toBe(0);
    expect(Number.isNaN(roundToDtype(NaN, "F16"))).toBe(true);
  });
});

/** A task whose every intermediate is exact in float64: small dyadic integers. */
function exactTask(
  seed: number,
  dtype: MergeTask["dtype"],
  layout: MergeTask["layout"],
): { task: MergeTask; expected: number[] } {
  const r = rng(seed);
  const int = (m: number) => Math.floor(r() * (2 * m + 1)) - m;
  const o = 1 + Math.floor(r() * 6),
    n = 1 + Math.floor(r() * 7),
    k = 1 + Math.floor(r() * 4);
  const a = Float32Array.from({ length: k * n }, () => int(8) / 8);
  const b = Float32Array.from({ length: o * k }, () => int(8) / 4);
  const ld = Float32Array.from({ length: k }, () => int(4) / 2);
  const lb = Float32Array.from({ length: o }, () => int(4) / 16);
  const eb = dtype === "F32" ? 4 : 2;
  const w = new Uint8Array(o * n * eb);
  const dv = new DataView(w.buffer);
  const logicalW: number[] = [];
  for (let i = 0; i < o * n; i++) logicalW.push(int(64) / 32 + (dtype === "F32" ? int(1000) * 2 ** -20 : 0));
  const expected = new Array<number>(o * n);
  for (let i = 0; i < o; i++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let q = 0; q < k; q++) s += b[i * k + q]! * ld[q]! * a[q * n + j]!;
      const wv = roundToDtype(logicalW[i * n + j]!, dtype);
      const idx = layout === "out_in" ? i * n + j : j * o + i;
      if (dtype === "F32") dv.setFloat32(idx * 4, wv, true);
      else dv.setUint16(idx * 2, encodeExact(wv, dtype), true);
      expected[idx] = roundToDtype(wv + lb[i]! * s, dtype);
    }
  return {
    task: {
      name: `exact.${seed}`,
      dtype,
      layout,
      outFeatures: o,
      inFeatures: n,
      rank: k,
      weight: w,
      a,
      b,
      lambdaD: ld,
      lambdaB: lb,
    },
    expected,
  };
}

describe("reference backend", () => {
  it("computes the exact merge, rounded once, in both layouts and all dtypes (exact dyadic inputs)", async () => {
    const be = createReferenceBackend();
    for (let seed = 1; seed <= 60; seed++) {
      const dtype = DTYPES[seed % 3]!;
      const layout = LAYOUTS[seed % 2]!;
      const { task, expected } = exactTask(seed, dtype, layout);
      await be.merge([task]);
      const dv = new DataView(task.weight.buffer);
      const got = expected.map((_, idx) =>
        dtype === "F32"
          ? dv.getFloat32(idx * 4, true)
          : dtype === "F16"
            ? f16BitsToF32(dv.getUint16(idx * 2, true))
            : new Float32Array(new Uint32Array([dv.getUint16(idx * 2, true) << 16]).buffer)[0]!,
      );
      expect(got, `seed ${seed} ${dtype} ${layout}`).toEqual(expected);
    }
  });
  it("gives the same logical result in out_in and in_out layouts", () => {
    const t = randomTask({ out: 7, inF: 5, rank: 3, dtype: "F32", layout: "out_in", seed: 9 });
    const tio: MergeTask = { ...t, layout: "in_out", weight: new Uint8Array(t.weight.length) };
    const src = new Float32Array(t.weight.buffer.slice(0));
    const dst = new Float32Array(tio.weight.buffer);
    for (let i = 0; i < 7; i++) for (let j = 0; j < 5; j++) dst[j * 7 + i] = src[i * 5 + j]!;
    mergeTaskReference(t);
    mergeTaskReference(tio);
    const a = new Float32Array(t.weight.buffer);
    for (let i = 0; i < 7; i++) for (let j = 0; j < 5; j++) expect(dst[j * 7 + i]).toBe(a[i * 5 + j]);
  });
  it("reports max |delta| and leaves an overflowing weight unchanged with MERGE_OVERFLOW", async () => {
    const be = createReferenceBackend();
    const task: MergeTask = {
      name: "model.layers.0.mlp.up_proj",
      dtype: "F16",
      layout: "out_in",
      outFeatures: 1,
      inFeatures: 2,
      rank: 1,
      weight: new Uint8Array(new Uint16Array([f32ToF16Bits(65000), f32ToF16Bits(1)]).buffer),
      a: new Float32Array([1, 1]),
      b: new Float32Array([1]),
      lambdaD: new Float32Array([1]),
      lambdaB: new Float32Array([600]),
    };
    const before = task.weight.slice();
    const e = await be.merge([task]).catch((x) => x);
    expect(isVeraError(e) && e.code).toBe("MERGE_OVERFLOW");
    expect(e.path).toBe("model.layers.0.mlp.up_proj");
    expect(task.weight).toEqual(before);
    task.lambdaB[0] = 0.5;
    const [res] = await be.merge([task]);
    expect(res!.maxAbsDelta).toBe(0.5);
  });
  it("rejects malformed tasks with COMPUTE_TASK_INVALID before touching any weight", async () => {
    const be = createReferenceBackend();
    const good = randomTask({ out: 3, inF: 4, rank: 2, dtype: "F32", layout: "out_in", seed: 1 });
    const bad = [
      { ...cloneTask(good), lambdaB: new Float32Array(2) },
      { ...cloneTask(good), a: new Float32Array(7) },
      { ...cloneTask(good), weight: new Uint8Array(5) },
      { ...cloneTask(good), lambdaD: new Float32Array([1, NaN]) },
      { ...cloneTask(good), rank: 0 },
      { ...cloneTask(good), dtype: "F64" as never },
    ];
    for (const t of bad) {
      const first = cloneTask(good);
      const snapshot = first.weight.slice();
      const e = await be.merge([first, t]).catch((x) => x);
      expect(isVeraError(e) && e.code).toBe("COMPUTE_TASK_INVALID");
      expect(first.weight).toEqual(snapshot);
    }
  });
});

describe("checkMerge (the tolerance other backends are held to)", () => {
  it("accepts the reference itself and rejects a result beyond the bound (2 ulps for 16-bit, 1e-4 relative for f32)", () => {
    for (const dtype of DTYPES) {
      const t = randomTask({ out: 9, inF: 11, rank: 4, dtype, layout: "out_in", seed: 3 });
      const orig = t.weight.slice();
      mergeTaskReference(t);
      expect(checkMerge({ task: t, original: orig }).ok).toBe(true);
      const dv = new DataView(t.weight.buffer, t.weight.byteOffset);
      if (dtype === "F32") dv.setFloat32(20, dv.getFloat32(20, true) * (1 + 1e-4), true);
      else dv.setUint16(10, dv.getUint16(10, true) + 2, true);
      const c = checkMerge({ task: t, original: orig });
      expect(c.ok).toBe(false);
      expect(c.mismatchCount).toBe(1);
    }
  });
});

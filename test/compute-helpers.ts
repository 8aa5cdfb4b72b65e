/** Shared helpers of the compute tests: seeded random merge tasks. */
import type { MergeTask, WeightDtype, WeightLayout } from "../src/compute/backend.js";
import { f32ToBf16Bits, f32ToF16Bits } from "../src/numeric/half.js";

/** A small deterministic PRNG (mulberry32) so failures reproduce. */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Uniform values in [-scale, scale). */
export function randomF32(n: number, rand: () => number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = (rand() * 2 - 1) * scale;
  return a;
}

/** Parameters of {@link randomTask}. */
export interface RandomTaskParams {
  out: number;
  inF: number;
  rank: number;
  dtype: WeightDtype;
  layout: WeightLayout;
  seed: number;
  /** Scale of the weight values. @default 1 */
  wScale?: number;
  /** Scale of lambda_b (the delta grows with it). @default 0.1 */
  lbScale?: number;
  /** Byte offset of the weight inside its buffer (to test unaligned weights). @default 0 */
  byteOffset?: number;
  /** Shared A to reuse (rank x inF). */
  a?: Float32Array;
}

/** A random merge task with weight values already representable in the dtype. */
export function randomTask(p: RandomTaskParams): MergeTask {
  const rand = rng(p.seed);
  const eb = p.dtype === "F32" ? 4 : 2;
  const off = p.byteOffset ?? 0;
  const buf = new Uint8Array(off + p.out * p.inF * eb);
  const w = buf.subarray(off);
  const dv = new DataView(w.buffer, w.byteOffset, w.byteLength);
  const ws = p.wScale ?? 1;
  for (let i = 0; i < p.out * p.inF; i++) {
    const v = (rand() * 2 - 1) * ws;
    if (p.dtype === "F32") dv.setFloat32(i * 4, v, true);
    else dv.setUint16(i * 2, p.dtype === "F16" ? f32ToF16Bits(v) : f32ToBf16Bits(v), true);
  }
  const bound = Math.sqrt(6 / p.inF); // kaiming-uniform-like magnitudes
  return {
    name: `layers.${p.seed}.proj`,
    dtype: p.dtype,
    layout: p.layout,
    outFeatures: p.out,
    inFeatures: p.inF,
    rank: p.rank,
    weight: w,
    a: p.a ?? randomF32(p.rank * p.inF, rand, bound),
    b: randomF32(p.out * p.rank, rand, Math.sqrt(6 / p.rank)),
    lambdaD: randomF32(p.rank, rand, 1),
    lambdaB: randomF32(p.out, rand, p.lbScale ?? 0.1),
  };
}

/** A deep copy of a task (fresh weight bytes, same factor arrays). */
export function cloneTask(t: MergeTask): MergeTask {
  return { ...t, weight: t.weight.slice() };
}

export const DTYPES: WeightDtype[] = ["F32", "F16", "BF16"];
export const LAYOUTS: WeightLayout[] = ["out_in", "in_out"];

/** Shapes every backend is checked on: odd sizes, r = 1, sizes that are not multiples of tiles or blocks. */
export const SHAPES: Array<[out: number, inF: number, rank: number]> = [
  [1, 1, 1],
  [1, 7, 1],
  [37, 53, 5],
  [64, 33, 16],
  [9, 130, 3],
  [130, 67, 20],
  [65, 129, 64],
];

import { ErrorCode, VeraError } from "../errors.js";
import { roundThroughBf16, roundThroughF16 } from "../numeric/half.js";
import { MT19937 } from "./mt19937.js";
import { WasmMT19937, wasmGeneratorAvailable } from "./wasm-generator.js";
import { seedToState } from "./seed.js";

/** How the float32 uniform is computed (see spec/FORMAT.md, PRNG registry). */
export type Arithmetic = "fused" | "separate";
/** Rounding applied to regenerated projections (PEFT with a bf16/fp16 base model). */
export type ProjectionRounding = "none" | "bf16" | "fp16";

/** Largest number of elements of one projection matrix verakit generates (2^31 - 1). */
export const MAX_PROJECTION_ELEMENTS = 2 ** 31 - 1;

/** Parameters of {@link generateProjections}. */
export interface GenerateProjectionsParams {
  /** PEFT's projection_prng_key: any integer in [-2^63, 2^64-1] (bigint, safe number or decimal string). */
  seed: bigint | number | string;
  /** VeRA rank r. */
  rank: number;
  /** Columns of A: the largest in_features over all adapted modules. */
  maxIn: number;
  /** Rows of B: the largest out_features over all adapted modules. */
  maxOut: number;
  /** @default "fused" */
  arithmetic?: Arithmetic;
  /** @default "none" */
  rounding?: ProjectionRounding;
  /**
   * Generator implementation: WebAssembly SIMD where available, else JavaScript. Both give identical bits.
   * @default "auto"
   */
  engine?: "auto" | "wasm" | "js";
  /**
   * Arrays to fill instead of allocating new ones (rank x maxIn for A, maxOut x rank for B): a fresh
   * array costs a page fault per 4 KiB on its first touch, most of the time of a generation; reusing
   * arrays takes that cost once. They are returned as `A` and `B`.
   */
  into?: { A?: Float32Array; B?: Float32Array };
}

/** The shared projections, row-major float32. */
export interface Projections {
  /** rank x maxIn */
  A: Float32Array;
  /** maxOut x rank */
  B: Float32Array;
}

/**
 * The kaiming-uniform bound PEFT uses for a matrix with `fanIn` columns:
 * sqrt(3) * (sqrt(2) / sqrt(fanIn)), computed in float64.
 */
export function kaimingBound(fanIn: number): number {
  return Math.sqrt(3) * (Math.sqrt(2) / Math.sqrt(fanIn));
}

function checkDim(name: string, v: number): void {
  if (!Number.isSafeInteger(v) || v < 1)
    throw new VeraError(ErrorCode.ARG_INVALID, `${name} must be a positive integer`, { path: name, received: v });
}

/**
 * Fill `out` (rows x cols, row-major) with kaiming-uniform draws from `gen`, exactly as
 * `torch.empty(rows, cols).uniform_(-bound, bound, generator)` on the CPU, bound from `cols`.
 */
export function kaimingUniformInto(
  gen: Pick<MT19937, "fillUniform">,
  out: Float32Array,
  cols: number,
  arithmetic: Arithmetic,
): void {
  const bound = kaimingBound(cols);
  const from = Math.fround(-bound);
  const to = Math.fround(bound);
  const span = Math.fround(to - from);
  gen.fillUniform(out, from, span, arithmetic);
}

function outputArray(given: Float32Array | undefined, n: number, name: string): Float32Array {
  if (given === undefined) return new Float32Array(n);
  if (!(given instanceof Float32Array) || given.length !== n)
    throw new VeraError(ErrorCode.ARG_INVALID, `${name} must be a Float32Array of ${n} elements`, {
      path: name,
      expected: n,
      received: given instanceof Float32Array ? given.length : typeof given,
    });
  return given;
}

/**
 * Regenerate VeRA's shared projections bit-exactly as PEFT draws them with PyTorch's CPU generator:
 * `manual_seed(seed)`, A = kaiming (rank, maxIn) drawn first, then B = kaiming (maxOut, rank).
 * With `rounding`, the values are rounded to bf16/fp16 and back, as PEFT stores them for a bf16/fp16 base.
 * With `into`, the given arrays are filled and returned.
 */
export function generateProjections(params: GenerateProjectionsParams): Projections {
  const { rank, maxIn, maxOut } = params;
  checkDim("rank", rank);
  checkDim("maxIn", maxIn);
  checkDim("maxOut", maxOut);
  if (rank * maxIn > MAX_PROJECTION_ELEMENTS || rank * maxOut > MAX_PROJECTION_ELEMENTS)
    throw new VeraError(
      ErrorCode.VERA_MAX_DIMS,
      `projections of ${rank} x ${Math.max(maxIn, maxOut)} exceed ${MAX_PROJECTION_ELEMENTS} elements`,
      {
        received: { rank, maxIn, maxOut },
      },
    );
  const arithmetic = params.arithmetic ?? "fused";
  const engine = params.engine ?? "auto";
  const seed32 = seedToState(params.seed);
  const gen =
    engine === "js" || (engine === "auto" && !wasmGeneratorAvailable()) ? new MT19937(seed32) : new WasmMT19937(seed32);
  const A = outputArray(params.into?.A, rank * maxIn, "into.A");
  const B = outputArray(params.into?.B, maxOut * rank, "into.B");
  kaimingUniformInto(gen, A, maxIn, arithmetic);
  kaimingUniformInto(gen, B, rank, arithmetic);
  const rounding = params.rounding ?? "none";
  if (rounding === "bf16") {
    roundThroughBf16(A);
    roundThroughBf16(B);
  } else if (rounding === "fp16") {
    roundThroughF16(A);
    roundThroughF16(B);
  }
  return { A, B };
}

/** Parameters of {@link sliceA}. */
export interface SliceAParams {
  rank: number;
  maxIn: number;
  /** The module's in_features (<= maxIn). */
  inFeatures: number;
}

/** A[:, :inFeatures] as a new rank x inFeatures row-major array (PEFT's `sliced_A`). */
export function sliceA(A: Float32Array, p: SliceAParams): Float32Array {
  if (p.inFeatures > p.maxIn || A.length !== p.rank * p.maxIn)
    throw new VeraError(
      ErrorCode.VERA_MODULE_RANGE,
      `in_features ${p.inFeatures} outside A of ${p.rank} x ${p.maxIn}`,
      {
        expected: `<= ${p.maxIn}`,
        received: p.inFeatures,
      },
    );
  if (p.inFeatures === p.maxIn) return A;
  const out = new Float32Array(p.rank * p.inFeatures);
  for (let k = 0; k < p.rank; k++) out.set(A.subarray(k * p.maxIn, k * p.maxIn + p.inFeatures), k * p.inFeatures);
  return out;
}

/** Parameters of {@link sliceB}. */
export interface SliceBParams {
  rank: number;
  /** The module's out_features (<= rows of B). */
  outFeatures: number;
}

/** B[:outFeatures, :] as an outFeatures x rank row-major view (PEFT's `sliced_B`; no copy). */
export function sliceB(B: Float32Array, p: SliceBParams): Float32Array {
  if (p.outFeatures * p.rank > B.length)
    throw new VeraError(
      ErrorCode.VERA_MODULE_RANGE,
      `out_features ${p.outFeatures} outside B of ${B.length / p.rank} x ${p.rank}`,
      {
        expected: `<= ${B.length / p.rank}`,
        received: p.outFeatures,
      },
    );
  return B.subarray(0, p.outFeatures * p.rank);
}

/**
 * Import stage 5: compare stored projections with regeneration from the seed.
 * @internal
 */
import type { VeraAdapter } from "../../format/types.js";
import { roundThroughBf16, roundThroughF16 } from "../../numeric/half.js";
import { generateProjections, type Arithmetic, type ProjectionRounding } from "../../projections/generate.js";
import { sameBits } from "../internal.js";

/** How the stored projections compared with regeneration. */
export interface ProjectionMatch {
  arithmetic: Arithmetic;
  rounding: ProjectionRounding;
}

const ARITHMETICS: Arithmetic[] = ["fused", "separate"];
const ROUNDINGS: ProjectionRounding[] = ["none", "bf16", "fp16"];

function rounded(x: Float32Array, rounding: ProjectionRounding): Float32Array {
  if (rounding === "none") return x;
  return rounding === "bf16" ? roundThroughBf16(Float32Array.from(x)) : roundThroughF16(Float32Array.from(x));
}

/**
 * Every (arithmetic, rounding) whose regeneration equals the stored projections bit for bit. With a match
 * the adapter records the first one (and regenerates); without one, the stored projections are kept
 * explicitly. No stored projections: fused, no rounding, nothing kept.
 */
export function matchProjections(params: {
  seed: bigint;
  rank: number;
  maxIn: number;
  maxOut: number;
  stored?: { A: Float32Array; B: Float32Array };
  warnings: string[];
}): {
  matches: ProjectionMatch[];
  arithmetic: Arithmetic;
  rounding: ProjectionRounding;
  storedProjections?: NonNullable<VeraAdapter["storedProjections"]>;
} {
  const { stored, warnings } = params;
  const matches: ProjectionMatch[] = [];
  if (!stored) return { matches, arithmetic: "fused", rounding: "none" };
  for (const ar of ARITHMETICS) {
    const g = generateProjections({
      seed: params.seed,
      rank: params.rank,
      maxIn: params.maxIn,
      maxOut: params.maxOut,
      arithmetic: ar,
    });
    for (const ro of ROUNDINGS)
      if (sameBits(rounded(g.A, ro), stored.A) && sameBits(rounded(g.B, ro), stored.B))
        matches.push({ arithmetic: ar, rounding: ro });
  }
  if (matches.length === 0) {
    warnings.push(
      "the stored vera_A / vera_B match no regeneration from projection_prng_key (fused or separate arithmetic, f32/bf16/fp16 rounding): they are kept explicitly in the adapter",
    );
    return { matches, arithmetic: "fused", rounding: "none", storedProjections: { A: stored.A, B: stored.B } };
  }
  const { arithmetic, rounding } = matches[0]!;
  if (arithmetic === "separate" && !matches.some((m) => m.arithmetic === "fused"))
    warnings.push(
      'the stored projections match torch\'s non-FMA CPU path (arithmetic "separate"), not the AVX2/AVX512 path PEFT uses on x86-64',
    );
  if (rounding !== "none")
    warnings.push(`the stored projections are the regenerated ones rounded to ${rounding} (a ${rounding} base model)`);
  return { matches, arithmetic, rounding };
}

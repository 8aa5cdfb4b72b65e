import type { VeraAdapter } from "../format/types.js";
import { generateProjections, type Projections } from "./generate.js";

/**
 * The projections an adapter uses: the stored ones when the file keeps them explicitly, otherwise
 * regenerated from its PRNG spec (seed, arithmetic, rounding) at shapes (rank, maxIn) / (maxOut, rank).
 */
export function projectionsFor(adapter: VeraAdapter): Projections {
  if (adapter.storedProjections) return adapter.storedProjections;
  return generateProjections({
    seed: adapter.prng.seed,
    rank: adapter.rank,
    maxIn: adapter.maxIn,
    maxOut: adapter.maxOut,
    arithmetic: adapter.prng.arithmetic,
    rounding: adapter.projectionRounding,
  });
}

import { ErrorCode, VeraError } from "../errors.js";

/** Smallest seed torch.manual_seed accepts (-2^63). */
export const SEED_MIN = -(2n ** 63n);
/** Largest seed torch.manual_seed accepts (2^64 - 1). */
export const SEED_MAX = 2n ** 64n - 1n;

/**
 * Parse a seed given as bigint, safe integer or decimal string into a bigint in the range
 * torch.manual_seed accepts, [-2^63, 2^64 - 1]. Throws VERA_SEED otherwise.
 */
export function parseSeed(seed: bigint | number | string): bigint {
  let v: bigint;
  if (typeof seed === "bigint") v = seed;
  else if (typeof seed === "number") {
    if (!Number.isSafeInteger(seed))
      throw new VeraError(
        ErrorCode.VERA_SEED,
        `seed ${seed} is not a safe integer; pass it as a decimal string or bigint`,
        {
          expected: "an integer in [-2^63, 2^64-1]",
          received: seed,
        },
      );
    v = BigInt(seed);
  } else {
    if (!/^-?(0|[1-9][0-9]{0,19})$/.test(seed))
      throw new VeraError(ErrorCode.VERA_SEED, `seed ${JSON.stringify(seed)} is not a decimal integer`, {
        expected: "a decimal integer string without leading zeros",
        received: seed,
      });
    v = BigInt(seed);
  }
  if (v < SEED_MIN || v > SEED_MAX)
    throw new VeraError(ErrorCode.VERA_SEED, `seed ${v} is outside the range torch.manual_seed accepts`, {
      expected: "[-2^63, 2^64-1]",
      received: v.toString(),
    });
  return v;
}

/**
 * The 32-bit MT19937 state seed torch derives from a seed: the seed is taken modulo 2^64
 * (negative values wrap), then its low 32 bits are kept.
 */
export function seedToState(seed: bigint | number | string): number {
  const v = parseSeed(seed);
  return Number(BigInt.asUintN(32, BigInt.asUintN(64, v)));
}

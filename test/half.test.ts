import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  bf16BitsToF32,
  f16BitsToF32,
  f32ToBf16Bits,
  f32ToF16Bits,
  roundThroughBf16,
  roundThroughF16,
  f32ArrayToBf16,
  bf16ArrayToF32,
} from "../src/index.js";

/** Nearest-even rounding checked from first principles: h is the representable value nearest to x (ties to even bits). */
function checkNearest(
  x: number,
  bits: number,
  toF32: (b: number) => number,
  maxFinite: number,
  step: (b: number, dir: 1 | -1) => number,
) {
  const v = toF32(bits);
  if (Number.isNaN(x)) {
    expect(Number.isNaN(v)).toBe(true);
    return;
  }
  if (Math.abs(x) >= maxFinite * 2) {
    expect(Math.abs(v)).toBe(Infinity);
    return;
  }
  if (!Number.isFinite(v)) return;
  for (const dir of [1, -1] as const) {
    const nb = step(bits, dir);
    const n = toF32(nb);
    if (!Number.isFinite(n) || Number.isNaN(n)) continue;
    const dv = Math.abs(x - v),
      dn = Math.abs(x - n);
    expect(dv).toBeLessThanOrEqual(dn);
    if (dv === dn && v !== n) expect(bits & 1).toBe(0);
  }
}
const stepBits = (b: number, dir: 1 | -1) => {
  // neighbour in magnitude order, same sign
  const sign = b & 0x8000,
    mag = b & 0x7fff;
  const m = mag + dir;
  return m < 0 ? 0x8001 ^ sign : sign | m;
};

describe("float16 / bfloat16", () => {
  it("every float16 bit pattern round-trips through float32", () => {
    for (let h = 0; h < 65536; h++) {
      const v = f16BitsToF32(h);
      if (Number.isNaN(v)) expect(Number.isNaN(f16BitsToF32(f32ToF16Bits(v)))).toBe(true);
      else expect(f32ToF16Bits(v)).toBe(h);
    }
  });
  it("every bfloat16 bit pattern round-trips through float32", () => {
    for (let h = 0; h < 65536; h++) {
      const v = bf16BitsToF32(h);
      if (Number.isNaN(v)) expect(Number.isNaN(bf16BitsToF32(f32ToBf16Bits(v)))).toBe(true);
      else expect(f32ToBf16Bits(v)).toBe(h);
    }
  });
  it("float32 -> float16 rounds to nearest, ties to even (property)", () => {
    fc.assert(
      fc.property(fc.float({ noDefaultInfinity: false }), (x) => {
        checkNearest(x, f32ToF16Bits(x), f16BitsToF32, 65504, stepBits);
      }),
      { numRuns: 20000 },
    );
    // explicit ties: 1 + 2^-11 is halfway between 1 and 1 + 2^-10 -> even (1); 1 + 3*2^-11 -> 1 + 2^-9
    expect(f16BitsToF32(f32ToF16Bits(1 + 2 ** -11))).toBe(1);
    expect(f16BitsToF32(f32ToF16Bits(1 + 3 * 2 ** -11))).toBe(1 + 2 ** -9);
    expect(f16BitsToF32(f32ToF16Bits(65520))).toBe(Infinity);
    expect(f16BitsToF32(f32ToF16Bits(65519))).toBe(65504);
    expect(f16BitsToF32(f32ToF16Bits(2 ** -25))).toBe(0);
    expect(f16BitsToF32(f32ToF16Bits(2 ** -25 * 1.5))).toBe(2 ** -24);
  });
  it("float32 -> bfloat16 rounds to nearest, ties to even (property)", () => {
    fc.assert(
      fc.property(fc.float(), (x) => {
        checkNearest(x, f32ToBf16Bits(x), bf16BitsToF32, 3.3895313892515355e38, stepBits);
      }),
      { numRuns: 20000 },
    );
    expect(bf16BitsToF32(f32ToBf16Bits(1 + 2 ** -8))).toBe(1);
    expect(bf16BitsToF32(f32ToBf16Bits(1 + 3 * 2 ** -8))).toBe(1 + 2 ** -6);
  });
  it("array versions agree with the scalar ones", () => {
    const a = Float32Array.from({ length: 1000 }, (_, i) => Math.sin(i) * 10 ** ((i % 20) - 10));
    const bf = f32ArrayToBf16(a);
    expect(Array.from(bf)).toEqual(Array.from(a, f32ToBf16Bits));
    expect(Array.from(bf16ArrayToF32(bf))).toEqual(Array.from(roundThroughBf16(a.slice())));
    expect(Array.from(roundThroughF16(a.slice()))).toEqual(Array.from(a, (x) => f16BitsToF32(f32ToF16Bits(x))));
  });
});

/**
 * float16 / bfloat16 <-> float32 conversions with IEEE round-to-nearest-even. Pure, browser-safe.
 * NaN stays NaN (quiet, sign kept), overflow becomes Inf with the sign kept, subnormals are exact.
 */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** Round a number (read as float32 first) to float16 and return its 16-bit pattern. */
export function f32ToF16Bits(x: number): number {
  f32[0] = x;
  const b = u32[0]!;
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  let mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 | (mant >>> 13) : 0);
  const e = exp - 112; // rebias 127 -> 15
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && (half & 1) !== 0)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1) !== 0)) half++; // a carry rolls into the exponent (and into Inf) correctly
  return sign | half;
}

let f16Table: Float32Array | undefined;

function buildF16Table(): Float32Array {
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >>> 10) & 0x1f;
    const mant = h & 0x3ff;
    let v: number;
    if (exp === 0) v = mant * 2 ** -24;
    else if (exp === 0x1f) v = mant === 0 ? Infinity : NaN;
    else v = (1 + mant / 1024) * 2 ** (exp - 15);
    t[h] = sign * v;
  }
  return t;
}

/** The float32 value of a float16 bit pattern (exact). */
export function f16BitsToF32(h: number): number {
  f16Table ??= buildF16Table();
  return f16Table[h & 0xffff]!;
}

/** Round a number (read as float32 first) to bfloat16 and return its 16-bit pattern. */
export function f32ToBf16Bits(x: number): number {
  f32[0] = x;
  const b = u32[0]!;
  if ((b & 0x7f800000) === 0x7f800000 && (b & 0x7fffff) !== 0) return ((b >>> 16) & 0x8000) | 0x7fc0;
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}

/** The float32 value of a bfloat16 bit pattern (exact). */
export function bf16BitsToF32(h: number): number {
  u32[0] = (h & 0xffff) << 16;
  return f32[0]!;
}

/** Convert float32 values to float16 bit patterns (round to nearest even). */
export function f32ArrayToF16(src: ArrayLike<number>, out = new Uint16Array(src.length)): Uint16Array {
  for (let i = 0; i < src.length; i++) out[i] = f32ToF16Bits(src[i]!);
  return out;
}

/** Convert float16 bit patterns to float32 values (exact). */
export function f16ArrayToF32(src: Uint16Array, out = new Float32Array(src.length)): Float32Array {
  f16Table ??= buildF16Table();
  const t = f16Table;
  for (let i = 0; i < src.length; i++) out[i] = t[src[i]!]!;
  return out;
}

/** Convert float32 values to bfloat16 bit patterns (round to nearest even). */
export function f32ArrayToBf16(src: Float32Array, out = new Uint16Array(src.length)): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < src.length; i++) {
    const b = bits[i]!;
    out[i] =
      (b & 0x7f800000) === 0x7f800000 && (b & 0x7fffff) !== 0
        ? ((b >>> 16) & 0x8000) | 0x7fc0
        : ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
  }
  return out;
}

/** Convert bfloat16 bit patterns to float32 values (exact). */
export function bf16ArrayToF32(src: Uint16Array, out = new Float32Array(src.length)): Float32Array {
  const bits = new Uint32Array(out.buffer, out.byteOffset, out.length);
  for (let i = 0; i < src.length; i++) bits[i] = src[i]! << 16;
  return out;
}

/** Round float32 values through float16 and back, in place (what a cast to fp16 and back does). */
export function roundThroughF16(a: Float32Array): Float32Array {
  f16Table ??= buildF16Table();
  const t = f16Table;
  for (let i = 0; i < a.length; i++) a[i] = t[f32ToF16Bits(a[i]!)]!;
  return a;
}

/** Round float32 values through bfloat16 and back, in place (what a cast to bf16 and back does). */
export function roundThroughBf16(a: Float32Array): Float32Array {
  const bits = new Uint32Array(a.buffer, a.byteOffset, a.length);
  for (let i = 0; i < a.length; i++) {
    const b = bits[i]!;
    bits[i] =
      (b & 0x7f800000) === 0x7f800000 && (b & 0x7fffff) !== 0
        ? (b & 0x80000000) | 0x7fc00000
        : ((b + 0x7fff + ((b >>> 16) & 1)) & 0xffff0000) >>> 0;
  }
  return a;
}

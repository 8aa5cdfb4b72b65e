/**
 * MT19937, the 32-bit Mersenne Twister exactly as PyTorch's CPU generator runs it
 * (at::mt19937: standard init_genrand seeding, standard tempering). Pure, browser-safe.
 */
export class MT19937 {
  // Int32Array keeps every value a small integer for the JIT (a Uint32Array read above 2^31 is a double).
  private readonly mt = new Int32Array(624);
  private mti = 624;

  /** @param seed32 the 32-bit state seed (see {@link seedToState}). */
  constructor(seed32: number) {
    const mt = this.mt;
    mt[0] = seed32 | 0;
    for (let i = 1; i < 624; i++) {
      const prev = mt[i - 1]! ^ (mt[i - 1]! >>> 30);
      mt[i] = (Math.imul(1812433253, prev) + i) | 0;
    }
  }

  private twist(): void {
    const mt = this.mt;
    const MATRIX = 0x9908b0df | 0;
    let i = 0;
    for (; i < 227; i++) {
      const y = (mt[i]! & -0x80000000) | (mt[i + 1]! & 0x7fffffff);
      mt[i] = mt[i + 397]! ^ (y >>> 1) ^ (-(y & 1) & MATRIX);
    }
    for (; i < 623; i++) {
      const y = (mt[i]! & -0x80000000) | (mt[i + 1]! & 0x7fffffff);
      mt[i] = mt[i - 227]! ^ (y >>> 1) ^ (-(y & 1) & MATRIX);
    }
    const y = (mt[623]! & -0x80000000) | (mt[0]! & 0x7fffffff);
    mt[623] = mt[396]! ^ (y >>> 1) ^ (-(y & 1) & MATRIX);
    this.mti = 0;
  }

  /** The next 32-bit output. */
  nextU32(): number {
    if (this.mti >= 624) this.twist();
    let y = this.mt[this.mti++]!;
    y ^= y >>> 11;
    y ^= (y << 7) & (0x9d2c5680 | 0);
    y ^= (y << 15) & (0xefc60000 | 0);
    y ^= y >>> 18;
    return y >>> 0;
  }

  /**
   * Fill `out` with float32 values `from + x * span`, x = (u32 & 0xFFFFFF) * 2^-24, one draw per element,
   * in the arithmetic PyTorch's CPU `uniform_` uses: `fused` (one FMA, AVX2/AVX512 builds) or
   * `separate` (product rounded to float32, then the sum; the `default` CPU capability).
   */
  fillUniform(out: Float32Array, from: number, span: number, arithmetic: "fused" | "separate"): void {
    const mt = this.mt;
    const n = out.length;
    const fused = arithmetic === "fused";
    const fround = Math.fround;
    // k * 2^-24 * span == k * (span * 2^-24) exactly (a power-of-two scale), and k * scale is exact in float64
    const scale = span * 5.9604644775390625e-8;
    let k = 0;
    while (k < n) {
      if (this.mti >= 624) this.twist();
      const end = Math.min(n, k + (624 - this.mti));
      let j = this.mti;
      if (fused) {
        for (; k < end; k++, j++) {
          let y = mt[j]!;
          y ^= y >>> 11;
          y ^= (y << 7) & (0x9d2c5680 | 0);
          y ^= (y << 15) & (0xefc60000 | 0);
          y ^= y >>> 18;
          out[k] = (y & 0xffffff) * scale + from;
        }
      } else {
        for (; k < end; k++, j++) {
          let y = mt[j]!;
          y ^= y >>> 11;
          y ^= (y << 7) & (0x9d2c5680 | 0);
          y ^= (y << 15) & (0xefc60000 | 0);
          y ^= y >>> 18;
          out[k] = fround((y & 0xffffff) * scale) + from;
        }
      }
      this.mti = j;
    }
  }
}

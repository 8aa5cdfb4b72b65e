import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ComputeBackend } from "../src/compute/backend.js";
import { createWasmBackend } from "../src/compute/wasm-backend.js";
import { loadWasmKernels, wasmSupport } from "../src/compute/wasm/kernels.js";
import { bf16ArrayToF32, bf16BitsToF32, f32ArrayToBf16, f32ToBf16Bits } from "../src/numeric/half.js";
import { DTYPES, LAYOUTS, randomF32, rng } from "./compute-helpers.js";
import { expectMatchesReference, expectOverflowLeavesWeight } from "./compute-conformance.js";

describe("WebAssembly SIMD kernels", () => {
  it("validate in Node 20 (relaxed SIMD only behind a V8 flag)", () => {
    const s = wasmSupport();
    expect(s.simd).toBe(true);
    expect(typeof s.relaxed).toBe("boolean");
  });
  it("convert bf16 <-> f32 exactly like the scalar converters (incl. NaN, Inf, ties, odd lengths)", async () => {
    const k = await loadWasmKernels();
    const r = rng(4);
    const n = 1003;
    const x = Float32Array.from({ length: n }, () => (r() - 0.5) * Math.exp(r() * 160 - 80));
    x.set([NaN, -NaN, Infinity, -Infinity, 3.4e38, -0, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 2 ** -130], 0);
    k.reserve(n * 6 + 64);
    new Float32Array(k.memory.buffer, 0, n).set(x);
    k.f32ToBf16(0, n * 4, n);
    const got = new Uint16Array(k.memory.buffer, n * 4, n).slice();
    expect(Array.from(got)).toEqual(Array.from(f32ArrayToBf16(x)));
    k.bf16ToF32(n * 4, 0, n);
    expect(Array.from(new Float32Array(k.memory.buffer, 0, n))).toEqual(Array.from(bf16ArrayToF32(got)));
  });
  it("add a float32 delta to every bf16 bit pattern like the scalar converters (round to nearest even, subnormals, overflow, NaN) and report max |delta|", async () => {
    const k = await loadWasmKernels();
    const n = 65536 + 7; // every bit pattern, then a tail shorter than one vector
    const w = 64;
    const m = w + Math.ceil((n * 2) / 64) * 64;
    k.reserve(m + n * 4);
    const r = rng(11);
    const deltas = [
      0,
      -0,
      2 ** -134,
      -(2 ** -133),
      3 * 2 ** -135,
      2 ** -149,
      1e-3,
      -0.5,
      1,
      3.38e38,
      -3.4e38,
      Infinity,
      NaN,
    ];
    for (let i = 0; i < 12; i++) deltas.push((r() - 0.5) * Math.exp(r() * 40 - 30));
    for (const d of deltas) {
      const bits = new Uint16Array(k.memory.buffer, w, n);
      const delta = new Float32Array(k.memory.buffer, m, n);
      let max = 0;
      const want = new Uint16Array(n);
      for (let i = 0; i < n; i++) {
        bits[i] = i & 0xffff;
        delta[i] = d * (i % 3 === 0 ? 1 : i % 3 === 1 ? -1 : 0.7);
        if (Math.abs(delta[i]!) > max) max = Math.abs(delta[i]!);
        want[i] = f32ToBf16Bits(Math.fround(bf16BitsToF32(i & 0xffff) + delta[i]!));
      }
      k.bf16Add(w, m, n, 0);
      const got = new Uint16Array(k.memory.buffer, w, n);
      const wrong: string[] = [];
      for (let i = 0; i < n && wrong.length < 3; i++)
        if (got[i] !== want[i] && !(Number.isNaN(bf16BitsToF32(got[i]!)) && Number.isNaN(bf16BitsToF32(want[i]!))))
          wrong.push(
            `0x${(i & 0xffff).toString(16)} + ${delta[i]}: 0x${got[i]!.toString(16)}, want 0x${want[i]!.toString(16)}`,
          );
      expect(wrong).toEqual([]);
      expect(new Float32Array(k.memory.buffer, 0, 1)[0]).toBe(Math.fround(max));
    }
  });
  it("find the largest magnitude bit pattern of 16-bit values (odd lengths)", async () => {
    const k = await loadWasmKernels();
    const r = rng(12);
    k.reserve(64 + 2 * 1000);
    for (let t = 0; t < 50; t++) {
      const n = 1 + Math.floor(r() * 999);
      const v = new Uint16Array(k.memory.buffer, 64, n);
      let want = 0;
      for (let i = 0; i < n; i++) {
        v[i] = Math.floor(r() * 65536) & (r() < 0.95 ? 0x80ff : 0xffff);
        want = Math.max(want, v[i]! & 0x7fff);
      }
      expect(k.maxBits16(64, n)).toBe(want);
    }
  });
  it("GEMM matches a float64 product on odd shapes", async () => {
    const k = await loadWasmKernels();
    const r = rng(8);
    for (const [m, nn, kk] of [
      [1, 1, 1],
      [3, 7, 2],
      [13, 21, 7],
      [17, 40, 33],
      [4, 8, 1],
    ] as const) {
      const a = randomF32(m * kk, r),
        b = randomF32(kk * nn, r),
        c = randomF32(m * nn, r);
      k.reserve((a.length + b.length + c.length) * 4);
      const mem = new Float32Array(k.memory.buffer);
      mem.set(a, 0);
      mem.set(b, a.length);
      mem.set(c, a.length + b.length);
      k.gemm(0, a.length * 4, (a.length + b.length) * 4, m, nn, kk);
      const out = new Float32Array(k.memory.buffer, (a.length + b.length) * 4, c.length);
      for (let i = 0; i < m; i++)
        for (let j = 0; j < nn; j++) {
          let s = c[i * nn + j]!;
          let abs = Math.abs(s);
          for (let q = 0; q < kk; q++) {
            s += a[i * kk + q]! * b[q * nn + j]!;
            abs += Math.abs(a[i * kk + q]! * b[q * nn + j]!);
          }
          expect(Math.abs(out[i * nn + j]! - s)).toBeLessThanOrEqual((kk + 2) * 2 ** -24 * abs + 1e-30);
        }
    }
  });
});

describe("wasm backend", { timeout: 60_000 }, () => {
  let be: ComputeBackend;
  let small: ComputeBackend;
  beforeAll(async () => {
    be = await createWasmBackend();
    small = await createWasmBackend({ blockBytes: 4096 });
  });
  afterAll(async () => {
    await be.dispose?.();
  });
  for (const dtype of DTYPES)
    for (const layout of LAYOUTS) {
      it(`matches the reference: ${dtype} ${layout}`, async () => {
        await expectMatchesReference(be, dtype, layout, 60);
        await expectMatchesReference(small, dtype, layout, 70);
      });
      it(`overflow: MERGE_OVERFLOW, weight unchanged: ${dtype} ${layout}`, async () => {
        await expectOverflowLeavesWeight(small, dtype, layout);
      });
    }
});

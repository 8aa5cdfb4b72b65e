import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ComputeBackend } from "../src/compute/backend.js";
import { createWasmBackend } from "../src/compute/wasm-backend.js";
import { loadWasmKernels, wasmSupport } from "../src/compute/wasm/kernels.js";
import { bf16ArrayToF32, f32ArrayToBf16 } from "../src/numeric/half.js";
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
  it("GEMM matches a float64 product on odd shapes", async () => {
    const k = await loadWasmKernels();
    const r = rng(8);
    for (const [m, nn, kk] of [[1, 1, 1], [3, 7, 2], [13, 21, 7], [17, 40, 33], [4, 8, 1]] as const) {
      const a = randomF32(m * kk, r), b = randomF32(kk * nn, r), c = randomF32(m * nn, r);
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

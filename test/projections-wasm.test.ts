import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { generateProjections, wasmGeneratorAvailable } from "../src/index.js";

describe("WebAssembly SIMD generator", () => {
  it("is available on Node 20", () => {
    expect(wasmGeneratorAvailable()).toBe(true);
  });
  it("gives the same bits as the JavaScript generator for any seed, shape and arithmetic (property)", () => {
    fc.assert(
      fc.property(
        fc.bigInt({ min: -(2n ** 63n), max: 2n ** 64n - 1n }),
        fc.integer({ min: 1, max: 9 }),
        fc.integer({ min: 1, max: 700 }),
        fc.integer({ min: 1, max: 700 }),
        fc.constantFrom("fused" as const, "separate" as const),
        (seed, rank, maxIn, maxOut, arithmetic) => {
          const w = generateProjections({ seed, rank, maxIn, maxOut, arithmetic, engine: "wasm" });
          const j = generateProjections({ seed, rank, maxIn, maxOut, arithmetic, engine: "js" });
          expect(Buffer.compare(Buffer.from(w.A.buffer), Buffer.from(j.A.buffer))).toBe(0);
          expect(Buffer.compare(Buffer.from(w.B.buffer), Buffer.from(j.B.buffer))).toBe(0);
        },
      ),
      { numRuns: 150 },
    );
  });
  it("crosses 624-word blocks and fill-chunk boundaries identically", () => {
    for (const [rank, maxIn] of [
      [1, 623],
      [1, 625],
      [3, 32767],
      [1, 32769],
      [2, 65538],
    ] as const) {
      const w = generateProjections({ seed: 5, rank, maxIn, maxOut: 7, engine: "wasm" });
      const j = generateProjections({ seed: 5, rank, maxIn, maxOut: 7, engine: "js" });
      expect(Buffer.compare(Buffer.from(w.A.buffer), Buffer.from(j.A.buffer))).toBe(0);
      expect(Buffer.compare(Buffer.from(w.B.buffer), Buffer.from(j.B.buffer))).toBe(0);
    }
  });
});

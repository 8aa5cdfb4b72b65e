import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  asFloat32,
  generateProjections,
  MT19937,
  parseSafetensors,
  parseSeed,
  seedToState,
  sliceA,
  sliceB,
  tensorBytes,
} from "../src/index.js";

const dir = join(__dirname, "../fixtures/torch");
interface Case {
  case: string;
  seed: string;
  rank: number;
  max_in: number;
  max_out: number;
  arithmetic: "fused" | "separate";
  rounding: "none" | "bf16" | "fp16";
  file?: string;
  sha256_A: string;
  sha256_B: string;
  first8_A: string[];
  last8_B: string[];
}
const manifest = JSON.parse(readFileSync(join(dir, "projections.json"), "utf8")) as { torch: string; cases: Case[] };
const sha = (a: Float32Array) =>
  createHash("sha256")
    .update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength))
    .digest("hex");
const hex = (a: Float32Array, i: number) =>
  "0x" + new Uint32Array(a.buffer, a.byteOffset, a.length)[i]!.toString(16).padStart(8, "0");

describe(`projections match torch ${manifest.torch} bit for bit`, () => {
  it("covers both arithmetics, negative seeds, seeds above 2^32 and large shapes", () => {
    const ar = new Set(manifest.cases.map((c) => c.arithmetic));
    expect(ar).toEqual(new Set(["fused", "separate"]));
    expect(manifest.cases.some((c) => BigInt(c.seed) < 0n)).toBe(true);
    expect(manifest.cases.some((c) => BigInt(c.seed) > 2n ** 32n)).toBe(true);
    expect(Math.max(...manifest.cases.map((c) => c.rank * c.max_in))).toBeGreaterThanOrEqual(1024 * 11008);
  });
  for (const c of manifest.cases) {
    it(`${c.case} ${c.arithmetic}${c.rounding !== "none" ? ` ${c.rounding}` : ""}`, () => {
      const { A, B } = generateProjections({
        seed: c.seed,
        rank: c.rank,
        maxIn: c.max_in,
        maxOut: c.max_out,
        arithmetic: c.arithmetic,
        rounding: c.rounding,
      });
      expect(hex(A, 0)).toBe(c.first8_A[0]);
      expect(hex(B, B.length - 1)).toBe(c.last8_B[c.last8_B.length - 1]);
      if (c.file && existsSync(join(dir, c.file))) {
        const f = parseSafetensors(new Uint8Array(readFileSync(join(dir, c.file))));
        const tA = asFloat32(tensorBytes(f, "vera_A"));
        const tB = asFloat32(tensorBytes(f, "vera_B"));
        expect(Buffer.compare(Buffer.from(tA.buffer, tA.byteOffset, tA.byteLength), Buffer.from(A.buffer))).toBe(0);
        expect(Buffer.compare(Buffer.from(tB.buffer, tB.byteOffset, tB.byteLength), Buffer.from(B.buffer))).toBe(0);
      }
      expect(sha(A)).toBe(c.sha256_A);
      expect(sha(B)).toBe(c.sha256_B);
    });
  }
});

describe("generator", () => {
  it("torch.manual_seed(0); torch.rand(5) sanity values", () => {
    const out = new Float32Array(5);
    new MT19937(0).fillUniform(out, 0, 1, "fused");
    expect(Array.from(out, (x) => x.toFixed(4))).toEqual(["0.4963", "0.7682", "0.0885", "0.1320", "0.3074"]);
  });
  it("fused and separate differ on some elements of the documented test vector", () => {
    const f = generateProjections({ seed: 0, rank: 4, maxIn: 10, maxOut: 1, arithmetic: "fused" }).A;
    const s = generateProjections({ seed: 0, rank: 4, maxIn: 10, maxOut: 1, arithmetic: "separate" }).A;
    expect([0, 1, 2, 3].map((i) => hex(f, i))).toEqual(["0xbbbe07c5", "0x3ed4c003", "0xbf23350a", "0xbf11ef30"]);
    expect([0, 1].map((i) => hex(s, i))).toEqual(["0xbbbe0800", "0x3ed4c004"]);
  });
  it("maps seeds to the 32-bit state as torch does", () => {
    expect(seedToState(-1)).toBe(0xffffffff);
    expect(seedToState("18446744073709551615")).toBe(0xffffffff);
    expect(seedToState(2 ** 32 + 7)).toBe(7);
    expect(seedToState(-(2 ** 32))).toBe(0);
    expect(() => parseSeed("18446744073709551616")).toThrowError(expect.objectContaining({ code: "VERA_SEED" }));
    expect(() => parseSeed("-9223372036854775809")).toThrowError(expect.objectContaining({ code: "VERA_SEED" }));
    expect(() => parseSeed(1.5)).toThrowError(expect.objectContaining({ code: "VERA_SEED" }));
    expect(() => parseSeed("007")).toThrowError(expect.objectContaining({ code: "VERA_SEED" }));
  });
  it("seeds equal modulo 2^32 give the same projections (property)", () => {
    fc.assert(
      fc.property(fc.bigInt({ min: -(2n ** 31n), max: 2n ** 31n }), fc.integer({ min: 1, max: 3 }), (s, k) => {
        const a = generateProjections({ seed: s, rank: 2, maxIn: 3, maxOut: 2 }).A;
        const b = generateProjections({ seed: s + BigInt(k) * 2n ** 32n, rank: 2, maxIn: 3, maxOut: 2 }).A;
        expect(Array.from(a)).toEqual(Array.from(b));
      }),
      { numRuns: 50 },
    );
  });
  it("values stay inside the kaiming bound (property)", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 8 }),
        fc.integer({ min: 1, max: 50 }),
        fc.integer({ min: 1, max: 50 }),
        fc.integer(),
        (r, i, o, seed) => {
          const { A, B } = generateProjections({
            seed,
            rank: r,
            maxIn: i,
            maxOut: o,
            arithmetic: seed % 2 ? "fused" : "separate",
          });
          const ba = Math.fround(Math.sqrt(3) * (Math.sqrt(2) / Math.sqrt(i)));
          const bb = Math.fround(Math.sqrt(3) * (Math.sqrt(2) / Math.sqrt(r)));
          for (const x of A) expect(Math.abs(x)).toBeLessThanOrEqual(ba);
          for (const x of B) expect(Math.abs(x)).toBeLessThanOrEqual(bb);
        },
      ),
      { numRuns: 30 },
    );
  });
  it("slices take the first in_features columns of A and the first out_features rows of B", () => {
    const { A, B } = generateProjections({ seed: 3, rank: 3, maxIn: 5, maxOut: 4 });
    const a = sliceA(A, { rank: 3, maxIn: 5, inFeatures: 2 });
    expect(Array.from(a)).toEqual([A[0], A[1], A[5], A[6], A[10], A[11]]);
    expect(Array.from(sliceB(B, { rank: 3, outFeatures: 2 }))).toEqual(Array.from(B.subarray(0, 6)));
    expect(() => sliceA(A, { rank: 3, maxIn: 5, inFeatures: 6 })).toThrowError(
      expect.objectContaining({ code: "VERA_MODULE_RANGE" }),
    );
  });
});

describe("generateProjections into caller-given arrays", () => {
  it("fills and returns the given arrays with the same bits as fresh ones, whatever they held", () => {
    for (const engine of ["js", "wasm"] as const)
      for (const rounding of ["none", "bf16"] as const) {
        const p = { seed: 77, rank: 8, maxIn: 300, maxOut: 130, rounding, engine };
        const fresh = generateProjections(p);
        const A = new Float32Array(8 * 300).fill(Number.NaN);
        const B = new Float32Array(130 * 8).fill(123);
        const got = generateProjections({ ...p, into: { A, B } });
        expect(got.A).toBe(A);
        expect(got.B).toBe(B);
        expect(Buffer.from(A.buffer).equals(Buffer.from(fresh.A.buffer))).toBe(true);
        expect(Buffer.from(B.buffer).equals(Buffer.from(fresh.B.buffer))).toBe(true);
        // reused again: still the same bits
        generateProjections({ ...p, into: { A, B } });
        expect(Buffer.from(A.buffer).equals(Buffer.from(fresh.A.buffer))).toBe(true);
      }
  });

  it("one array given, the other allocated; a wrong size is ARG_INVALID", () => {
    const A = new Float32Array(4 * 10);
    const got = generateProjections({ seed: 1, rank: 4, maxIn: 10, maxOut: 6, into: { A } });
    expect(got.A).toBe(A);
    expect(got.B.length).toBe(24);
    expect(() =>
      generateProjections({ seed: 1, rank: 4, maxIn: 10, maxOut: 6, into: { B: new Float32Array(23) } }),
    ).toThrowError(expect.objectContaining({ code: "ARG_INVALID" }));
  });
});

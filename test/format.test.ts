import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  createAdapter,
  isCanonical,
  projectionsFor,
  readVera,
  validateVera,
  writeVera,
  generateProjections,
  PURE_SHA256,
  setSha256Implementation,
  type VeraAdapter,
} from "../src/index.js";

const names = [
  "model.layers.0.self_attn.q_proj",
  "model.layers.0.self_attn.v_proj",
  "model.layers.1.mlp.down_proj",
  "lm_head",
];
const arbAdapter = fc
  .record({
    rank: fc.integer({ min: 1, max: 8 }),
    seed: fc.bigInt({ min: -(2n ** 63n), max: 2n ** 64n - 1n }),
    arithmetic: fc.constantFrom("fused" as const, "separate" as const),
    rounding: fc.constantFrom("none" as const, "bf16" as const, "fp16" as const),
    mods: fc.uniqueArray(
      fc.record({
        name: fc.constantFrom(...names),
        inF: fc.integer({ min: 1, max: 20 }),
        outF: fc.integer({ min: 1, max: 20 }),
        conv: fc.boolean(),
      }),
      { minLength: 1, maxLength: 4, selector: (m) => m.name },
    ),
    vals: fc.float({ noNaN: true, noDefaultInfinity: true, min: -10, max: 10 }),
  })
  .map(({ rank, seed, arithmetic, rounding, mods, vals }) => {
    const a = createAdapter({
      rank,
      seed,
      arithmetic,
      modules: mods.map((m) => ({
        name: m.name,
        inFeatures: m.inF,
        outFeatures: m.outF,
        layout: m.conv ? "conv1d" : "linear",
      })),
    });
    a.projectionRounding = rounding;
    a.modules.forEach((m, k) => {
      m.lambdaD = Float32Array.from(m.lambdaD, (_, i) => Math.fround(vals * (i + 1) + k));
      m.lambdaB = Float32Array.from(m.lambdaB, (_, i) => Math.fround(vals - i * 0.5));
    });
    return a;
  });

describe("verakit format", () => {
  it("write -> read is lossless and canonical (property)", () => {
    fc.assert(
      fc.property(arbAdapter, (a) => {
        const bytes = writeVera({ adapter: a });
        const b = readVera(bytes);
        expect(b.prng.seed).toBe(a.prng.seed);
        expect(b.modules.map((m) => m.name)).toEqual(a.modules.map((m) => m.name).sort());
        for (const m of a.modules) {
          const r = b.modules.find((x) => x.name === m.name)!;
          expect(Array.from(r.lambdaD)).toEqual(Array.from(m.lambdaD));
          expect(Array.from(r.lambdaB)).toEqual(Array.from(m.lambdaB));
          expect(r.layout).toBe(m.layout);
        }
        const again = writeVera({ adapter: b });
        expect(Buffer.compare(Buffer.from(again), Buffer.from(bytes))).toBe(0);
        expect(isCanonical(bytes)).toBe(true);
        expect(validateVera(bytes).warnings).toEqual([]);
      }),
      { numRuns: 100 },
    );
  });
  it("module order given to the writer does not change the bytes", () => {
    const a = createAdapter({
      rank: 2,
      modules: [
        { name: "b", inFeatures: 2, outFeatures: 3 },
        { name: "a", inFeatures: 4, outFeatures: 1 },
      ],
    });
    const rev: VeraAdapter = { ...a, modules: [...a.modules].reverse() };
    expect(Buffer.compare(Buffer.from(writeVera({ adapter: a })), Buffer.from(writeVera({ adapter: rev })))).toBe(0);
  });
  it("narrow vector dtypes are opt-in and round to nearest even", () => {
    const a = createAdapter({ rank: 2, modules: [{ name: "m", inFeatures: 2, outFeatures: 2 }] });
    a.modules[0]!.lambdaB = new Float32Array([1 + 2 ** -11, 3.14159]);
    const f16 = readVera(writeVera({ adapter: a, vectorDtype: "F16" }));
    expect(f16.vectorDtype).toBe("F16");
    expect(Array.from(f16.modules[0]!.lambdaB)).toEqual([1, 3.140625]);
    expect(readVera(writeVera({ adapter: a })).vectorDtype).toBe("F32");
  });
  it("createAdapter initialises as PEFT does: d = d_initial, b = 0, max dims over modules", () => {
    const a = createAdapter({
      rank: 3,
      dInitial: 0.25,
      modules: [
        { name: "x", inFeatures: 7, outFeatures: 2 },
        { name: "y", inFeatures: 3, outFeatures: 9 },
      ],
    });
    expect([a.maxIn, a.maxOut]).toEqual([7, 9]);
    expect(Array.from(a.modules[0]!.lambdaD)).toEqual([0.25, 0.25, 0.25]);
    expect(Array.from(a.modules[1]!.lambdaB)).toEqual(new Array(9).fill(0));
  });
  it("refuses to write an invalid adapter and lists every issue", () => {
    const a = createAdapter({
      rank: 2,
      modules: [
        { name: "m", inFeatures: 2, outFeatures: 2 },
        { name: "n", inFeatures: 2, outFeatures: 2 },
      ],
    });
    a.modules[0]!.lambdaD = new Float32Array([NaN, 1]);
    a.modules[1]!.lambdaB = new Float32Array(3);
    try {
      writeVera({ adapter: a });
      expect.unreachable();
    } catch (e) {
      expect((e as { issues: Array<{ code: string }> }).issues.map((i) => i.code).sort()).toEqual([
        "VERA_NONFINITE",
        "VERA_VECTOR_LENGTH",
      ]);
    }
  });
  it("validateVera reports all issues at once with code, path, expected, received", () => {
    const a = createAdapter({ rank: 2, modules: [{ name: "m", inFeatures: 2, outFeatures: 2 }] });
    const bytes = writeVera({ adapter: a });
    bytes[bytes.length - 1] ^= 0xff;
    const r = validateVera(bytes);
    expect(r.ok).toBe(false);
    expect(r.issues[0]).toMatchObject({ code: "VERA_DIGEST_MISMATCH", path: "/digest/data" });
    expect(r.issues[0]!.expected).toMatch(/^[0-9a-f]{64}$/);
    expect(validateVera(bytes, { checkDigest: false }).ok).toBe(true);
  });
  it("stored projections are used as they are; regenerated ones follow the PRNG spec", () => {
    const a = createAdapter({ rank: 2, seed: 9, modules: [{ name: "m", inFeatures: 3, outFeatures: 2 }] });
    const gen = generateProjections({ seed: 9, rank: 2, maxIn: 3, maxOut: 2 });
    expect(Array.from(projectionsFor(readVera(writeVera({ adapter: a }))).A)).toEqual(Array.from(gen.A));
    a.storedProjections = { A: new Float32Array([1, 2, 3, 4, 5, 6]), B: new Float32Array([7, 8, 9, 10]) };
    const b = readVera(writeVera({ adapter: a }));
    expect(Array.from(projectionsFor(b).B)).toEqual([7, 8, 9, 10]);
  });
  it("fuzz: the validator never throws, only reports typed issues, on mutated valid files (property)", () => {
    const a = createAdapter({
      rank: 3,
      seed: 5,
      modules: [
        { name: "q", inFeatures: 4, outFeatures: 3 },
        { name: "v", inFeatures: 4, outFeatures: 2, layout: "conv1d" },
      ],
    });
    const valid = writeVera({ adapter: a });
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(valid.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }),
        (muts) => {
          const b = valid.slice();
          for (const [i, v] of muts) b[i] = v;
          const r = validateVera(b);
          for (const i of r.issues) expect(i.code).toMatch(/^(ST|VERA)_[A-Z0-9_]+$/);
          if (!r.ok) expect(() => readVera(b)).toThrowError(expect.objectContaining({ name: "VeraError" }));
        },
      ),
      { numRuns: 1500 },
    );
  });
});

describe("one SHA-256 of the tensor data per read and per write", () => {
  const adapter = createAdapter({
    rank: 4,
    seed: 7n,
    modules: [
      { name: "model.layers.0.self_attn.q_proj", inFeatures: 16, outFeatures: 8 },
      { name: "model.layers.0.self_attn.v_proj", inFeatures: 16, outFeatures: 4 },
    ],
  });
  /** Run `f` with a counting SHA-256 behind sha256Hex; returns how many digests it took. */
  const countHashes = (f: () => void): number => {
    let n = 0;
    setSha256Implementation({ implementation: { name: "counting", hex: (d) => (n++, PURE_SHA256.hex(d)) } });
    try {
      f();
    } finally {
      setSha256Implementation({ implementation: null });
    }
    return n;
  };

  it("readVera, validateVera (with the canonical check) and writeVera hash once", () => {
    const bytes = writeVera({ adapter });
    expect(countHashes(() => readVera(bytes))).toBe(1);
    expect(countHashes(() => validateVera(bytes))).toBe(1);
    expect(countHashes(() => writeVera({ adapter }))).toBe(1);
    expect(countHashes(() => isCanonical(bytes))).toBe(1);
    // without the digest check, the canonical comparison needs its own digest: still one
    expect(countHashes(() => readVera(bytes, { checkDigest: false }))).toBe(1);
    expect(countHashes(() => readVera(bytes, { checkDigest: false, checkCanonical: false }))).toBe(0);
  });

  it("the canonical check still sees a file whose data differs from its digest's", () => {
    const bytes = writeVera({ adapter });
    const damaged = bytes.slice();
    damaged[damaged.length - 1] ^= 1;
    expect(validateVera(damaged).issues.map((i) => i.code)).toContain("VERA_DIGEST_MISMATCH");
    const r = validateVera(damaged, { checkDigest: false });
    expect(r.ok).toBe(true);
    expect(r.warnings.map((w) => w.code)).toContain("VERA_NOT_CANONICAL");
    expect(isCanonical(damaged)).toBe(false);
  });
});

import { readFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { baseShapesFromConfig, bestRankK, expandToLora, importPeft } from "../src/peft/index.js";
import { householderQR, jacobiSVD } from "../src/peft/low-rank.js";
import { asFloat32, parseSafetensors, tensorBytes } from "../src/safetensors/parse.js";
import { adapterFolders, baseDir, PEFT_DIR, readAdapter, readJson } from "./peft-fixtures.js";

function matmul(a: Float64Array, b: Float64Array, m: number, k: number, n: number): Float64Array {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let t = 0; t < k; t++) {
      const x = a[i * k + t]!;
      for (let j = 0; j < n; j++) c[i * n + j] += x * b[t * n + j]!;
    }
  return c;
}
function frob2(a: Float64Array): number {
  let s = 0;
  for (const x of a) s += x * x;
  return s;
}
function rng(seed: number) {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return ((s >>> 0) / 2 ** 32) * 2 - 1;
  };
}
function randMat(m: number, n: number, seed: number): Float64Array {
  const r = rng(seed);
  return Float64Array.from({ length: m * n }, () => r());
}

describe("low-rank: QR + Jacobi SVD of thin factors", () => {
  it("householderQR: Q has orthonormal columns, R is upper triangular, QR = M (tall and wide)", () => {
    for (const [m, n] of [
      [9, 4],
      [4, 9],
      [5, 5],
      [1, 3],
      [3, 1],
    ] as const) {
      const M = randMat(m, n, m * 31 + n); // column-major input
      const { Q, R, p } = householderQR(M, m, n);
      for (let a = 0; a < p; a++)
        for (let b = 0; b < p; b++) {
          let s = 0;
          for (let i = 0; i < m; i++) s += Q[a * m + i]! * Q[b * m + i]!;
          expect(Math.abs(s - (a === b ? 1 : 0))).toBeLessThan(1e-13);
        }
      for (let i = 0; i < p; i++) for (let c = 0; c < Math.min(i, n); c++) expect(R[i * n + c]).toBe(0);
      for (let i = 0; i < m; i++)
        for (let c = 0; c < n; c++) {
          let s = 0;
          for (let t = 0; t < p; t++) s += Q[t * m + i]! * R[t * n + c]!;
          expect(Math.abs(s - M[c * m + i]!)).toBeLessThan(1e-13);
        }
    }
  });

  it("jacobiSVD reconstructs the matrix with orthonormal factors and sorted singular values", () => {
    for (const [m, n] of [
      [6, 3],
      [3, 6],
      [4, 4],
    ] as const) {
      const M = randMat(m, n, 7 * m + n);
      const { U, S, V, q } = jacobiSVD(M, m, n);
      for (let i = 1; i < q; i++) expect(S[i]!).toBeLessThanOrEqual(S[i - 1]!);
      for (let i = 0; i < m; i++)
        for (let j = 0; j < n; j++) {
          let s = 0;
          for (let t = 0; t < q; t++) s += U[i * q + t]! * S[t]! * V[j * q + t]!;
          expect(Math.abs(s - M[i * n + j]!)).toBeLessThan(1e-12);
        }
    }
  });

  it("property: bestRankK is the Eckart-Young optimum computed by brute force on the dense product", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 9 }),
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 1, max: 9 }),
        fc.integer({ min: 0, max: 6 }),
        fc.integer(),
        (m, r, n, k, seed) => {
          const L = randMat(m, r, seed);
          const R = randMat(r, n, seed ^ 0x5bd1e995);
          const D = matmul(L, R, m, r, n);
          const res = bestRankK({ left: L, right: R, m, r, n, k });
          const kk = res.A.length / n;
          expect(kk).toBe(Math.min(k, m, n, r));
          const approx = matmul(res.B, res.A, m, kk, n);
          const err2 = frob2(D.map((x, i) => x - approx[i]!));
          // the reported discarded energy is the true squared error
          expect(Math.abs(err2 - res.discardedEnergy)).toBeLessThan(1e-10 * (1 + frob2(D)));
          expect(Math.abs(res.totalEnergy - frob2(D))).toBeLessThan(1e-10 * (1 + frob2(D)));
          // brute force: singular values of the dense product (an independent path: Jacobi on m x n)
          const dense = jacobiSVD(D, m, n).S;
          for (let i = 0; i < res.singularValues.length; i++)
            expect(Math.abs(res.singularValues[i]! - dense[i]!)).toBeLessThan(1e-10 * (1 + dense[0]!));
          let tail = 0;
          for (let i = kk; i < dense.length; i++) tail += dense[i]! ** 2;
          expect(Math.abs(err2 - tail)).toBeLessThan(1e-10 * (1 + frob2(D)));
        },
      ),
      { numRuns: 200 },
    );
  });

  it("matches torch.linalg.svdvals of every fixture module's float64 delta", () => {
    for (const f of adapterFolders()) {
      const src = readAdapter(f.dir);
      const { adapter } = importPeft({
        config: src.configText,
        weights: src.weights,
        adapterName: f.adapterName,
        base: baseShapesFromConfig({ config: readJson(join(baseDir(f.fixture), "config.json")) }),
      });
      const sv = (
        JSON.parse(readFileSync(join(PEFT_DIR, "adapters", f.fixture.name, "singular-values.json"), "utf8")) as {
          modules: Record<string, number[]>;
        }
      ).modules;
      const res = expandToLora({ adapter, rank: 1 });
      for (const m of res.report.modules) {
        const want = sv[`${f.refPrefix}${m.name}`]!;
        const total = want.reduce((s, x) => s + x * x, 0);
        const rel = Math.sqrt(want.slice(1).reduce((s, x) => s + x * x, 0) / total);
        expect(Math.abs(m.relativeError - rel), m.name).toBeLessThan(1e-6);
      }
    }
  });

  it("--rank K: a valid LoRA of rank K whose delta is the reported distance from the VeRA delta", () => {
    const dir = join(PEFT_DIR, "adapters/gpt2-conv1d");
    const src = readAdapter(dir);
    const { adapter } = importPeft({
      config: src.configText,
      weights: src.weights,
      base: baseShapesFromConfig({ config: readJson(join(PEFT_DIR, "bases/gpt2/config.json")) }),
    });
    const exact = parseSafetensors(expandToLora({ adapter }).safetensors);
    const res = expandToLora({ adapter, rank: 3 });
    expect(res.report.exact).toBe(false);
    expect(res.report.rank).toBe(3);
    const lora = parseSafetensors(res.safetensors);
    let num = 0;
    let den = 0;
    for (const m of adapter.modules) {
      const key = `base_model.model.${m.name}`;
      const a = Float64Array.from(asFloat32(tensorBytes(lora, `${key}.lora_A.weight`)));
      const b = Float64Array.from(asFloat32(tensorBytes(lora, `${key}.lora_B.weight`)));
      expect(lora.tensors.get(`${key}.lora_A.weight`)!.shape).toEqual([3, m.inFeatures]);
      const got = matmul(b, a, m.outFeatures, 3, m.inFeatures);
      const ea = Float64Array.from(asFloat32(tensorBytes(exact, `${key}.lora_A.weight`)));
      const eb = Float64Array.from(asFloat32(tensorBytes(exact, `${key}.lora_B.weight`)));
      const want = matmul(eb, ea, m.outFeatures, adapter.rank, m.inFeatures);
      const e = frob2(want.map((x, i) => x - got[i]!));
      const rel = Math.sqrt(e / frob2(want));
      const reported = res.report.modules.find((x) => x.name === m.name)!.relativeError;
      expect(Math.abs(rel - reported)).toBeLessThan(1e-5);
      num += e;
      den += frob2(want);
    }
    expect(Math.abs(Math.sqrt(num / den) - res.report.totalRelativeError)).toBeLessThan(1e-5);
  });

  it("rankPattern sets per-module ranks and writes rank_pattern / alpha_pattern", () => {
    const dir = join(PEFT_DIR, "adapters/llama-gqa-sp");
    const src = readAdapter(dir);
    const { adapter } = importPeft({
      config: src.configText,
      weights: src.weights,
      base: baseShapesFromConfig({ config: readJson(join(PEFT_DIR, "bases/llama/config.json")) }),
    });
    const name = adapter.modules[0]!.name;
    const res = expandToLora({ adapter, rankPattern: { [name]: 2 } });
    expect(res.report.modules.find((m) => m.name === name)!.rank).toBe(2);
    expect(res.report.modules.filter((m) => m.rank === adapter.rank)).toHaveLength(adapter.modules.length - 1);
    expect(res.configJson).toContain(`"rank_pattern": {\n    "${name}": 2\n  }`);
    expect(res.configJson).toContain(`"alpha_pattern": {\n    "${name}": 2\n  }`);
    // total error over all modules (the exact ones count in the denominator)
    const exact = parseSafetensors(expandToLora({ adapter }).safetensors);
    let num = 0;
    let den = 0;
    const lora = parseSafetensors(res.safetensors);
    for (const m of adapter.modules) {
      const key = `base_model.model.${m.name}`;
      const k = m.name === name ? 2 : adapter.rank;
      const get = (f: typeof lora, t: string) => Float64Array.from(asFloat32(tensorBytes(f, `${key}.${t}.weight`)));
      const want = matmul(get(exact, "lora_B"), get(exact, "lora_A"), m.outFeatures, adapter.rank, m.inFeatures);
      const got = matmul(get(lora, "lora_B"), get(lora, "lora_A"), m.outFeatures, k, m.inFeatures);
      num += frob2(want.map((x, i) => x - got[i]!));
      den += frob2(want);
    }
    expect(Math.abs(Math.sqrt(num / den) - res.report.totalRelativeError)).toBeLessThan(1e-5);
  });
});

import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  baseShapesFromConfig,
  expandToLora,
  expandToLoraStream,
  importPeft,
  PeftErrorCode,
} from "../src/peft/index.js";
import { parsePyJson, type PyJson } from "../src/peft/py-json.js";
import { generateProjections } from "../src/projections/generate.js";
import { asFloat32, parseSafetensors, tensorBytes, type SafetensorsFile } from "../src/safetensors/parse.js";
import { adapterFolders, baseDir, PEFT_DIR, readAdapter, readBytes, readJson } from "./peft-fixtures.js";

function f64(file: SafetensorsFile, key: string): Float64Array {
  const b = tensorBytes(file, key).slice();
  return new Float64Array(b.buffer);
}
function f32(file: SafetensorsFile, key: string): Float32Array {
  return asFloat32(tensorBytes(file, key));
}
function load(dir: string, adapterName: string, base: string) {
  const src = readAdapter(dir);
  return importPeft({
    config: src.configText,
    weights: src.weights,
    adapterName,
    base: baseShapesFromConfig({ config: readJson(join(base, "config.json")) }),
  });
}
function plain(v: PyJson): unknown {
  if (Array.isArray(v)) return v.map(plain);
  if (v instanceof Map) return Object.fromEntries([...v].map(([k, x]) => [k, plain(x)]));
  if (v !== null && typeof v === "object") return v.kind === "int" ? `int:${v.value}` : `float:${v.value}`;
  return v;
}

describe("expand-lora: exact LoRA equivalent of every fixture", () => {
  for (const f of adapterFolders()) {
    it(`${f.fixture.name}/${f.adapterName}: PEFT's LoRA delta (B @ A * alpha / r) equals torch's float64 VeRA delta to float32 rounding`, () => {
      const { adapter } = load(f.dir, f.adapterName, baseDir(f.fixture));
      const res = expandToLora({ adapter });
      expect(res.report.exact).toBe(true);
      const cfg = plain(parsePyJson(res.configJson)) as Record<string, unknown>;
      expect(cfg["peft_type"]).toBe("LORA");
      expect(cfg["r"]).toBe(`int:${adapter.rank}`);
      expect(cfg["lora_alpha"]).toBe(`int:${adapter.rank}`);
      expect(cfg["fan_in_fan_out"]).toBe(adapter.modules.some((m) => m.layout === "conv1d"));
      const scaling = 1; // lora_alpha / r
      const lora = parseSafetensors(res.safetensors);
      const ref = parseSafetensors(readBytes(join(PEFT_DIR, "adapters", f.fixture.name, "reference.safetensors")));
      const { A: PA, B: PB } = generateProjections({
        seed: adapter.prng.seed,
        rank: adapter.rank,
        maxIn: adapter.maxIn,
        maxOut: adapter.maxOut,
        rounding: adapter.projectionRounding,
      });
      let checked = 0;
      for (const m of adapter.modules) {
        const key = `base_model.model.${m.name}`;
        const la = f32(lora, `${key}.lora_A.weight`);
        const lb = f32(lora, `${key}.lora_B.weight`);
        const r = adapter.rank;
        expect(lora.tensors.get(`${key}.lora_A.weight`)!.shape).toEqual([r, m.inFeatures]);
        expect(lora.tensors.get(`${key}.lora_B.weight`)!.shape).toEqual([m.outFeatures, r]);
        const want = f64(ref, `${f.refPrefix}${m.name}`);
        expect(want.length).toBe(m.outFeatures * m.inFeatures);
        for (let i = 0; i < m.outFeatures; i++)
          for (let j = 0; j < m.inFeatures; j++) {
            let s = 0;
            let bound = 0;
            for (let k = 0; k < r; k++) {
              s += lb[i * r + k]! * la[k * m.inFeatures + j]!;
              bound += Math.abs(m.lambdaB[i]! * PB[i * r + k]! * m.lambdaD[k]! * PA[k * adapter.maxIn + j]!);
            }
            const got = s * scaling;
            const err = Math.abs(got - want[i * m.inFeatures + j]!);
            // each LoRA factor entry is one float32 rounding of an exact product: |err| <= 2 u sum|terms| (u = 2^-24)
            if (!(err <= 2.0000001 * 2 ** -24 * bound + 1e-300))
              throw new Error(`${m.name}[${i},${j}]: ${got} vs ${want[i * m.inFeatures + j]} (bound ${bound})`);
            checked++;
          }
      }
      expect(checked).toBeGreaterThan(1000);
    });
  }

  it("is only row scaling: lora_A = d[:, None] * A[:, :in] and lora_B = b[:, None] * B[:out, :] bit for bit (float32 products)", () => {
    const src = readAdapter(join(PEFT_DIR, "adapters/llama-gqa-sp"));
    const { adapter } = load(join(PEFT_DIR, "adapters/llama-gqa-sp"), "default", join(PEFT_DIR, "bases/llama"));
    const lora = parseSafetensors(expandToLora({ adapter }).safetensors);
    const A = f32(src.weights, "base_model.vera_A");
    const B = f32(src.weights, "base_model.vera_B");
    for (const m of adapter.modules) {
      const la = f32(lora, `base_model.model.${m.name}.lora_A.weight`);
      const lb = f32(lora, `base_model.model.${m.name}.lora_B.weight`);
      for (let k = 0; k < adapter.rank; k++)
        for (let j = 0; j < m.inFeatures; j++)
          expect(la[k * m.inFeatures + j]).toBe(Math.fround(m.lambdaD[k]! * A[k * adapter.maxIn + j]!));
      for (let i = 0; i < m.outFeatures; i++)
        for (let k = 0; k < adapter.rank; k++)
          expect(lb[i * adapter.rank + k]).toBe(Math.fround(m.lambdaB[i]! * B[i * adapter.rank + k]!));
    }
  });

  for (const [name, lref] of [
    ["llama-gqa-sp", "llama-gqa-sp"],
    ["gpt2-seqcls-bias", "gpt2-seqcls-bias"],
  ] as const) {
    it(`${name}: config and tensor keys/shapes are those real PEFT writes for the same LoRA (lora-reference/${lref})`, () => {
      const fx = adapterFolders().find((x) => x.fixture.name === name)!;
      const { adapter } = load(fx.dir, "default", baseDir(fx.fixture));
      const res = expandToLora({ adapter });
      const ours = plain(parsePyJson(res.configJson)) as Record<string, unknown>;
      const refDir = join(PEFT_DIR, "lora-reference", lref);
      const theirs = plain(parsePyJson(readAdapter(refDir).configText)) as Record<string, unknown>;
      expect((ours["target_modules"] as string[]).slice().sort()).toEqual(
        (theirs["target_modules"] as string[]).slice().sort(),
      );
      delete ours["target_modules"];
      delete theirs["target_modules"];
      expect(ours).toEqual(theirs);
      const a = parseSafetensors(res.safetensors);
      const b = readAdapter(refDir).weights;
      const sig = (f: SafetensorsFile) => [...f.tensors].map(([k, i]) => `${k} ${i.dtype} ${i.shape.join("x")}`);
      expect(sig(a)).toEqual(sig(b));
      // carried tensors are byte-identical to the VeRA file's
      for (const k of res.report.carriedTensors)
        expect(Buffer.from(tensorBytes(a, k))).toEqual(Buffer.from(tensorBytes(fx && readAdapter(fx.dir).weights, k)));
    });
  }

  it("the streamed expansion, filled in any order, gives the same bytes and report as the in-memory one", () => {
    const fx = adapterFolders().find((x) => x.fixture.name === "gpt2-seqcls-bias")!;
    const { adapter } = load(fx.dir, "default", baseDir(fx.fixture));
    for (const rank of [undefined, 2]) {
      const whole = expandToLora({ adapter, ...(rank ? { rank } : {}) });
      const st = expandToLoraStream({ adapter, ...(rank ? { rank } : {}) });
      const bytes = new Uint8Array(st.size);
      bytes.set(st.header);
      const starts: number[] = [];
      let pos = st.header.length;
      for (const t of st.tensors) {
        starts.push(pos);
        pos += t.byteLength;
      }
      expect(pos).toBe(st.size);
      for (const i of st.tensors.map((_, i) => i).reverse())
        st.fill(i, bytes.subarray(starts[i]!, starts[i]! + st.tensors[i]!.byteLength));
      expect(Buffer.from(bytes).equals(Buffer.from(whole.safetensors))).toBe(true);
      expect(st.report()).toEqual(whole.report);
      expect(st.configJson).toBe(whole.configJson);
    }
  });

  it("rejects a rank outside 1..r and unknown rankPattern modules", () => {
    const { adapter } = load(join(PEFT_DIR, "adapters/llama-gqa-sp"), "default", join(PEFT_DIR, "bases/llama"));
    for (const rank of [0, 9, 1.5])
      expect(() => expandToLora({ adapter, rank })).toThrowError(
        expect.objectContaining({ code: PeftErrorCode.PEFT_LORA_RANK }),
      );
    expect(() => expandToLora({ adapter, rankPattern: { nope: 2 } })).toThrowError(
      expect.objectContaining({ code: PeftErrorCode.PEFT_LORA_RANK }),
    );
  });

  it("--peft-compat 0.13 keeps only the fields PEFT 0.11-0.13's LoraConfig knows", () => {
    const { adapter } = load(join(PEFT_DIR, "adapters/llama-gqa-sp"), "default", join(PEFT_DIR, "bases/llama"));
    const res = expandToLora({ adapter, peftCompat: "0.13" });
    const keys = Object.keys(plain(parsePyJson(res.configJson)) as object);
    expect(keys).not.toContain("peft_version");
    expect(keys).not.toContain("exclude_modules");
    expect(keys).toContain("lora_alpha");
    expect(res.report.droppedFields).toContain("peft_version");
  });
});

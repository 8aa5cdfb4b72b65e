/**
 * PVeRA adapters made by real PEFT 0.21 (fixtures/peft/generate_pvera.py) import as the VeRA adapter their inference
 * computes: every module's delta equals merge_and_unload()'s (merged-delta.safetensors), and PVeRA's projections are
 * drawn bit for bit when the file does not store them. export-peft writes PVeRA's own folder back (checked in PEFT
 * itself by fixtures/zoo/verify_export_peft.py).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { VeraAdapter } from "../src/format/types.js";
import { loadAdapterFromPath } from "../src/node/load-adapter.js";
import { readBaseShapes } from "../src/node/read-base-shapes.js";
import { writeVera } from "../src/format/write.js";
import { readVera } from "../src/format/validate.js";
import { asFloat32, parseSafetensors, tensorBytes } from "../src/safetensors/parse.js";
import { runCli as run } from "./cli-helpers.js";
import { errorCode as code } from "./error-helpers.js";
import { importPeft } from "../src/peft/import-peft.js";
import { mergeCheckpoint } from "../src/merge/index.js";
import { useTempDirs } from "./temp-helpers.js";
import { exportPeft } from "../src/peft/export-peft.js";
import { expandToLora } from "../src/peft/expand-to-lora.js";
import { carriedTensorTargets } from "../src/peft/carried-tensors.js";
import { PVERA_LOGVAR_A } from "../src/peft/pvera-keys.js";

const tmp = useTempDirs("vera-pvera-");

const PEFT = join(__dirname, "../fixtures/peft");
const BASE = join(PEFT, "bases/llama/config.json");
const A = (n: string) => join(PEFT, "adapters", n);

/** delta W (out, in) of one module, in float64, from the adapter's own stored projections. */
function delta(a: VeraAdapter, name: string): Float64Array {
  const m = a.modules.find((x) => x.name === name)!;
  const P = a.storedProjections!;
  const out = new Float64Array(m.outFeatures * m.inFeatures);
  for (let o = 0; o < m.outFeatures; o++)
    for (let i = 0; i < m.inFeatures; i++) {
      let s = 0;
      for (let k = 0; k < a.rank; k++) s += P.B[o * a.rank + k]! * m.lambdaD[k]! * P.A[k * a.maxIn + i]!;
      out[o * m.inFeatures + i] = m.lambdaB[o]! * s;
    }
  return out;
}

describe("PVeRA (PEFT 0.21) imports as VeRA", () => {
  for (const name of ["pvera-llama-sp", "pvera-llama-nosp"])
    it(`${name}: every module's delta is merge_and_unload()'s within 1e-6`, async () => {
      const { adapter, imported } = await loadAdapterFromPath({
        path: A(name),
        readBase: () => readBaseShapes({ path: BASE }),
      });
      expect(imported!.method).toBe("PVERA");
      expect(imported!.projections.storage).toBe("stored");
      expect(imported!.warnings.join(" ")).toMatch(/PVeRA/);
      const want = parseSafetensors(new Uint8Array(readFileSync(join(A(name), "merged-delta.safetensors"))));
      expect(adapter.modules.map((m) => m.name).sort()).toEqual([...want.tensors.keys()].sort());
      let worst = 0;
      for (const m of adapter.modules) {
        const w = asFloat32(tensorBytes(want, m.name));
        const got = delta(adapter, m.name);
        for (let k = 0; k < w.length; k++) worst = Math.max(worst, Math.abs(got[k]! - w[k]!));
      }
      expect(worst).toBeLessThan(1e-6);
      // the verakit file round-trips the projections
      expect(readVera(writeVera({ adapter })).storedProjections!.B).toEqual(adapter.storedProjections!.B);
    });

  it("vera merge into the llama checkpoint: merged weight = base + merge_and_unload()'s delta within 1e-6", async () => {
    const out = join(tmp(), "merged");
    await mergeCheckpoint({
      model: join(PEFT, "bases/llama"),
      adapter: A("pvera-llama-nosp"),
      output: out,
      durable: false,
    });
    const read = (p: string) => parseSafetensors(new Uint8Array(readFileSync(p)));
    const base = read(join(PEFT, "bases/llama/model.safetensors"));
    const merged = read(join(out, "model.safetensors"));
    const want = read(join(A("pvera-llama-nosp"), "merged-delta.safetensors"));
    let worst = 0;
    for (const m of want.tensors.keys()) {
      const [b, g, d] = [base, merged, want].map((f, k) => asFloat32(tensorBytes(f, k === 2 ? m : `${m}.weight`)));
      for (let i = 0; i < d!.length; i++) worst = Math.max(worst, Math.abs(g![i]! - (b![i]! + d![i]!)));
    }
    expect(worst).toBeLessThan(1e-6);
  });

  it("projections drawn for a file without them equal those PEFT stored, bit for bit", async () => {
    const sp = (
      await loadAdapterFromPath({ path: A("pvera-llama-sp"), readBase: () => readBaseShapes({ path: BASE }) })
    ).adapter;
    const nosp = (
      await loadAdapterFromPath({ path: A("pvera-llama-nosp"), readBase: () => readBaseShapes({ path: BASE }) })
    ).adapter;
    expect(Buffer.from(nosp.storedProjections!.A.buffer).equals(Buffer.from(sp.storedProjections!.A.buffer))).toBe(
      true,
    );
    expect(Buffer.from(nosp.storedProjections!.B.buffer).equals(Buffer.from(sp.storedProjections!.B.buffer))).toBe(
      true,
    );
  });

  it("sampling at inference is refused by name (PEFT_NOT_VERA); inspect names peft_type PVERA and its modules", async () => {
    const cfg = readFileSync(join(A("pvera-llama-sp"), "adapter_config.json"), "utf8");
    const weights = parseSafetensors(
      new Uint8Array(readFileSync(join(A("pvera-llama-sp"), "adapter_model.safetensors"))),
    );
    const sampling = cfg.replace('"sample_at_inference": false', '"sample_at_inference": true');
    expect(code(() => importPeft({ config: sampling, weights }))).toBe("PEFT_NOT_VERA");
    const j = JSON.parse((await run(["inspect", A("pvera-llama-sp"), "--json"])).stdout);
    expect(j).toMatchObject({
      peftType: "PVERA",
      moduleCount: 6,
      carried: [],
      projections: { stored: true, A: [8, 48] },
    });
  });
});

describe("PVeRA export-peft writes PVeRA's folder", () => {
  const load = async (name: string): Promise<VeraAdapter> =>
    (await loadAdapterFromPath({ path: A(name), readBase: () => readBaseShapes({ path: BASE }) })).adapter;

  for (const name of ["pvera-llama-sp", "pvera-llama-nosp"])
    it(`${name}: PEFT's two files back, byte for byte, through a verakit file`, async () => {
      const adapter = readVera(writeVera({ adapter: await load(name) }));
      const back = exportPeft({ adapter });
      expect(back.configJson).toBe(readFileSync(join(A(name), "adapter_config.json"), "utf8"));
      const orig = readFileSync(join(A(name), "adapter_model.safetensors"));
      expect(Buffer.from(back.safetensors).equals(orig)).toBe(true);
      // the PVeRA-only halves stay out of every other path: not carried tensors for merges, grafts or LoRA
      expect(carriedTensorTargets({ adapter })).toEqual([]);
      const lora = parseSafetensors(expandToLora({ adapter }).safetensors);
      expect([...lora.tensors.keys()].filter((k) => !/\.lora_[AB]\.weight$/.test(k))).toEqual([]);
    });

  it("refuses what it cannot write as PVeRA: a missing log-variance half, PEFT < 0.21, other projections unsaved", async () => {
    const adapter = await load("pvera-llama-sp");
    const noHalf = { ...adapter, extraTensors: adapter.extraTensors!.filter((t) => t.name !== PVERA_LOGVAR_A) };
    expect(code(() => exportPeft({ adapter: noHalf }))).toBe("PEFT_PVERA_INCOMPLETE");
    const noD = { ...adapter, extraTensors: adapter.extraTensors!.filter((t) => !t.name.includes("q_proj")) };
    expect(code(() => exportPeft({ adapter: noD }))).toBe("PEFT_PVERA_INCOMPLETE");
    expect(code(() => exportPeft({ adapter, peftCompat: "0.20.0" }))).toBe("PEFT_COMPAT");
    // the seed's own projections may be left for PEFT to draw; changed ones may not
    const unsaved = exportPeft({ adapter, saveProjection: false });
    expect(JSON.parse(unsaved.configJson)).toMatchObject({ peft_type: "PVERA", save_projection: false });
    expect(
      [...parseSafetensors(unsaved.safetensors).tensors.keys()].some((k) => k.startsWith("base_model.pvera_")),
    ).toBe(false);
    const B = adapter.storedProjections!.B.slice();
    B[3] = B[3]! * 2;
    const other = { ...adapter, storedProjections: { A: adapter.storedProjections!.A, B } };
    expect(code(() => exportPeft({ adapter: other, saveProjection: false }))).toBe("PEFT_PROJECTION_NOT_REGENERABLE");
    expect(code(() => exportPeft({ adapter: other }))).toBe("OK");
  });

  it("the zoo's exported folders load in PEFT with PEFT's logits (fixtures/zoo/verify_export_peft.py's record)", () => {
    const rec = JSON.parse(readFileSync(join(__dirname, "../fixtures/zoo/export-peft-check.json"), "utf8")) as {
      tools: { peft: string };
      families: Record<string, Record<string, string | number>>;
    };
    expect(rec.tools.peft).toBe("0.21.0");
    const zoo = JSON.parse(readFileSync(join(__dirname, "../fixtures/zoo/MANIFEST.json"), "utf8")) as {
      families: object;
    };
    // the record covers exactly the zoo's families: a family added later fails this until the script runs again
    expect(Object.keys(rec.families).sort()).toEqual(Object.keys(zoo.families).sort());
    for (const [family, r] of Object.entries(rec.families)) {
      expect([family, r["error"]]).toEqual([family, undefined]);
      expect([family, r["peft_type_loaded"]]).toEqual([family, r["peft_type_original"]]);
      expect(r["logits_vs_peft_max_abs"] as number).toBeLessThan(1e-5);
    }
    expect(rec.families["llama_pvera"]).toMatchObject({
      peft_type_written: "PVERA",
      adapted_layer_class: "peft.tuners.pvera.layer.Linear",
    });
  });
});

/**
 * Grafting a PVeRA adapter (the zoo's llama_pvera, made by real PEFT 0.21): its projections are stored (no seed
 * regenerates them), so the grafted graph holds them as initializers and records their SHA-256; only adapters with the
 * same stored projections can be fed to it, one per run or one per row of a batched graph. Adapters with other
 * projections (another PVeRA training, a plain VeRA adapter) are refused by name, never run with the wrong matrices.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { VeraAdapter } from "../src/format/types.js";
import { loadAdapterFromPath } from "../src/node/load-adapter.js";
import { readBaseShapes } from "../src/node/read-base-shapes.js";
import { asFloat32, parseSafetensors, tensorBytes } from "../src/safetensors/parse.js";
import {
  adapterFeeds,
  encodeGraftSpec,
  parseGraftSpec,
  readGraftSpec,
  storedProjectionsDigest,
  writeOnnxAdapter,
} from "../src/serve/index.js";
import { graftOnnxFile } from "../src/serve/node/index.js";
import { errorCode } from "./error-helpers.js";
import { runLogits } from "./serve-helpers.js";
import { useTempDirs } from "./temp-helpers.js";

const tmp = useTempDirs("vera-serve-pvera-");
const ZOO = join(__dirname, "../fixtures/zoo");
const PV = join(ZOO, "llama_pvera");
const IDS = JSON.parse(readFileSync(join(PV, "case.json"), "utf8")).inputs[0].data as number[];
const ids = [IDS.slice(0, 8), IDS.slice(8)];

async function adapterOf(family: string): Promise<VeraAdapter> {
  const dir = join(ZOO, family);
  return (
    await loadAdapterFromPath({
      path: join(dir, "adapter"),
      readBase: () => readBaseShapes({ path: join(dir, "model.onnx") }),
    })
  ).adapter;
}

function logits(): { peft: Float32Array; base: Float32Array } {
  const f = parseSafetensors(new Uint8Array(readFileSync(join(PV, "logits.safetensors"))));
  return { peft: asFloat32(tensorBytes(f, "peft").slice()), base: asFloat32(tensorBytes(f, "base").slice()) };
}

function maxAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** The same adapter with one value of its stored B changed (as another PVeRA training would have). */
function otherProjections(a: VeraAdapter): VeraAdapter {
  const B = a.storedProjections!.B.slice();
  B[0] = B[0]! + 0.5;
  return { ...a, storedProjections: { A: a.storedProjections!.A, B } };
}

describe("graft with stored projections (PVeRA)", () => {
  it("records the projections' digest; the graph computes PEFT's logits; rows of a batch need the same projections", async () => {
    const pv = await adapterOf("llama_pvera");
    const out = join(tmp(), "batched.onnx");
    await graftOnnxFile({ model: join(PV, "model.onnx"), adapter: join(PV, "adapter"), output: out, batched: true });
    const spec = readGraftSpec({ bytes: new Uint8Array(readFileSync(out)) });
    expect(spec.storedProjections?.sha256).toBe(storedProjectionsDigest(pv));
    expect(parseGraftSpec(encodeGraftSpec(spec))).toEqual(spec);
    // row 0 with the adapter, row 1 the base model: each row matches its reference
    const got = await runLogits(out, ids, adapterFeeds({ spec, adapters: [pv, null] }).feeds);
    const ref = logits();
    const half = ref.peft.length / 2;
    expect(maxAbs(got.slice(0, half), ref.peft.slice(0, half))).toBeLessThan(1e-4);
    expect(maxAbs(got.slice(half), ref.base.slice(half))).toBeLessThan(1e-5);

    // another PVeRA training's projections, or a VeRA adapter's regenerated ones, cannot share this graph
    const err = (() => {
      try {
        adapterFeeds({ spec, adapters: [pv, otherProjections(pv)] });
      } catch (e) {
        return e as { code: string; issues: Array<{ path?: string; message: string }> };
      }
      return undefined;
    })();
    expect(err?.code).toBe("SERVE_SPEC_MISMATCH");
    expect(err?.issues.map((i) => i.path)).toContain("adapters[1].storedProjections");
    expect(err?.issues.find((i) => i.path === "adapters[1].storedProjections")?.message).toMatch(/own graft/);
    const regenerating: VeraAdapter = { ...pv };
    delete regenerating.storedProjections;
    expect(errorCode(() => adapterFeeds({ spec, adapters: [regenerating] }))).toBe("SERVE_SPEC_MISMATCH");
  });

  it("a graph grafted for regenerated projections refuses a PVeRA adapter, and the reverse", async () => {
    const out = join(tmp(), "vera.onnx");
    // the llama family: same architecture and module shapes, a VeRA adapter (regenerated projections)
    await graftOnnxFile({
      model: join(ZOO, "llama", "model.onnx"),
      adapter: join(ZOO, "llama", "adapter"),
      output: out,
    });
    const spec = readGraftSpec({ bytes: new Uint8Array(readFileSync(out)) });
    expect(spec.storedProjections).toBeUndefined();
    const pv = { ...(await adapterOf("llama_pvera")), prng: spec.prng };
    expect(errorCode(() => adapterFeeds({ spec, adapter: pv }))).toBe("SERVE_SPEC_MISMATCH");
    expect(errorCode(() => writeOnnxAdapter({ adapter: pv, spec }))).toBe("SERVE_SPEC_MISMATCH");
    // without the graph's record, an adapter file for stored projections cannot be checked: refused
    expect(errorCode(() => writeOnnxAdapter({ adapter: pv }))).toBe("SERVE_SPEC_MISMATCH");
  });

  it("a malformed digest in the record is SERVE_NOT_GRAFTED", async () => {
    const pv = await adapterOf("llama_pvera");
    const out = join(tmp(), "one.onnx");
    await graftOnnxFile({ model: join(PV, "model.onnx"), adapter: join(PV, "adapter"), output: out });
    const spec = readGraftSpec({ bytes: new Uint8Array(readFileSync(out)) });
    const text = encodeGraftSpec(spec).replace(storedProjectionsDigest(pv)!, "not-a-digest");
    expect(errorCode(() => parseGraftSpec(text))).toBe("SERVE_NOT_GRAFTED");
  });
});

describe("onnxruntime's LoraAdapter (fixtures/zoo/verify_onnx_adapter.py's record)", () => {
  // Every family's bounds are asserted by test/zoo-onnx-checks.test.ts; this is PVeRA's own line of that record.
  it("runs PVeRA's .onnx_adapter on its stored projections within 1e-6 of PEFT, default and --defaults grafts", () => {
    const rec = JSON.parse(readFileSync(join(ZOO, "onnx-adapter-check.json"), "utf8")) as {
      families: Record<
        string,
        { refused?: string; default_graft_vs_peft_max_abs?: number; defaults_graft_vs_peft_max_abs?: number }
      >;
    };
    const pv = rec.families["llama_pvera"]!;
    expect(pv.refused).toBeUndefined();
    expect(pv.default_graft_vs_peft_max_abs!).toBeLessThan(1e-6);
    expect(pv.defaults_graft_vs_peft_max_abs!).toBeLessThan(1e-6);
  });
});

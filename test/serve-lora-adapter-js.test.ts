/**
 * onnxruntime's adapter API from JavaScript (onnxruntime-common 1.31: LoraAdapter, RunOptions.activeLoraAdapters) with
 * verakit's .onnx_adapter files for grafted models, in Node: onnxruntime-web's WebAssembly backend honours it,
 * onnxruntime-node 1.31 has no LoRA support at all (observed, asserted here so that a change shows).
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { VeraAdapter } from "../src/format/types.js";
import { adapterFeeds, writeOnnxAdapter, type GraftSpec } from "../src/serve/index.js";
import { graftOnnxFile } from "../src/serve/node/index.js";
import { loadOrt } from "./onnx-helpers.js";
import { caseAdapter, loadCase, maxDiff, peftLogits } from "./serve-helpers.js";

type Web = typeof import("onnxruntime-web");
const work = mkdtempSync(join(tmpdir(), "vera-lora-js-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const c = loadCase("llama-dynamo");
const ids = [c.input_ids[0]!];
let adapters: VeraAdapter[];
let plain: { path: string; spec: GraftSpec };
let withDefaults: { path: string; spec: GraftSpec };
let web: Web;

beforeAll(async () => {
  adapters = await Promise.all(c.adapters.map((a) => caseAdapter(c, a)));
  const graft = async (name: string, defaults: boolean) => {
    const path = join(work, name, "model.onnx");
    const r = await graftOnnxFile({ model: c.modelPath, adapter: join(c.adapterDir, "a1"), output: path, defaults });
    return { path, spec: r.spec };
  };
  plain = await graft("plain", false);
  withDefaults = await graft("defaults", true);
  web = (await import("onnxruntime-web")) as Web;
  web.env.wasm.numThreads = 1;
}, 120_000);

async function webSession(path: string) {
  return web.InferenceSession.create(new Uint8Array(readFileSync(path)), {
    executionProviders: ["wasm"],
    logSeverityLevel: 3,
    externalData: [
      { path: "model.onnx.data", data: new Uint8Array(readFileSync(join(path, "..", "model.onnx.data"))) },
    ],
  });
}

function idsTensor(ort: { Tensor: Web["Tensor"] }) {
  return new ort.Tensor(
    "int64",
    BigInt64Array.from(ids.flat(), (x) => BigInt(x)),
    [1, ids[0]!.length],
  );
}

describe(
  "onnxruntime-web (WebAssembly, in Node): LoraAdapter with verakit's .onnx_adapter files",
  { timeout: 120_000 },
  () => {
    it("on a graft made with defaults, each adapter file gives the logits of feeding its vectors, and PEFT's", async () => {
      const peft = peftLogits("llama-dynamo");
      const rowSize = peft.base!.length / c.input_ids.length;
      const files = await webSession(withDefaults.path);
      const fed = await webSession(plain.path);
      try {
        expect(files.inputNames).toEqual(["input_ids"]);
        for (let i = 0; i < adapters.length; i++) {
          const file = writeOnnxAdapter({ adapter: adapters[i]!, spec: withDefaults.spec }).bytes;
          const lora = await web.LoraAdapter.create(file);
          try {
            const viaFile = (await files.run({ input_ids: idsTensor(web) }, { activeLoraAdapters: [lora] })).logits!
              .data as Float32Array;
            const inputs: Record<string, InstanceType<Web["Tensor"]>> = { input_ids: idsTensor(web) };
            for (const [k, t] of Object.entries(adapterFeeds({ adapter: adapters[i]!, spec: plain.spec }).feeds))
              inputs[k] = new web.Tensor(t.type, t.data, t.dims);
            const viaFeeds = (await fed.run(inputs)).logits!.data as Float32Array;
            expect(maxDiff(viaFile, viaFeeds)).toBeLessThanOrEqual(1e-6);
            expect(maxDiff(viaFile, peft[`a${i + 1}`]!.subarray(0, rowSize))).toBeLessThan(1e-4);
            expect(maxDiff(viaFile, peft.base!.subarray(0, rowSize))).toBeGreaterThan(1e-2);
          } finally {
            await lora.release();
          }
        }
      } finally {
        await files.release();
        await fed.release();
      }
    });

    it("on a graft with plain inputs (the default), onnxruntime-web asks for the inputs: an error, not a base run", async () => {
      const s = await webSession(plain.path);
      const lora = await web.LoraAdapter.create(writeOnnxAdapter({ adapter: adapters[0]!, spec: plain.spec }).bytes);
      try {
        await expect(s.run({ input_ids: idsTensor(web) }, { activeLoraAdapters: [lora] })).rejects.toThrow(
          /vera_lambda_[db]' is missing in 'feeds'/,
        );
      } finally {
        await lora.release();
        await s.release();
      }
    });
  },
);

describe("onnxruntime-node 1.31", () => {
  it("has no backend for LoraAdapter (observed): feed the vectors instead", async () => {
    const ort = await loadOrt();
    const file = writeOnnxAdapter({ adapter: adapters[0]!, spec: withDefaults.spec }).bytes;
    await expect(ort.LoraAdapter.create(file)).rejects.toThrow(/no available backend supports LoRA adapters/);
  });
});

/**
 * Classifier heads served per adapter (fixtures/serve/roberta-seq-cls, generate_heads.py): a real tiny
 * RobertaForSequenceClassification (dynamo export) and two real PEFT adapters with task_type SEQ_CLS (the classifier
 * in modules_to_save) and bias="vera_only" (trained query/value biases), each with its own head and biases. One graph,
 * grafted with default flags, serves both classifiers; a carried tensor that cannot be placed is refused by name.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { VeraAdapter } from "../src/format/types.js";
import { readOnnxModel } from "../src/onnx/index.js";
import {
  adapterFeeds,
  baseFeeds,
  graftOnnx,
  readOnnxAdapterFile,
  ServeErrorCode,
  writeOnnxAdapter,
  type GraftSpec,
} from "../src/serve/index.js";
import { graftOnnxFile } from "../src/serve/node/index.js";
import { parseSafetensors, tensorBytes } from "../src/safetensors/parse.js";
import { caseAdapter, loadCase, maxDiff, maxDiffRows, peftLogits, runLogits } from "./serve-helpers.js";

const work = mkdtempSync(join(tmpdir(), "vera-heads-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const c = loadCase("roberta-seq-cls");
const peft = peftLogits("roberta-seq-cls");
let adapters: VeraAdapter[];
let n = 0;

async function graft(batched: boolean): Promise<{ path: string; spec: GraftSpec; carried: number }> {
  const path = join(work, `g${n++}`, "model.onnx");
  const r = await graftOnnxFile({ model: c.modelPath, adapter: join(c.adapterDir, "a1"), output: path, batched });
  return { path, spec: r.spec, carried: r.carried.length };
}

beforeAll(async () => {
  adapters = await Promise.all(c.adapters.map((a) => caseAdapter(c, a)));
});

describe("roberta-seq-cls: two classifiers from one grafted graph (default flags)", () => {
  it("the adapters carry their heads and biases (modules_to_save, bias=vera_only), which differ", () => {
    for (const a of adapters) {
      const names = (a.extraTensors ?? []).map((t) => t.name);
      expect(names).toEqual(expect.arrayContaining(["base_model.model.classifier.out_proj.weight"]));
      expect(names.some((x) => x.endsWith("query.base_layer.bias"))).toBe(true);
    }
    expect(maxDiff(peft.a1!, peft.a2!)).toBeGreaterThan(1e-2);
  });

  it("each adapter's feeds give its PEFT logits within 1e-4; base feeds give the base's within 1e-5", async () => {
    const g = await graft(false);
    expect(g.carried).toBe(8); // classifier.dense/out_proj weight+bias, 4 query/value biases
    const rows = c.input_ids.length;
    const row = peft.base!.length / rows;
    for (let i = 0; i < adapters.length; i++) {
      const f = adapterFeeds({ adapter: adapters[i]!, spec: g.spec });
      expect(f.missing).toEqual([]);
      for (let r = 0; r < rows; r++) {
        const got = await runLogits(g.path, [c.input_ids[r]!], f.feeds);
        expect(maxDiffRows(got, peft[`a${i + 1}`]!, row, 0, r)).toBeLessThan(1e-4);
      }
    }
    const base = await runLogits(g.path, c.input_ids, baseFeeds({ spec: g.spec }).feeds);
    expect(maxDiff(base, peft.base!)).toBeLessThan(1e-5);
  });

  it("--batched: a1, a2 and the base in one run, each row its own classifier", async () => {
    const g = await graft(true);
    const ids = [c.input_ids[0]!, c.input_ids[1]!, c.input_ids[0]!];
    const f = adapterFeeds({ adapters: [adapters[0]!, adapters[1]!, null], spec: g.spec });
    const got = await runLogits(g.path, ids, f.feeds);
    const row = peft.base!.length / c.input_ids.length;
    expect(maxDiffRows(got, peft.a1!, row, 0, 0)).toBeLessThan(1e-4);
    expect(maxDiffRows(got, peft.a2!, row, 1, 1)).toBeLessThan(1e-4);
    expect(maxDiffRows(got, peft.base!, row, 2, 0)).toBeLessThan(1e-5);
  });

  it("the .onnx_adapter file carries the heads: its parameters are the feeds", async () => {
    const g = await graft(false);
    const file = writeOnnxAdapter({ adapter: adapters[1]!, spec: g.spec });
    const read = readOnnxAdapterFile(file.bytes);
    const feeds = adapterFeeds({ adapter: adapters[1]!, spec: g.spec }).feeds;
    expect(read.parameters.map((p) => p.name).sort()).toEqual(Object.keys(feeds).sort());
    for (const p of read.parameters) {
      expect(p.dims).toEqual(feeds[p.name]!.dims);
      expect(Array.from(p.data as Float32Array)).toEqual(Array.from(feeds[p.name]!.data));
    }
  });

  it("an adapter whose heads the graph does not serve is refused, never dropped", async () => {
    const model = readOnnxModel({ bytes: new Uint8Array(readFileSync(c.modelPath)) });
    const bare = { ...adapters[0]!, extraTensors: [] };
    const g = graftOnnx({ model, adapter: bare });
    expect(g.spec.carried).toBeUndefined();
    expect(() => adapterFeeds({ adapter: adapters[0]!, spec: g.spec })).toThrowError(
      expect.objectContaining({ code: ServeErrorCode.SERVE_MODULE_NOT_GRAFTED }),
    );
  });

  it("a carried tensor with no initializer in the model is a typed refusal naming it", () => {
    const model = readOnnxModel({ bytes: new Uint8Array(readFileSync(c.modelPath)) });
    const t = adapters[0]!.extraTensors!.find((x) => x.name.endsWith("classifier.out_proj.weight"))!;
    const odd = { ...adapters[0]!, extraTensors: [{ ...t, name: "base_model.model.classifier.nowhere.weight" }] };
    try {
      graftOnnx({ model, adapter: odd });
      expect.unreachable();
    } catch (e) {
      expect((e as { code: string }).code).toBe(ServeErrorCode.SERVE_GRAPH_UNSUPPORTED);
      expect((e as Error).message).toContain("base_model.model.classifier.nowhere.weight");
    }
  });
});

describe(
  "roberta-seq-cls with --defaults: the heads through onnxruntime-web's LoraAdapter",
  { timeout: 120_000 },
  () => {
    it("an .onnx_adapter file carrying a head gives that classifier's PEFT logits", async () => {
      const path = join(work, `g${n++}`, "model.onnx");
      const r = await graftOnnxFile({
        model: c.modelPath,
        adapter: join(c.adapterDir, "a1"),
        output: path,
        defaults: true,
      });
      const web = await import("onnxruntime-web");
      web.env.wasm.numThreads = 1;
      const s = await web.InferenceSession.create(new Uint8Array(readFileSync(path)), {
        executionProviders: ["wasm"],
        logSeverityLevel: 3,
        externalData: [
          { path: "model.onnx.data", data: new Uint8Array(readFileSync(join(path, "..", "model.onnx.data"))) },
        ],
      });
      try {
        expect(s.inputNames).toEqual(["input_ids"]);
        const row = peft.base!.length / c.input_ids.length;
        const ids = new web.Tensor(
          "int64",
          BigInt64Array.from(c.input_ids[1]!, (x) => BigInt(x)),
          [1, c.input_ids[1]!.length],
        );
        for (const [i, name] of [
          [0, "a1"],
          [1, "a2"],
        ] as const) {
          const lora = await web.LoraAdapter.create(writeOnnxAdapter({ adapter: adapters[i]!, spec: r.spec }).bytes);
          try {
            const got = (await s.run({ input_ids: ids }, { activeLoraAdapters: [lora] })).logits!.data as Float32Array;
            expect(maxDiffRows(got, peft[name]!, row, 0, 1)).toBeLessThan(1e-4);
          } finally {
            await lora.release();
          }
        }
        const none = (await s.run({ input_ids: ids })).logits!.data as Float32Array;
        expect(maxDiffRows(none, peft.base!, row, 0, 1)).toBeLessThan(1e-5);
      } finally {
        await s.release();
      }
    });
  },
);

describe("a head bias the exporter dropped (zero at export), served per adapter", () => {
  const zoo = join(__dirname, "../fixtures/zoo");
  for (const family of ["bert", "roberta", "roberta_vera_only", "deberta_v2", "distilbert"])
    it(`${family} --batched: an adapter row gets PEFT's logits, a base row the base's`, async () => {
      const modelPath = join(zoo, family, "model.onnx");
      const adapter = await caseAdapter({ modelPath, adapterDir: join(zoo, family) }, "adapter");
      const path = join(work, `zoo${n++}`, "model.onnx");
      const r = await graftOnnxFile({
        model: modelPath,
        adapter: join(zoo, family, "adapter"),
        output: path,
        batched: true,
      });
      expect(r.carried.some((x) => /^classifier\.(out_proj\.)?bias$/.test(x.param))).toBe(true);
      const cs = JSON.parse(readFileSync(join(zoo, family, "case.json"), "utf8")) as {
        inputs: Array<{ shape: number[]; data: number[] }>;
      };
      const [rows, len] = cs.inputs[0]!.shape as [number, number];
      const ids = Array.from({ length: rows }, (_, i) => cs.inputs[0]!.data.slice(i * len, (i + 1) * len));
      const ref = parseSafetensors(new Uint8Array(readFileSync(join(zoo, family, "logits.safetensors"))));
      const want = (k: string): Float32Array => new Float32Array(tensorBytes(ref, k).slice().buffer);
      const f = adapterFeeds({ adapters: [adapter, null], spec: r.spec });
      const got = await runLogits(path, [ids[0]!, ids[1]!], f.feeds);
      const row = got.length / 2;
      expect(maxDiffRows(got, want("peft"), row, 0, 0)).toBeLessThan(1e-4);
      expect(maxDiffRows(got, want("base"), row, 1, 1)).toBeLessThan(1e-5);
    });
});

/**
 * Merges of real PEFT VeRA adapters that carry more than VeRA vectors (a modules_to_save head,
 * trainable biases) or target fused weights by their own names (fixtures/families, see generate.py
 * and MANIFEST.json): into the dynamo ONNX export (run in onnxruntime-node against PEFT's logits) and
 * into the safetensors checkpoint (against PEFT's merge_and_unload + save_pretrained tensors).
 */
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { mergeCheckpoint, MergeErrorCode, mergeOnnx, type MergeReport } from "../src/merge/index.js";
import { loadAdapterFromPath } from "../src/node/load-adapter.js";
import type { ExtraTensor, VeraAdapter } from "../src/format/types.js";
import { baseShapesFromWeights } from "../src/peft/base-shapes-from-weights.js";
import { veraError } from "./error-helpers.js";
import { runCli } from "./cli-helpers.js";
import { parseSafetensors, tensorBytes } from "../src/safetensors/parse.js";
import { fixtureManifest, FIXTURES, loadOrt, loadReference, maxAbsDiff, runModel } from "./onnx-helpers.js";
import { readOnnxModel } from "../src/onnx/read-onnx-model.js";
import { bytesSource, decodeTensor, readGguf } from "../src/gguf/index.js";
import { mergeGguf } from "../src/merge/index.js";

const FAMILIES = join(__dirname, "../fixtures/families");
const work = mkdtempSync(join(tmpdir(), "vera-families-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

interface FamilyReference {
  input: { name: string; dtype: "int64" | "float32"; shape: number[]; data: number[] };
  reference: number[];
  base: number[];
  adapterKeys: string[];
}

function reference(c: string): FamilyReference {
  return JSON.parse(readFileSync(join(FAMILIES, c, "reference.json"), "utf8")) as FamilyReference;
}

async function logits(model: string, ref: FamilyReference): Promise<Float32Array> {
  const [out] = await runModel(model, { inputs: [ref.input], outputs: ["logits"] });
  return out!;
}

const CASES = ["roberta-seqcls", "vit-cls", "phi3", "gpt-neox", "roberta-shared-bias"];

describe("ONNX merge of real PEFT adapters with heads, biases and fused modules", () => {
  for (const c of CASES)
    it(`${c}: merged logits within 1e-4 of PEFT's`, async () => {
      const ref = reference(c);
      const model = join(FAMILIES, c, "model.onnx");
      const base = await logits(model, ref);
      expect(maxAbsDiff([base], [ref.base])).toBeLessThan(1e-4);
      // the adapter moves the logits: a merge that dropped part of it would show
      expect(maxAbsDiff([base], [ref.reference])).toBeGreaterThan(0.1);
      const out = join(work, c, "merged.onnx");
      const report: MergeReport = await mergeOnnx({ model, adapter: join(FAMILIES, c, "adapter"), output: out });
      const merged = await logits(out, ref);
      expect(maxAbsDiff([merged], [ref.reference])).toBeLessThan(1e-4);
      const carried = ref.adapterKeys.filter((k) => !/vera_(lambda_[bd]|A|B)$/.test(k));
      expect(report.carried.map((r) => r.tensor).sort()).toEqual(carried.sort());
      // one zero bias shared by many Add nodes: each trained bias gets a copy of its own for its node
      const own = report.carried.filter((r) => r.untiedFrom !== undefined);
      expect(own.length).toBe(c === "roberta-shared-bias" ? 4 : 0);
    });
});

/** Every tensor of two safetensors files as float32 values, by name. */
function f32Tensors(path: string): Map<string, Float32Array> {
  const f = parseSafetensors(new Uint8Array(readFileSync(path)));
  const out = new Map<string, Float32Array>();
  for (const [name, info] of f.tensors) {
    expect(info.dtype).toBe("F32");
    const b = tensorBytes(f, name).slice();
    out.set(name, new Float32Array(b.buffer, 0, b.byteLength / 4));
  }
  return out;
}

describe("checkpoint merge of real PEFT adapters with heads, biases and fused modules", () => {
  for (const c of CASES)
    it(`${c}: every merged tensor equals PEFT's merge_and_unload (float rounding)`, async () => {
      const out = join(work, c, "checkpoint");
      const report = await mergeCheckpoint({
        model: join(FAMILIES, c, "base"),
        adapter: join(FAMILIES, c, "adapter"),
        output: out,
      });
      const ours = f32Tensors(join(out, "model.safetensors"));
      const peft = f32Tensors(join(FAMILIES, c, "merged.safetensors"));
      const base = f32Tensors(join(FAMILIES, c, "base", "model.safetensors"));
      expect([...ours.keys()].sort()).toEqual([...peft.keys()].sort());
      let changed = 0;
      for (const [name, want] of peft) {
        const got = ours.get(name)!;
        const b = base.get(name)!;
        let err = 0;
        let moved = 0;
        for (let i = 0; i < want.length; i++) {
          err = Math.max(err, Math.abs(got[i]! - want[i]!));
          moved = Math.max(moved, Math.abs(want[i]! - b[i]!));
        }
        expect(err, name).toBeLessThan(1e-6);
        if (moved > 0) changed++;
      }
      expect(changed).toBe(report.weights);
      const carried = reference(c).adapterKeys.filter((k) => !/vera_(lambda_[bd]|A|B)$/.test(k));
      expect(report.carried.map((r) => r.tensor).sort()).toEqual(carried.sort());
    });
});

describe("GGUF merge of a real PEFT adapter with trainable biases and a saved lm_head", () => {
  it("qwen2: q/v weights merged, their biases and output.weight replaced, each as PEFT's merge_and_unload", async () => {
    const dir = join(FAMILIES, "qwen2-gguf");
    const out = join(work, "qwen2.gguf");
    const report = await mergeGguf({
      model: join(FAMILIES, "..", "gguf", "qwen2", "base-f32.gguf"),
      adapter: join(dir, "adapter"),
      output: out,
    });
    expect(report.carried.map((c) => c.target).sort()).toEqual([
      "blk.0.attn_q.bias",
      "blk.0.attn_v.bias",
      "blk.1.attn_q.bias",
      "blk.1.attn_v.bias",
      "output.weight",
    ]);
    const bytes = new Uint8Array(readFileSync(out));
    const gguf = await readGguf({ source: bytesSource(bytes) });
    const peft = f32Tensors(join(dir, "merged.safetensors"));
    const name = (hf: string): string => {
      if (hf === "lm_head.weight") return "output.weight";
      const m = /^model\.layers\.(\d+)\.self_attn\.([qv])_proj\.(weight|bias)$/.exec(hf)!;
      return `blk.${m[1]}.attn_${m[2]}.${m[3]}`;
    };
    expect(peft.size).toBe(9);
    for (const [hf, want] of peft) {
      const t = gguf.tensors.find((x) => x.name === name(hf))!;
      const start = gguf.dataOffset + t.offset;
      const got = decodeTensor(bytes.subarray(start, start + t.byteLength), t.type);
      expect(maxAbsDiff([got], [want]), hf).toBeLessThan(1e-6);
    }
  });
});

/** The roberta-seqcls adapter as an object, loaded against its checkpoint's shapes, to alter in a test. */
async function robertaAdapter(): Promise<VeraAdapter> {
  const tensors = [
    ...parseSafetensors(new Uint8Array(readFileSync(join(FAMILIES, "roberta-seqcls", "base", "model.safetensors"))))
      .tensors,
  ].map(([name, t]) => ({ name, shape: t.shape }));
  const loaded = await loadAdapterFromPath({
    path: join(FAMILIES, "roberta-seqcls", "adapter"),
    base: baseShapesFromWeights({ tensors }),
  });
  return loaded.adapter;
}

function withExtra(adapter: VeraAdapter, change: (t: ExtraTensor[]) => ExtraTensor[]): VeraAdapter {
  return { ...adapter, extraTensors: change((adapter.extraTensors ?? []).map((t) => ({ ...t }))) };
}

describe("carried tensors that cannot be placed are refused by name, before anything is written", () => {
  const cases: Array<[string, (t: ExtraTensor[]) => ExtraTensor[], RegExp]> = [
    [
      "a saved module's parameter the model does not have",
      (t) => [
        ...t,
        { ...t.find((x) => x.name.endsWith("classifier.dense.bias"))!, name: "base_model.model.classifier.extra.bias" },
      ],
      /classifier\.extra\.bias/,
    ],
    [
      "a saved tensor of another shape",
      (t) =>
        t.map((x) =>
          x.name.endsWith("classifier.out_proj.bias") ? { ...x, shape: [4], data: new Uint8Array(16) } : x,
        ),
      /classifier\.out_proj\.bias/,
    ],
    [
      "a tensor no path knows (kind other)",
      (t) => [...t, { name: "mystery", dtype: "F32", shape: [1], data: new Uint8Array(4) }],
      /mystery/,
    ],
  ];
  for (const [what, change, names] of cases) {
    it(`ONNX and checkpoint: ${what}`, async () => {
      const adapter = withExtra(await robertaAdapter(), change);
      const outOnnx = join(work, "refused", "model.onnx");
      const e1 = await veraError(
        mergeOnnx({ model: join(FAMILIES, "roberta-seqcls", "model.onnx"), adapter, output: outOnnx }),
      );
      expect(e1.code).toBe(MergeErrorCode.MERGE_CARRIED_TENSOR);
      expect(e1.message).toMatch(names);
      const outCk = join(work, "refused", "ck");
      const e2 = await veraError(
        mergeCheckpoint({ model: join(FAMILIES, "roberta-seqcls", "base"), adapter, output: outCk }),
      );
      expect(e2.code).toBe(MergeErrorCode.MERGE_CARRIED_TENSOR);
      expect(e2.message).toMatch(names);
      expect(existsSync(outOnnx)).toBe(false);
      expect(existsSync(outCk)).toBe(false);
    });
  }

  it("checkpoint: a tied lm_head the checkpoint does not store", async () => {
    const adapter = withExtra(await robertaAdapter(), (t) => [
      ...t,
      { ...t.find((x) => x.name.endsWith("classifier.dense.weight"))!, name: "base_model.model.lm_head.weight" },
    ]);
    const e = await veraError(
      mergeCheckpoint({
        model: join(FAMILIES, "roberta-seqcls", "base"),
        adapter: { ...adapter, training: { ...adapter.training, modules_to_save: ["classifier", "lm_head"] } },
        dryRun: true,
      }),
    );
    expect(e.code).toBe(MergeErrorCode.MERGE_CARRIED_TENSOR);
    expect(e.message).toMatch(/lm_head\.weight/);
  });

  it("GGUF: a saved embedding llama.cpp's names do not cover", async () => {
    const dir = join(FAMILIES, "qwen2-gguf");
    const e = await veraError(
      mergeGguf({
        model: join(FAMILIES, "..", "gguf", "qwen2", "base-f32.gguf"),
        adapter: await (async () => {
          const gg = await loadAdapterFromPath({
            path: join(dir, "adapter"),
            base: baseShapesFromWeights({
              tensors: [
                ...parseSafetensors(
                  new Uint8Array(readFileSync(join(FAMILIES, "..", "gguf", "qwen2", "model.safetensors"))),
                ).tensors,
              ].map(([name, t]) => ({ name, shape: t.shape })),
            }),
          });
          const a = withExtra(gg.adapter, (t) => [
            ...t,
            { name: "base_model.model.model.embed_tokens.weight", dtype: "F32", shape: [2], data: new Uint8Array(8) },
          ]);
          return { ...a, training: { ...a.training, modules_to_save: ["lm_head", "embed_tokens"] } };
        })(),
        output: join(work, "refused.gguf"),
      }),
    );
    expect(e.code).toBe(MergeErrorCode.MERGE_CARRIED_TENSOR);
    expect(e.message).toMatch(/embed_tokens/);
    expect(existsSync(join(work, "refused.gguf"))).toBe(false);
  });
});

describe("a dry run and the real merge make one plan", () => {
  const strip = (r: MergeReport): unknown => ({
    modules: r.modules.map(({ maxAbsDelta: _, storage: __, ...m }) => m),
    carried: r.carried,
    weights: r.weights,
    bytesMerged: r.bytesMerged,
    skipped: r.skipped,
  });
  for (const c of CASES)
    it(`${c}: ONNX and checkpoint`, async () => {
      const adapter = join(FAMILIES, c, "adapter");
      const onnx = join(FAMILIES, c, "model.onnx");
      const dryOnnx = await mergeOnnx({ model: onnx, adapter, dryRun: true });
      const realOnnx = await mergeOnnx({ model: onnx, adapter, output: join(work, "plan", c, "model.onnx") });
      expect(strip(dryOnnx)).toEqual(strip(realOnnx));
      const ck = join(FAMILIES, c, "base");
      const dryCk = await mergeCheckpoint({ model: ck, adapter, dryRun: true });
      const realCk = await mergeCheckpoint({ model: ck, adapter, output: join(work, "plan", c, "ck") });
      expect(strip(dryCk)).toEqual(strip(realCk));
      expect(dryCk.modules.map((m) => m.module)).toEqual(dryOnnx.modules.map((m) => m.module));
    });
  it("qwen2-gguf: GGUF", async () => {
    const model = join(FAMILIES, "..", "gguf", "qwen2", "base-f32.gguf");
    const adapter = join(FAMILIES, "qwen2-gguf", "adapter");
    const dry = await mergeGguf({ model, adapter, dryRun: true });
    const real = await mergeGguf({ model, adapter, output: join(work, "plan", "qwen2.gguf") });
    expect(strip(dry)).toEqual(strip(real));
  });
});

describe("a dry run and the real merge make one plan, on every ONNX merge fixture", () => {
  const manifest = fixtureManifest();
  for (const c of Object.keys(manifest.cases).filter((x) => x !== "quantized"))
    it(c, async () => {
      const dir = join(FIXTURES, c);
      const ref = loadReference(c);
      const params = { model: join(dir, "model.onnx"), adapter: join(dir, ref.adapter) };
      const dry = await mergeOnnx({ ...params, dryRun: true });
      const real = await mergeOnnx({ ...params, output: join(work, "onnx-plan", c, "model.onnx"), durable: false });
      const strip = (r: MergeReport): unknown => ({
        modules: r.modules.map(({ maxAbsDelta: _, ...m }) => m),
        carried: r.carried,
        weights: r.weights,
        bytesMerged: r.bytesMerged,
      });
      expect(strip(dry)).toEqual(strip(real));
    });
});

describe("a dry run and the real merge make one plan, on the checkpoint and GGUF merge fixtures", () => {
  const strip = (r: MergeReport): unknown => ({
    modules: r.modules.map(({ maxAbsDelta: _, ...m }) => m),
    carried: r.carried,
    weights: r.weights,
    bytesMerged: r.bytesMerged,
  });
  for (const c of ["gpt2-f32", "llama-bf16", "llama-f32"])
    it(`checkpoint ${c}`, async () => {
      const dir = join(FAMILIES, "..", "safetensors", c);
      const params = { model: join(dir, "base"), adapter: join(dir, "adapter") };
      const dry = await mergeCheckpoint({ ...params, dryRun: true });
      const real = await mergeCheckpoint({ ...params, output: join(work, "ck-plan", c), durable: false });
      expect(strip(dry)).toEqual(strip(real));
    });
  for (const [c, model, adapter] of [
    ["llama", "llama/base-f32.gguf", "vera"],
    ["llama-split", "llama-split/base-f32-00001-of-00003.gguf", "vera"],
    ["qwen2", "qwen2/base-f32.gguf", "qwen2/vera"],
  ] as const)
    it(`GGUF ${c}`, async () => {
      const gguf = join(FAMILIES, "..", "gguf");
      const params = { model: join(gguf, model), adapter: join(gguf, adapter) };
      const dry = await mergeGguf({ ...params, dryRun: true });
      const real = await mergeGguf({ ...params, output: join(work, "gguf-plan", c) + "/", durable: false });
      expect(strip(dry)).toEqual(strip(real));
    });
});

describe("in place: carried tensors are written and journaled like merged weights", () => {
  it("roberta-shared-bias ONNX merged in place: PEFT's logits (own copies appended to the data file)", async () => {
    const dir = join(work, "inplace-onnx");
    cpSync(join(FAMILIES, "roberta-shared-bias"), dir, { recursive: true });
    const ref = reference("roberta-shared-bias");
    const report = await mergeOnnx({
      model: join(dir, "model.onnx"),
      adapter: join(dir, "adapter"),
      inPlace: true,
    });
    expect(report.carried.filter((c) => c.untiedFrom).length).toBe(4);
    expect(maxAbsDiff([await logits(join(dir, "model.onnx"), ref)], [ref.reference])).toBeLessThan(1e-4);
    expect(readdirSync(dir).filter((f) => f.includes("vera-undo"))).toEqual([]);
  });

  it("a cancelled in-place merge puts the carried tensors' original bytes back", async () => {
    const dir = join(work, "inplace-cancel");
    cpSync(join(FAMILIES, "roberta-seqcls", "base"), dir, { recursive: true });
    const before = readFileSync(join(dir, "model.safetensors"));
    let seen = 0;
    // a throwing onProgress cancels the merge, which rethrows it once the journal has put every byte back
    await expect(
      mergeCheckpoint({
        model: dir,
        adapter: join(FAMILIES, "roberta-seqcls", "adapter"),
        inPlace: true,
        onProgress: (ev) => {
          // the classifier's tensors come first in the file: several carried tensors are written by now
          if (ev.type === "progress" && ev.tensorsDone >= 3 && seen++ === 0) throw new Error("stop");
        },
      }),
    ).rejects.toThrow("stop");
    expect(seen).toBe(1);
    expect(Buffer.compare(before, readFileSync(join(dir, "model.safetensors")))).toBe(0);
    expect(readdirSync(dir).filter((f) => f.includes("vera-undo"))).toEqual([]);
  });

  it("roberta-seqcls checkpoint merged in place equals PEFT's merge", async () => {
    const dir = join(work, "inplace");
    cpSync(join(FAMILIES, "roberta-seqcls", "base"), dir, { recursive: true });
    const before = readFileSync(join(dir, "model.safetensors"));
    const report = await mergeCheckpoint({
      model: dir,
      adapter: join(FAMILIES, "roberta-seqcls", "adapter"),
      inPlace: true,
    });
    expect(report.carried.length).toBe(8);
    const ours = f32Tensors(join(dir, "model.safetensors"));
    for (const [name, want] of f32Tensors(join(FAMILIES, "roberta-seqcls", "merged.safetensors")))
      expect(maxAbsDiff([ours.get(name)!], [want]), name).toBeLessThan(1e-6);
    // the undo journal is gone once the merge is committed; the original bytes differ from the merged ones
    expect(readdirSync(dir).filter((f) => f.includes("vera-undo"))).toEqual([]);
    expect(Buffer.compare(before, readFileSync(join(dir, "model.safetensors")))).not.toBe(0);
  });
});

describe("one mapping format for every container", () => {
  it("checkpoint (CLI): --mapping places a module, the report says so, the result is PEFT's", async () => {
    const map = join(work, "vit-map.json");
    writeFileSync(
      map,
      JSON.stringify({
        modules: { "vit.layers.0.attention.q_proj": { initializer: "vit.encoder.layer.0.attention.attention.query" } },
      }),
    );
    const out = join(work, "vit-mapped");
    const r = await runCli([
      "merge",
      join(FAMILIES, "vit-cls", "base"),
      join(FAMILIES, "vit-cls", "adapter"),
      "--mapping",
      map,
      "-o",
      out,
      "--backend",
      "reference",
      "--json",
    ]);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const report = JSON.parse(r.stdout) as MergeReport;
    const by = Object.fromEntries(report.modules.map((m) => [m.module, m.matchedBy]));
    expect(by["vit.layers.0.attention.q_proj"]).toBe("mapping");
    expect(by["vit.layers.0.attention.v_proj"]).toBe("renamed");
    expect(report.carried.map((c) => c.param).sort()).toEqual(["classifier.bias", "classifier.weight"]);
    const ours = f32Tensors(join(out, "model.safetensors"));
    for (const [name, want] of f32Tensors(join(FAMILIES, "vit-cls", "merged.safetensors")))
      expect(maxAbsDiff([ours.get(name)!], [want]), name).toBeLessThan(1e-6);
  });

  it("GGUF: the shared format, {bid} for the block number", async () => {
    const map = join(work, "qwen2-map.json");
    writeFileSync(
      map,
      JSON.stringify({ modules: { "model.layers.{bid}.self_attn.q_proj": "blk.{bid}.attn_q.weight" } }),
    );
    const report = await mergeGguf({
      model: join(FAMILIES, "..", "gguf", "qwen2", "base-f32.gguf"),
      adapter: join(FAMILIES, "qwen2-gguf", "adapter"),
      mapping: map,
      dryRun: true,
    });
    const by = Object.fromEntries(report.modules.map((m) => [m.module, [m.initializer, m.matchedBy]]));
    expect(by["model.layers.1.self_attn.q_proj"]).toEqual(["blk.1.attn_q.weight", "mapping"]);
    expect(by["model.layers.1.self_attn.v_proj"]).toEqual(["blk.1.attn_v.weight", "exact"]);
  });
});

/** max |logits - PEFT's| of a merged zoo model on its case's inputs. */
async function bertLogitsErr(dir: string, output: string): Promise<number> {
  const c = JSON.parse(readFileSync(join(dir, "case.json"), "utf8")) as {
    inputs: Array<{ name: string; shape: number[]; data: number[] }>;
  };
  const ort = await loadOrt();
  const session = await ort.InferenceSession.create(output, {
    graphOptimizationLevel: "disabled",
    executionProviders: ["cpu"],
    logSeverityLevel: 3,
  });
  const feeds = Object.fromEntries(
    c.inputs.map((i) => [i.name, new ort.Tensor("int64", BigInt64Array.from(i.data.map(BigInt)), i.shape)]),
  );
  const got = (await session.run(feeds))["logits"]!.data as Float32Array;
  await session.release();
  const ref = parseSafetensors(new Uint8Array(readFileSync(join(dir, "logits.safetensors"))));
  const peft = new Float32Array(tensorBytes(ref, "peft").slice().buffer);
  return maxAbsDiff([got], [peft]);
}

describe("a head bias the exporter dropped (zero at export) is added back", () => {
  it("bert (dynamo): classifier.bias added as the classifier Gemm's C, PEFT's logits", async () => {
    const dir = join(__dirname, "../fixtures/zoo/bert");
    const model = join(dir, "model.onnx");
    const before = readOnnxModel({ bytes: new Uint8Array(readFileSync(model)) });
    expect(before.graphs[0]!.initializers.some((t) => t.name.endsWith("classifier.bias"))).toBe(false);
    const output = join(work, "added-bias", "model.onnx");
    const report = await mergeOnnx({ model, adapter: join(dir, "adapter"), output, durable: false });
    const row = report.carried.find((c) => c.param === "classifier.bias");
    expect(row).toMatchObject({ added: true, target: "classifier.bias", dtype: "F32", transposed: false });
    expect(row!.matchedBy).toMatch(/^added to (MatMul|Gemm)/);

    const merged = readOnnxModel({ bytes: new Uint8Array(readFileSync(output)) });
    const g = merged.graphs[0]!;
    expect(g.initializers.find((t) => t.name === "classifier.bias")?.dims).toEqual([3]);
    const add = g.nodes.findIndex((n) => n.opType === "Add" && n.inputs.includes("classifier.bias"));
    const gemm = g.nodes.findIndex((n) => n.opType === "Gemm" && n.inputs[2] === "classifier.bias");
    if (add >= 0) {
      // right after the MatMul, which now feeds it; the Add produces the MatMul's original output
      const mm = g.nodes[add - 1]!;
      expect(mm.opType).toBe("MatMul");
      expect(g.nodes[add]!.inputs[0]).toBe(mm.outputs[0]);
      const orig = before.graphs[0]!.nodes.find((n) => n.name === mm.name)!;
      expect(g.nodes[add]!.outputs[0]).toBe(orig.outputs[0]);
    } else expect(gemm).toBeGreaterThanOrEqual(0);

    expect(await bertLogitsErr(dir, output)).toBeLessThan(1e-4);
  });

  it("bert merged in place: the bias added, PEFT's logits, no journal left", async () => {
    const dir = join(work, "added-bias-inplace");
    cpSync(join(__dirname, "../fixtures/zoo/bert"), dir, { recursive: true });
    const report = await mergeOnnx({ model: join(dir, "model.onnx"), adapter: join(dir, "adapter"), inPlace: true });
    expect(report.carried.find((c) => c.param === "classifier.bias")?.added).toBe(true);
    expect(await bertLogitsErr(dir, join(dir, "model.onnx"))).toBeLessThan(1e-4);
    expect(readdirSync(dir).filter((f) => f.includes("vera-undo"))).toEqual([]);
  });
});

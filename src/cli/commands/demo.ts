import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createNodeBackend } from "../../compute/node/create-node-backend.js";
import { ErrorCode, VeraError } from "../../errors.js";
import { validateVera } from "../../format/validate.js";
import { mergeOnnx } from "../../merge/index.js";
import { readFileBytes, writeVeraFile } from "../../node/files.js";
import { loadAdapterFromPath } from "../../node/load-adapter.js";
import { listLinearWeights, readOnnxModel } from "../../onnx/index.js";
import { peftBaseFromOnnx } from "../../peft/base-shapes-from-onnx.js";
import { adapterFeeds } from "../../serve/adapter-feeds.js";
import { graftOnnxFile } from "../../serve/node/graft-onnx-file.js";
import { asFloat32, parseSafetensors, tensorBytes } from "../../safetensors/parse.js";
import type { ComputeBackend } from "../../compute/backend.js";
import type { VeraAdapter } from "../../format/types.js";
import { UsageError, type Command } from "../command.js";
import { cliOptions } from "../options.js";

interface Reference {
  adapter: string;
  inputs: Array<{ name: string; dtype: "int64" | "float32"; shape: number[]; data: number[] }>;
  outputs: string[];
  reference: number[] | number[][];
}
interface Manifest {
  tools: Record<string, string>;
  cases: Record<string, { exporter: string; notes: string; adapter: string }>;
}

const TOLERANCE = 1e-4;

/** Find fixtures/onnx by walking up from this script (the repository checkout). */
function findFixtures(): string | undefined {
  let d = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const f = join(d, "fixtures", "onnx", "MANIFEST.json");
    if (existsSync(f)) return dirname(f);
    d = dirname(d);
  }
  return undefined;
}

type Ort = typeof import("onnxruntime-node");

const rel = (p: string): string => relative(process.cwd(), p) || p;

/** onnxruntime-node, which runs the models (IO_ERROR when it is not installed). */
async function loadOrt(): Promise<Ort> {
  try {
    const m = (await import("onnxruntime-node")) as unknown as { default?: Ort };
    return (m.default ?? m) as Ort;
  } catch (e) {
    throw new VeraError(
      ErrorCode.IO_ERROR,
      `the demo runs models in onnxruntime-node, which is not installed: ${(e as Error).message}`,
      { cause: e },
    );
  }
}

/** Run the model at `path` on the fixture's inputs; its outputs, in the fixture's order. */
async function runModel(ort: Ort, path: string, ref: Reference): Promise<Float32Array[]> {
  const s = await ort.InferenceSession.create(path, { executionProviders: ["cpu"] });
  try {
    const feeds: Record<string, import("onnxruntime-node").Tensor> = {};
    for (const i of ref.inputs)
      feeds[i.name] =
        i.dtype === "int64"
          ? new ort.Tensor(
              "int64",
              BigInt64Array.from(i.data, (x) => BigInt(x)),
              i.shape,
            )
          : new ort.Tensor("float32", Float32Array.from(i.data), i.shape);
    const o = await s.run(feeds);
    return ref.outputs.map((n) => o[n]!.data as Float32Array);
  } finally {
    await s.release();
  }
}

/** One fixture case, end to end: import the PEFT folder, validate, merge, run base and merged models. */
async function mergeCase(c: {
  name: string;
  info: Manifest["cases"][string];
  dir: string;
  work: string;
  backend: ComputeBackend;
  ort: Ort;
  say: (s: string) => void;
}): Promise<Record<string, unknown> & { pass: boolean }> {
  const { dir, say } = c;
  const ref = JSON.parse(readFileSync(join(dir, "reference.json"), "utf8")) as Reference;
  const modelPath = join(dir, "model.onnx");
  const peftDir = resolve(dir, ref.adapter);
  const t0 = performance.now();
  // 1. import the PEFT folder, module shapes from the ONNX model
  const weights = listLinearWeights({ model: readOnnxModel({ bytes: await readFileBytes(modelPath) }) });
  const { adapter, imported } = await loadAdapterFromPath({
    path: peftDir,
    base: (peftWeights) => peftBaseFromOnnx({ weights, peftWeights, label: rel(modelPath) }),
  });
  const imp = imported!;
  const veraPath = join(c.work, c.name, "adapter.vera.safetensors");
  mkdirSync(dirname(veraPath), { recursive: true });
  const bytes = await writeVeraFile(veraPath, adapter);
  // 2. validate the written file
  const v = validateVera(bytes);
  // 3. merge
  const out = join(c.work, c.name, "merged", "model.onnx");
  const report = await mergeOnnx({
    model: modelPath,
    adapter: veraPath,
    output: out,
    backend: c.backend,
    durable: false,
  });
  // 4. run base and merged models
  const want = ref.outputs.length > 1 ? (ref.reference as number[][]) : [ref.reference as number[]];
  const diff = (got: Float32Array[]): number =>
    got.reduce((m, g, k) => g.reduce((mm, x, i) => Math.max(mm, Math.abs(x - want[k]![i]!)), m), 0);
  const baseErr = diff(await runModel(c.ort, modelPath, ref));
  const mergedErr = diff(await runModel(c.ort, out, ref));
  const pass = mergedErr < TOLERANCE && v.ok;
  const ms = performance.now() - t0;
  say("");
  say(`[${c.name}] ${c.info.exporter}; ${c.info.notes}`);
  say(
    `  import    ${rel(peftDir)} -> adapter.vera.safetensors: ${imp.modules} modules, r=${imp.rank}, seed ${imp.seed}, ${bytes.length} bytes`,
  );
  say(`  validate  ${v.ok ? "ok" : `INVALID: ${v.issues.map((i) => i.code).join(", ")}`}`);
  say(
    `  merge     ${report.modules.length} modules into ${report.weights} weights of ${rel(modelPath)} ` +
      `(${[...new Set(report.modules.map((m) => m.storage.split(":")[0]))].join(", ")}; backend ${report.backend}) in ${report.timings.total.toFixed(0)} ms`,
  );
  say(`  run       onnxruntime-node, base and merged model on the fixture's inputs`);
  say(
    `  result    max |merged - PEFT reference| = ${mergedErr.toExponential(2)}  (base model: ${baseErr.toExponential(2)})  ` +
      `${pass ? "PASS" : "FAIL"} (tolerance ${TOLERANCE})`,
  );
  return {
    case: c.name,
    modules: report.modules.length,
    weights: report.weights,
    validated: v.ok,
    maxAbsMergedVsReference: mergedErr,
    maxAbsBaseVsReference: baseErr,
    pass,
    ms: Math.round(ms),
  };
}

const command: Command = {
  name: "demo",
  summary: "Run the whole pipeline on the bundled fixtures and check PEFT's logits",
  description:
    "The whole pipeline on the bundled fixtures: import a real PEFT VeRA adapter, validate it, merge it into an ONNX export, " +
    "run base and merged models in onnxruntime-node and compare with PEFT's own logits; then serve three PEFT adapters " +
    "unmerged from one grafted model, swapped per run and mixed in one batch.",
  usage: "vera demo [--case NAME | --all] [--backend NAME] [--no-serve] [--json]",
  options: {
    ...cliOptions({ strings: ["case", "backend"], flags: ["all", "no-serve"] }),
  },
  allowPositionals: false,
  async run({ values }, ctx) {
    const fx = findFixtures();
    if (!fx)
      throw new VeraError(
        ErrorCode.IO_NOT_FOUND,
        "the demo needs the repository's fixtures/onnx folder (run it from a checkout: npm start)",
      );
    const manifest = JSON.parse(readFileSync(join(fx, "MANIFEST.json"), "utf8")) as Manifest;
    const all = Object.keys(manifest.cases).filter((c) => c !== "quantized");
    if (values.all && values.case) throw new UsageError("--case and --all exclude each other");
    const cases = values.all ? all : [(values.case as string | undefined) ?? "llama-dynamo"];
    for (const c of cases)
      if (!all.includes(c)) throw new UsageError(`unknown case "${c}"; choose one of ${all.join(", ")}`);
    const ort = await loadOrt();
    // onnxruntime's CPU backend is what the demo needs (it loads onnxruntime anyway); `auto` if it cannot start
    const backend = await createNodeBackend(
      values.backend ? { name: values.backend as string } : { name: "ort-cpu", fallback: true },
    );
    const work = mkdtempSync(join(tmpdir(), "vera-demo-"));
    const say = (s: string): void => {
      if (!ctx.json) ctx.out(s);
    };
    let ok = true;
    try {
      say(`verakit demo: PEFT VeRA adapter -> verakit file -> merged ONNX model -> onnxruntime-node`);
      say(
        `fixtures made by torch ${manifest.tools.torch}, transformers ${manifest.tools.transformers}, peft ${manifest.tools.peft}, legacy torch ${manifest.tools.legacy_torch} (${rel(join(fx, "MANIFEST.json"))})`,
      );
      const results: Array<Record<string, unknown>> = [];
      for (const c of cases) {
        const r = await mergeCase({ name: c, info: manifest.cases[c]!, dir: join(fx, c), work, backend, ort, say });
        ok &&= r.pass;
        results.push(r);
      }
      const serve =
        values["no-serve"] === true ? undefined : await serveSection(join(dirname(fx), "serve"), work, ort, say);
      if (serve) ok &&= serve.pass;
      if (ctx.json)
        ctx.out(JSON.stringify({ ok, backend: backend.name, tolerance: TOLERANCE, results, serve }, null, 2));
      else {
        say("");
        say(
          ok
            ? `all ${cases.length} case(s) pass: the merged models reproduce the PEFT adapter's logits` +
                (serve ? "; the grafted model reproduces each adapter's, per run and per row of a mixed batch" : "")
            : "some cases FAILED",
        );
      }
    } finally {
      rmSync(work, { recursive: true, force: true });
      await backend.dispose?.();
    }
    return ok ? 0 : 1;
  },
};

/** What the serving section measured. */
interface ServeDemo {
  case: string;
  modules: number;
  /** Bytes of inputs per adapter (4 * (r + out) per module). */
  bytesPerAdapter: number;
  /** max |grafted - PEFT| per adapter, one adapter per run. */
  perRun: Record<string, number>;
  /** max |grafted - PEFT| per row of one batch [a1, a2, a3, none]. */
  mixedBatch: Array<{ row: number; adapter: string; maxAbs: number }>;
  pass: boolean;
}

/**
 * One grafted model serving three real PEFT adapters: swapped per run, then mixed in one batch (one adapter per
 * sequence, the last sequence without one), each compared with PEFT's own logits.
 */
async function serveSection(
  dir: string,
  work: string,
  ort: Ort,
  say: (s: string) => void,
): Promise<ServeDemo | undefined> {
  const name = "llama-dynamo";
  const caseDir = join(dir, name);
  if (!existsSync(join(caseDir, "case.json"))) return undefined;
  const c = JSON.parse(readFileSync(join(caseDir, "case.json"), "utf8")) as { input_ids: number[][]; notes: string };
  const modelPath = join(caseDir, "model.onnx");
  const peft = parseSafetensors(await readFileBytes(join(caseDir, "logits.safetensors")));
  const want = (k: string): Float32Array => asFloat32(tensorBytes(peft, k).slice());
  const names = ["a1", "a2", "a3"];
  const weights = listLinearWeights({ model: readOnnxModel({ bytes: await readFileBytes(modelPath) }) });
  const adapters: VeraAdapter[] = [];
  for (const n of names)
    adapters.push(
      (
        await loadAdapterFromPath({
          path: join(caseDir, "adapters", n),
          base: (peftWeights) => peftBaseFromOnnx({ weights, peftWeights, label: "model.onnx" }),
        })
      ).adapter,
    );
  const out = join(work, "serve", "model.onnx");
  // Plain inputs (the default): every binding feeds them; a base row is an explicit zero row.
  const g = await graftOnnxFile({ model: modelPath, adapter: adapters[0]!, output: out, batched: true });
  const session = await ort.InferenceSession.create(out, { executionProviders: ["cpu"] });
  const ids = c.input_ids;
  const run = async (list: Array<VeraAdapter | null> | VeraAdapter): Promise<Float32Array> => {
    const f = Array.isArray(list)
      ? adapterFeeds({ adapters: list, spec: g.spec, sessionInputs: session.inputNames })
      : adapterFeeds({ adapter: list, spec: g.spec, sessionInputs: session.inputNames });
    const feeds: Record<string, import("onnxruntime-node").Tensor> = {
      input_ids: new ort.Tensor(
        "int64",
        BigInt64Array.from(ids.flat(), (x) => BigInt(x)),
        [ids.length, ids[0]!.length],
      ),
    };
    for (const [k, t] of Object.entries(f.feeds)) feeds[k] = new ort.Tensor(t.type, t.data, t.dims);
    return (await session.run(feeds))["logits"]!.data as Float32Array;
  };
  const maxAbs = (a: Float32Array, b: Float32Array, from = 0, to = a.length): number => {
    let m = 0;
    for (let i = from; i < to; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
    return m;
  };
  try {
    const bytesPerAdapter = g.spec.modules.reduce((n, m) => n + 4 * (g.spec.rank + m.outFeatures), 0);
    say("");
    say(`[serve] one model, many adapters, unmerged: fixtures/serve/${name} (${c.notes.split(";")[0]})`);
    say(
      `  graft     ${g.modules.length} modules, seed ${g.spec.prng.seed}, r=${g.spec.rank}, --batched; +${g.addedBytes} bytes; ` +
        `an adapter is ${bytesPerAdapter} bytes of inputs`,
    );
    const perRun: Record<string, number> = {};
    for (let i = 0; i < names.length; i++) {
      const t0 = performance.now();
      perRun[names[i]!] = maxAbs(await run(adapters[i]!), want(names[i]!));
      say(
        `  run       adapter ${names[i]} (feeds swapped, same session): max |grafted - PEFT| = ${perRun[names[i]!]!.toExponential(2)} ` +
          `(${(performance.now() - t0).toFixed(1)} ms)`,
      );
    }
    const mixed = await run([adapters[0]!, adapters[1]!, adapters[2]!, null]);
    const row = mixed.length / ids.length;
    const labels = [...names, "base"];
    const mixedBatch = labels.map((a, r) => ({
      row: r,
      adapter: a === "base" ? "none" : a,
      maxAbs: maxAbs(mixed, want(a), r * row, (r + 1) * row),
    }));
    say(
      `  batch     4 sequences, adapters [a1, a2, a3, none] in ONE run: ` +
        mixedBatch.map((m) => `row ${m.row} (${m.adapter}) ${m.maxAbs.toExponential(2)}`).join(", "),
    );
    const pass = [...Object.values(perRun), ...mixedBatch.map((m) => m.maxAbs)].every((x) => x < TOLERANCE);
    say(`  result    ${pass ? "PASS" : "FAIL"} (tolerance ${TOLERANCE})`);
    return { case: name, modules: g.modules.length, bytesPerAdapter, perRun, mixedBatch, pass };
  } finally {
    await session.release();
  }
}

export default command;

import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createNodeBackend } from "../../compute/node/create-node-backend.js";
import { ErrorCode, VeraError } from "../../errors.js";
import { validateVera } from "../../format/validate.js";
import { mergeOnnx, peftBaseFromOnnx } from "../../merge/index.js";
import { readFileBytes, writeVeraFile } from "../../node/files.js";
import { readPeftFolder } from "../../node/peft-folder.js";
import { listLinearWeights, readOnnxModel } from "../../onnx/index.js";
import { importPeft } from "../../peft/import-peft.js";
import { UsageError, type Command } from "../command.js";

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

const command: Command = {
  name: "demo",
  summary: "Run the whole pipeline on the bundled fixtures and check PEFT's logits",
  description:
    "The whole pipeline on the bundled fixtures: import a real PEFT VeRA adapter, validate it, merge it into an ONNX export, " +
    "run base and merged models in onnxruntime-node and compare with PEFT's own logits.",
  usage: "vera demo [--case NAME | --all] [--backend NAME] [--json]",
  options: {
    case: { type: "string" },
    all: { type: "boolean" },
    backend: { type: "string" },
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
    let ort: typeof import("onnxruntime-node");
    try {
      const m = (await import("onnxruntime-node")) as unknown as { default?: typeof import("onnxruntime-node") };
      ort = (m.default ?? m) as typeof import("onnxruntime-node");
    } catch (e) {
      throw new VeraError(
        ErrorCode.IO_ERROR,
        `the demo runs models in onnxruntime-node, which is not installed: ${(e as Error).message}`,
        { cause: e },
      );
    }
    // onnxruntime's CPU backend is what the demo needs (it loads onnxruntime anyway); `auto` if it cannot start
    const backend = await createNodeBackend(
      values.backend ? { name: values.backend as string } : { name: "ort-cpu", fallback: true },
    );
    const work = mkdtempSync(join(tmpdir(), "vera-demo-"));
    const results: Array<Record<string, unknown>> = [];
    const rel = (p: string): string => relative(process.cwd(), p) || p;
    const say = (s: string): void => {
      if (!ctx.json) ctx.out(s);
    };
    let ok = true;
    try {
      say(`verakit demo: PEFT VeRA adapter -> verakit file -> merged ONNX model -> onnxruntime-node`);
      say(
        `fixtures made by torch ${manifest.tools.torch}, transformers ${manifest.tools.transformers}, peft ${manifest.tools.peft}, legacy torch ${manifest.tools.legacy_torch} (${rel(join(fx, "MANIFEST.json"))})`,
      );
      for (const c of cases) {
        const info = manifest.cases[c]!;
        const dir = join(fx, c);
        const ref = JSON.parse(readFileSync(join(dir, "reference.json"), "utf8")) as Reference;
        const modelPath = join(dir, "model.onnx");
        const peftDir = resolve(dir, ref.adapter);
        const t0 = performance.now();
        // 1. import the PEFT folder, module shapes from the ONNX model
        const weights = listLinearWeights({ model: readOnnxModel({ bytes: await readFileBytes(modelPath) }) });
        const folder = await readPeftFolder({ dir: peftDir });
        const { adapter, report: imp } = importPeft({
          config: folder.configText,
          weights: folder.weights,
          base: peftBaseFromOnnx({ weights, peftWeights: folder.weights, label: rel(modelPath) }),
        });
        const veraPath = join(work, c, "adapter.vera.safetensors");
        mkdirSync(dirname(veraPath), { recursive: true });
        const bytes = await writeVeraFile(veraPath, adapter);
        // 2. validate the written file
        const v = validateVera(bytes);
        // 3. merge
        const out = join(work, c, "merged", "model.onnx");
        const report = await mergeOnnx({ model: modelPath, adapter: veraPath, output: out, backend, durable: false });
        // 4. run base and merged models
        const run = async (p: string): Promise<Float32Array[]> => {
          const s = await ort.InferenceSession.create(p, { executionProviders: ["cpu"] });
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
        };
        const want = ref.outputs.length > 1 ? (ref.reference as number[][]) : [ref.reference as number[]];
        const diff = (got: Float32Array[]): number =>
          got.reduce((m, g, k) => g.reduce((mm, x, i) => Math.max(mm, Math.abs(x - want[k]![i]!)), m), 0);
        const baseErr = diff(await run(modelPath));
        const mergedErr = diff(await run(out));
        const pass = mergedErr < TOLERANCE && v.ok;
        ok &&= pass;
        const ms = performance.now() - t0;
        results.push({
          case: c,
          modules: report.modules.length,
          weights: report.weights,
          validated: v.ok,
          maxAbsMergedVsReference: mergedErr,
          maxAbsBaseVsReference: baseErr,
          pass,
          ms: Math.round(ms),
        });
        say("");
        say(`[${c}] ${info.exporter}; ${info.notes}`);
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
      }
      if (ctx.json) ctx.out(JSON.stringify({ ok, backend: backend.name, tolerance: TOLERANCE, results }, null, 2));
      else {
        say("");
        say(
          ok
            ? `all ${cases.length} case(s) pass: the merged models reproduce the PEFT adapter's logits`
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

export default command;

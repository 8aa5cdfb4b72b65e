/**
 * Merging into ONNX models: the ONNX container ({@link onnxContainer}) put through the shared
 * stages (data-file plan, compute, copy and write, commit).
 */
import { basename, dirname, resolve } from "node:path";
import { drain, eventStream } from "../util/event-stream.js";
import type { WeightMapping } from "../locate/weight-mapping.js";
import { readWeightMapping } from "./read-weight-mapping.js";
import { carriedTensorTargets } from "../peft/carried-tensors.js";
import type { MergeCommonParams } from "./merge-params.js";
import { mergeAdapter } from "./merge-adapter.js";
import { peftBaseFromOnnx } from "../peft/base-shapes-from-onnx.js";
import { startMergeRun, type MergeRun } from "./core/merge-run.js";
import type { MergeEvent, MergeReport } from "./core/merge-report.js";
import { onnxContainer } from "./core/onnx-container.js";
import { diskDataResolver, readOnnxSource } from "./onnx-source.js";
import { planAndWrite } from "./plan-and-write.js";

export type { MergeEvent, MergeReport, MergeReportModule, MergeTimings } from "./core/merge-report.js";

/** Parameters of {@link mergeOnnx} and {@link mergeOnnxIter}. */
export interface MergeOnnxParams extends MergeCommonParams {
  /** Path of the base `.onnx` model (its external data files are found from the locations inside it). */
  model: string;
  /** Path of the merged `.onnx` to write (its data files go beside it, under the same relative names). Required unless `inPlace` or `dryRun`. */
  output?: string;
  /**
   * Replace the input model's files with the merged ones (each changed file is written to a temporary
   * copy beside it and renamed over the original at the end).
   * @default false
   */
  inPlace?: boolean;
  /**
   * Explicit module -> initializer entries (object or path of a JSON mapping file, see `parseWeightMapping`).
   * @default none: weights are located automatically
   */
  mapping?: string | WeightMapping;
  /**
   * Leave out adapter modules that have no weight in this model (listed in the report) instead of
   * refusing: for models exported as several files (encoder_model.onnx, decoder_model.onnx, ...).
   * @default false
   */
  skipMissing?: boolean;
  /**
   * Give a weight used by several nodes (tied embeddings) its own merged copy for the adapted node
   * instead of refusing: the model then gains one initializer per untied weight (its data appended
   * to the same external data file, or inline), and that node's input is renamed to it.
   * @default false
   */
  untie?: boolean;
}

/**
 * Merge a VeRA adapter into an ONNX model, as an async generator of progress events whose return
 * value is the report. Only the merged weights' bytes change: raw_data/float_data and external
 * data are patched in place (same length); int32_data (fp16 bit patterns) is re-encoded with its
 * enclosing length prefixes. External data is streamed tensor by tensor; other data files are
 * copied by the kernel. Outputs are written as temporary files and renamed at the end; on any
 * error or cancellation they are removed and the input is untouched.
 *
 * @throws VeraError: `ONNX_*` (locating weights), `IO_UNSAFE_PATH` (external data outside the model
 *   folder), `MERGE_OUTPUT_CONFLICT`, `MERGE_DATA_*`, `MERGE_OVERFLOW`, `MERGE_ABORTED`, `IO_*`.
 */
export async function* mergeOnnxIter(params: MergeOnnxParams): AsyncGenerator<MergeEvent, MergeReport, void> {
  return yield* eventStream<MergeEvent, MergeReport>({
    run: (signal, emit) => runMerge(params, startMergeRun({ signal, emit })),
    ...(params.signal ? { signal: params.signal } : {}),
  });
}

/** {@link mergeOnnxIter} as a promise; `onProgress` receives the events (a throwing `onProgress` cancels the merge). */
export async function mergeOnnx(
  params: MergeOnnxParams & { onProgress?: (e: MergeEvent) => void },
): Promise<MergeReport> {
  return drain(mergeOnnxIter(params), params.onProgress);
}

async function runMerge(params: MergeOnnxParams, run: MergeRun): Promise<MergeReport> {
  const { timings, check } = run;
  const t0 = run.started;
  const modelPath = resolve(params.model);
  const source = await readOnnxSource({ path: modelPath, dir: dirname(modelPath) });
  timings.readModel = performance.now() - t0;
  check();

  const t1 = performance.now();
  const loaded = await mergeAdapter({
    adapter: params.adapter,
    base: (peftWeights) => peftBaseFromOnnx({ weights: source.linear, peftWeights, label: basename(source.path) }),
    ...(params.adapterName !== undefined ? { adapterName: params.adapterName } : {}),
  });
  const mapping = await readWeightMapping(params.mapping);
  const container = await onnxContainer({
    source,
    resolveData: diskDataResolver,
    modules: loaded.adapter.modules,
    skipMissing: params.skipMissing ?? false,
    untie: params.untie ?? false,
    carried: carriedTensorTargets({ adapter: loaded.adapter }),
    ...(mapping ? { mapping } : {}),
  });
  const inPlace = params.inPlace ?? false;
  const dryRun = params.dryRun ?? false;
  return planAndWrite({
    container,
    loaded,
    options: params,
    model: modelPath,
    input: modelPath,
    ...(params.output !== undefined ? { output: params.output } : {}),
    inPlace,
    dryRun,
    reportModules: (plan) => container.reportModules(dryRun ? undefined : plan.targets),
    skipped: container.skipped,
    carried: container.reportCarried(),
    warnings: [...loaded.warnings, ...container.warnings],
    run,
    planStarted: t1,
  });
}

/**
 * The merge without a file system: the same containers, data-file plan, compute stage and carried-tensor placement
 * as `vera merge`, over files read through a {@link FileAccess} (a page's dropped folder, files in memory, a disk),
 * returning the merged model as files of segments (input byte ranges and new bytes) instead of writing them.
 */
import type { ComputeBackend } from "../../compute/backend.js";
import { projectionSlices } from "../../compute/merge-tasks.js";
import { VeraError } from "../../errors.js";
import type { VeraAdapter } from "../../format/types.js";
import type { WeightMapping } from "../../locate/weight-mapping.js";
import { OnnxErrorCode } from "../../onnx/error-codes.js";
import { peftBaseFromOnnx } from "../../peft/base-shapes-from-onnx.js";
import { carriedTensorTargets, type CarriedTensorTarget } from "../../peft/carried-tensors.js";
import { basenamePath, dirnamePath, type FileAccess } from "../../peft/load/file-access.js";
import { loadAdapter, type AdapterBase } from "../../peft/load/load-adapter.js";
import type { AdapterSource } from "../../peft/load/read-adapter-source.js";
import { MergeErrorCode } from "../error-codes.js";
import { computeWeights } from "./compute-weights.js";
import type { ContainerWeight, MergeContainer, MergedTarget } from "./container.js";
import { detectModelContainer, type ModelContainerKind } from "./detect-container.js";
import { fileAccessDataResolver } from "./file-access-data.js";
import { mergedDataFiles, type MergedModelFile, type MergedSegment } from "./merged-files.js";
import {
  plannedReport,
  recordMaxAbsDelta,
  type MergeEvent,
  type MergeReport,
  type MergeReportCarried,
  type MergeReportModule,
} from "./merge-report.js";
import { startMergeRun, type MergeRun } from "./merge-run.js";
import { onnxContainer, parseOnnxSource, type OnnxContainerWeight } from "./onnx-container.js";
import { planDataFiles } from "./plan-data-files.js";

/** The adapter of a merge: an adapter object, or where one lies (loaded by `loadAdapter` against the model). */
export type MergeAdapterInput = VeraAdapter | { source: AdapterSource; adapterName?: string };

/** Parameters of {@link mergeModelFiles}. */
export interface MergeModelFilesParams {
  /** The files the model lies in. */
  files: FileAccess;
  /** The model's path in `files`: an `.onnx` (its external data files beside it, by the locations it names). */
  model: string;
  /** The adapter; a PEFT folder is imported against the model's own shapes, as `vera merge` does. */
  adapter: MergeAdapterInput;
  /** The merge kernel (the same backend as `vera merge --backend` gives the same bytes). */
  backend: ComputeBackend;
  /** Explicit module -> tensor entries (`parseWeightMapping`), as `vera merge --mapping`. @default none */
  mapping?: WeightMapping;
  /** Leave out adapter modules with no weight in this model (listed in the report). @default false */
  skipMissing?: boolean;
  /** Give a shared (tied) weight its own merged copy instead of refusing (ONNX). @default false */
  untie?: boolean;
  /** Cancels the merge (`MERGE_ABORTED`); nothing is returned. @default none */
  signal?: AbortSignal;
  /** Receives the progress events (`planned`, `progress` after each weight, `done`). @default none */
  onProgress?: (e: MergeEvent) => void;
}

/** What {@link mergeModelFiles} produced. */
export interface MergedModel {
  container: ModelContainerKind;
  /** The head file (the `.onnx`) first, then every data file (unchanged ones too), relative to the output folder. */
  files: MergedModelFile[];
  report: MergeReport;
}

/** A located model: its container and what the report says of it. */
interface OpenedModel<W extends ContainerWeight> {
  container: MergeContainer<W>;
  adapter: VeraAdapter;
  adapterSource: MergeReport["adapterSource"];
  /** The head file's name in the output, and its path in the input. */
  head?: { name: string; path: string };
  reportModules: (targets: ReadonlyMap<W, MergedTarget>) => MergeReportModule[];
  skipped: string[];
  carried: MergeReportCarried[];
  warnings: string[];
}

/**
 * Merge a VeRA adapter into a model given as files, in memory or read on demand: the container is found from the
 * content ({@link detectModelContainer}), located, planned and merged by the stages `vera merge` runs, the
 * tensors the adapter carries (modules_to_save heads, trainable biases) placed or refused by name. Only merged
 * weights are held in memory: every other byte of the output is a range of an input file.
 *
 * @throws VeraError `MERGE_CONTAINER_UNKNOWN` (not an ONNX model: checkpoints and GGUF are merged by `mergeModel`
 *   of verakit/merge/node), `ONNX_*`, `IO_UNSAFE_PATH`, `IO_NOT_FOUND` (a data file not given), `MERGE_DATA_*`,
 *   `MERGE_CARRIED_TENSOR`, `MERGE_OVERFLOW`, `MERGE_ABORTED`, the adapter's `VERA_*` / `PEFT_*`.
 */
export async function mergeModelFiles(params: MergeModelFilesParams): Promise<MergedModel> {
  const run = startMergeRun({
    ...(params.signal ? { signal: params.signal } : {}),
    ...(params.onProgress ? { emit: params.onProgress } : {}),
  });
  const kind = await detectModelContainer({ files: params.files, path: params.model });
  if (kind !== "onnx")
    throw new VeraError(
      MergeErrorCode.MERGE_CONTAINER_UNKNOWN,
      `${params.model} is ${kind === undefined ? "no model this merge knows" : `a ${kind === "gguf" ? "GGUF" : "safetensors checkpoint"} model`}: this merge takes ONNX models (merge checkpoints and GGUF files with \`vera merge\`)`,
      { path: params.model, expected: "an ONNX model", received: kind ?? "unknown content" },
    );
  const opened = await openOnnx(params, run);
  return mergeOpened(params, run, kind, opened);
}

/** Read and locate an ONNX model and load the adapter against its Linear weights. */
async function openOnnx(params: MergeModelFilesParams, run: MergeRun): Promise<OpenedModel<OnnxContainerWeight>> {
  const { files, model } = params;
  const t0 = performance.now();
  const stat = await files.stat(model);
  // A protobuf file is at most 2 GiB - 1 (larger models keep their weights in external data files).
  if (stat?.type === "file" && stat.size > 2147483647)
    throw new VeraError(
      OnnxErrorCode.ONNX_TOO_LARGE,
      `${model} is ${stat.size} bytes, beyond protobuf's 2 GiB limit: not an ONNX model file`,
      { path: model, expected: "<= 2147483647 bytes", received: stat.size },
    );
  const source = parseOnnxSource({ path: model, dir: dirnamePath(files, model), bytes: await files.read(model) });
  run.timings.readModel = performance.now() - t0;
  run.check();
  const name = basenamePath(model);
  const loaded = await loadMergeAdapter(params.adapter, (peftWeights) =>
    peftBaseFromOnnx({ weights: source.linear, peftWeights, label: name }),
  );
  const container = await onnxContainer({
    source,
    resolveData: fileAccessDataResolver(files),
    modules: loaded.adapter.modules,
    skipMissing: params.skipMissing ?? false,
    untie: params.untie ?? false,
    carried: loaded.carried,
    ...(params.mapping ? { mapping: params.mapping } : {}),
  });
  return {
    container,
    adapter: loaded.adapter,
    adapterSource: loaded.source,
    head: { name, path: model },
    reportModules: (targets) => container.reportModules(targets),
    skipped: container.skipped,
    carried: container.reportCarried(),
    warnings: [...loaded.warnings, ...container.warnings],
  };
}

/** The adapter object, or the one at a source loaded against the model's shapes (`loadAdapter`). */
async function loadMergeAdapter(
  input: MergeAdapterInput,
  base: AdapterBase,
): Promise<{
  adapter: VeraAdapter;
  source: MergeReport["adapterSource"];
  carried: CarriedTensorTarget[];
  warnings: string[];
}> {
  if (!("source" in input))
    return { adapter: input, source: "object", carried: carriedTensorTargets({ adapter: input }), warnings: [] };
  const loaded = await loadAdapter({
    source: input.source,
    base,
    ...(input.adapterName !== undefined ? { adapterName: input.adapterName } : {}),
  });
  return { adapter: loaded.adapter, source: loaded.format, carried: loaded.carried, warnings: loaded.warnings };
}

/** Plan, compute and assemble a located model's output files. */
async function mergeOpened<W extends ContainerWeight>(
  params: MergeModelFilesParams,
  run: MergeRun,
  kind: ModelContainerKind,
  opened: OpenedModel<W>,
): Promise<MergedModel> {
  const { container, adapter } = opened;
  const { timings } = run;
  const t1 = performance.now();
  const plan = planDataFiles({ files: container.dataFiles, weights: container.weights });
  const report = plannedReport({
    model: params.model,
    inPlace: false,
    dryRun: false,
    adapterSource: opened.adapterSource,
    modules: opened.reportModules(plan.targets),
    carried: opened.carried,
    skipped: opened.skipped,
    weights: container.weights.length,
    bytesMerged: plan.mergedBytes,
    timings,
    warnings: opened.warnings,
  });
  report.backend = params.backend.name;
  timings.plan = performance.now() - t1;
  const tp = performance.now();
  const sliceFor = projectionSlices(adapter);
  timings.projections = performance.now() - tp;
  const order = plan.order;
  run.emit({ type: "planned", report, tensors: order.length, bytesTotal: plan.mergedBytes });
  const pathOf = new Map(plan.files.map((e) => [e.file.key, e.file.path]));
  const values = new Map<W, Uint8Array>();
  let bytesDone = 0;
  let tensorsDone = 0;
  await computeWeights({
    adapter,
    order,
    backend: params.backend,
    sliceFor,
    check: run.check,
    timed: (phase, ms) => void (timings[phase] += ms),
    read: async (w) => {
      const t = performance.now();
      const s = w.storage;
      const v =
        s.kind === "inline"
          ? container.readInline(w)
          : (await params.files.read(pathOf.get(s.file)!, { offset: s.offset, length: w.byteLength })).slice();
      container.prepare?.(w, v);
      timings.read += performance.now() - t;
      return v;
    },
    merged: async (w, v, maxAbsDelta) => {
      recordMaxAbsDelta(report, maxAbsDelta);
      const target = plan.targets.get(w)!;
      container.merged(w, v, target);
      if (target.kind === "data") values.set(w, v);
      bytesDone += w.byteLength;
      run.emit({
        type: "progress",
        tensorsDone: ++tensorsDone,
        tensors: order.length,
        bytesDone,
        bytesTotal: plan.mergedBytes,
        current: w.modules.map((m) => m.module).join(", "),
      });
    },
  });
  run.check();
  const files = [...headFile(opened), ...mergedDataFiles({ plan, values })];
  report.output = opened.head?.name ?? files[0]?.path ?? null;
  report.files = files.map((f) => f.path);
  report.bytesWritten = files.reduce((n, f) => n + f.size, 0);
  timings.total = performance.now() - run.started;
  run.emit({ type: "done", report });
  return { container: kind, files, report };
}

/** The head file's output: its input bytes when no merge changed it, the container's rewritten chunks otherwise. */
function headFile<W extends ContainerWeight>(opened: OpenedModel<W>): MergedModelFile[] {
  const { container, head } = opened;
  if (!head || container.headSize === 0) return [];
  const chunks = container.headChanged() ? container.head() : null;
  const segments: MergedSegment[] = chunks
    ? chunks.map((bytes) => ({ kind: "bytes", bytes }))
    : [{ kind: "input", path: head.path, offset: 0, length: container.headSize }];
  const size = chunks ? chunks.reduce((n, c) => n + c.byteLength, 0) : container.headSize;
  return [{ path: head.name, size, segments }];
}

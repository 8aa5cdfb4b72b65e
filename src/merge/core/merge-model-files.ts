/**
 * The merge without a file system: the same containers, data-file plan, compute stage and carried-tensor placement
 * as `vera merge`, over files read through a {@link FileAccess} (a page's dropped folder, files in memory, a disk),
 * returning the merged model as files of segments (input byte ranges and new bytes) instead of writing them.
 */
import { projectionSlices } from "../../compute/merge-tasks.js";
import { VeraError } from "../../errors.js";
import { MergeErrorCode } from "../error-codes.js";
import { computeWeights } from "./compute-weights.js";
import type { ContainerWeight } from "./container.js";
import { checkContainerOptions, detectModelContainer, type ModelContainerKind } from "./detect-container.js";
import { mergedDataFiles, type MergedModelFile, type MergedSegment } from "./merged-files.js";
import { plannedReport, recordMaxAbsDelta, type MergeReport } from "./merge-report.js";
import { startMergeRun, type MergeRun } from "./merge-run.js";
import { openCheckpointFiles } from "./open-checkpoint-files.js";
import { openGgufFiles } from "./open-gguf-files.js";
import { openOnnxFiles } from "./open-onnx-files.js";
import type { MergeModelFilesParams, OpenedModel } from "./opened-model.js";
import { planDataFiles } from "./plan-data-files.js";

export type { MergeAdapterInput, MergeModelFilesParams } from "./opened-model.js";

/** What {@link mergeModelFiles} produced. */
export interface MergedModel {
  container: ModelContainerKind;
  /**
   * The head file (the `.onnx`) first, then every data file (external data, shards and the checkpoint folder's other
   * files, the GGUF file; unchanged ones too), by `/`-separated path relative to the output folder.
   */
  files: MergedModelFile[];
  report: MergeReport;
}

/**
 * Merge a VeRA adapter into a model given as files, in memory or read on demand: the container is found from the
 * content ({@link detectModelContainer}), located, planned and merged by the stages `vera merge` runs, the
 * tensors the adapter carries (modules_to_save heads, trainable biases) placed or refused by name. Only merged
 * weights are held in memory: every other byte of the output is a range of an input file.
 *
 * @throws VeraError `MERGE_CONTAINER_UNKNOWN` (content that is none of the three), `ARG_INVALID` (an option the container cannot honour), `ONNX_*`, `GGUF_*`
 *   (`GGUF_SPLIT` for a part of a split GGUF), `IO_UNSAFE_PATH`, `IO_NOT_FOUND` (a data file not given),
 *   `MERGE_DATA_*`, `MERGE_CHECKPOINT_INDEX`, `MERGE_WEIGHT_*`, `MERGE_CARRIED_TENSOR`, `MERGE_OVERFLOW`, `MERGE_ABORTED`, the
 *   adapter's `VERA_*` / `PEFT_*`.
 */
export async function mergeModelFiles(params: MergeModelFilesParams): Promise<MergedModel> {
  const run = startMergeRun({
    ...(params.signal ? { signal: params.signal } : {}),
    ...(params.onProgress ? { emit: params.onProgress } : {}),
  });
  const kind = await detectModelContainer({ files: params.files, path: params.model });
  if (kind === undefined)
    throw new VeraError(
      MergeErrorCode.MERGE_CONTAINER_UNKNOWN,
      `${params.model} is no model this merge knows: neither an ONNX model, a GGUF file, nor a safetensors checkpoint`,
      {
        path: params.model,
        expected: "an ONNX model, a GGUF file or a safetensors checkpoint",
        received: "unknown content",
      },
    );
  checkContainerOptions({
    container: kind,
    ...(params.untie !== undefined ? { untie: params.untie } : {}),
    ...(params.skipMissing !== undefined ? { skipMissing: params.skipMissing } : {}),
  });
  if (kind === "gguf") return mergeOpened(params, run, kind, await openGgufFiles(params, run));
  if (kind === "checkpoint") return mergeOpened(params, run, kind, await openCheckpointFiles(params, run));
  return mergeOpened(params, run, kind, await openOnnxFiles(params, run));
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

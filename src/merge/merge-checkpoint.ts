/**
 * Merging into safetensors checkpoints: the checkpoint container ({@link checkpointContainer}) put
 * through the shared stages (data-file plan, compute, copy and write, commit).
 */
import { basename, join, resolve } from "node:path";
import { VeraError } from "../errors.js";
import { MergeErrorCode } from "./error-codes.js";
import { checkpointContainer } from "./core/checkpoint-container.js";
import { drain, eventStream } from "../util/event-stream.js";
import { carriedTensorTargets } from "../peft/carried-tensors.js";
import type { WeightMapping } from "../locate/weight-mapping.js";
import { readWeightMapping } from "./read-weight-mapping.js";
import type { MergeCommonParams } from "./merge-params.js";
import { mergeAdapter } from "./merge-adapter.js";
import { startMergeRun, type MergeRun } from "./core/merge-run.js";
import type { MergeEvent, MergeReport } from "./core/merge-report.js";
import { planAndWrite } from "./plan-and-write.js";
import { readCheckpoint } from "./read-checkpoint.js";
import { checkpointShapes } from "./core/read-checkpoint-files.js";

/** Parameters of {@link mergeCheckpoint} and {@link mergeCheckpointIter}. */
export interface MergeCheckpointParams extends MergeCommonParams {
  /**
   * The base checkpoint: a transformers folder (`model.safetensors`, or shards and
   * `model.safetensors.index.json`) or a single `.safetensors` file.
   */
  model: string;
  /**
   * Where the merged checkpoint goes: a folder for a checkpoint folder (same file names; every
   * other file of the folder is copied), a file path for a single `.safetensors` file. Required
   * unless `inPlace` or `dryRun`.
   */
  output?: string;
  /**
   * Rewrite only the changed shards of the input (each as a temporary file renamed over it); refused
   * for a Hub cache snapshot. @default false
   */
  inPlace?: boolean;
  /** Leave out adapter modules that have no weight in this checkpoint (listed in the report). @default false */
  skipMissing?: boolean;
  /**
   * Module path -> checkpoint tensor (the mapping object, or the path of a mapping file: `parseWeightMapping`'s
   * format, the same for every container), for names the automatic matching does not find. @default none
   */
  mapping?: string | WeightMapping;
}

/**
 * Merge a VeRA adapter into a safetensors checkpoint, as an async generator of progress events
 * whose return value is the report. Only the adapted weights' bytes change: every shard keeps its
 * name, header and tensor order, the index and the other files are copied unchanged. Memory holds
 * a few merged tensors at a time, never the model. Outputs are written as temporary files and
 * renamed at the end; on any error or cancellation nothing is written.
 *
 * @throws VeraError `MERGE_CHECKPOINT_INDEX`, `MERGE_CONTAINER_UNKNOWN`, `MERGE_WEIGHT_*`,
 *   `MERGE_OUTPUT_CONFLICT`, `MERGE_OVERFLOW`, `MERGE_ABORTED`, `ST_*`, `IO_*`.
 */
export async function* mergeCheckpointIter(
  params: MergeCheckpointParams,
): AsyncGenerator<MergeEvent, MergeReport, void> {
  return yield* eventStream<MergeEvent, MergeReport>({
    run: (signal, emit) => runMerge(params, startMergeRun({ signal, emit })),
    ...(params.signal ? { signal: params.signal } : {}),
  });
}

/** {@link mergeCheckpointIter} as a promise; `onProgress` receives the events (a throwing `onProgress` cancels the merge). */
export async function mergeCheckpoint(
  params: MergeCheckpointParams & { onProgress?: (e: MergeEvent) => void },
): Promise<MergeReport> {
  return drain(mergeCheckpointIter(params), params.onProgress);
}

async function runMerge(params: MergeCheckpointParams, run: MergeRun): Promise<MergeReport> {
  const { timings, check } = run;
  const t0 = run.started;
  const checkpoint = await readCheckpoint({ path: params.model });
  timings.readModel = performance.now() - t0;
  check();
  const t1 = performance.now();
  const loaded = await mergeAdapter({
    adapter: params.adapter,
    base: checkpointShapes(checkpoint),
    ...(params.adapterName !== undefined ? { adapterName: params.adapterName } : {}),
  });
  const inPlace = params.inPlace ?? false;
  const dryRun = params.dryRun ?? false;
  if (inPlace && checkpoint.cached)
    throw new VeraError(
      MergeErrorCode.MERGE_OUTPUT_CONFLICT,
      `${checkpoint.dir} is a Hub cache snapshot: merging in place would change the cached revision; give -o OUT instead`,
      { path: checkpoint.dir, expected: "an output folder (-o)", received: "--in-place" },
    );
  const mapping = await readWeightMapping(params.mapping);
  const output =
    params.output === undefined
      ? undefined
      : checkpoint.single
        ? resolve(params.output)
        : join(resolve(params.output), checkpoint.main);
  const container = checkpointContainer({
    checkpoint,
    modules: loaded.adapter.modules,
    skipMissing: params.skipMissing ?? false,
    carried: carriedTensorTargets({ adapter: loaded.adapter }),
    ...(mapping ? { mapping } : {}),
    ...(output !== undefined ? { outputName: basename(output) } : {}),
  });
  const input = join(checkpoint.dir, checkpoint.main);
  return planAndWrite({
    container,
    loaded,
    options: params,
    model: checkpoint.single ? input : checkpoint.dir,
    input,
    ...(output !== undefined ? { output } : {}),
    ...(checkpoint.single ? {} : { outputLabel: inPlace ? checkpoint.dir : resolve(params.output ?? checkpoint.dir) }),
    inPlace,
    dryRun,
    reportModules: () => container.reportModules(),
    skipped: container.skipped,
    carried: container.reportCarried(),
    warnings: loaded.warnings,
    run,
    planStarted: t1,
  });
}

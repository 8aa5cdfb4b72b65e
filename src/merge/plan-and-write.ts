/**
 * The end every merge shares, whatever the container: plan the data files, build the report, and either stop there
 * (dry run) or write the merged model through {@link writeMergedModel} with the caller's options and their defaults.
 */
import { ErrorCode, VeraError } from "../errors.js";
import { createReferenceBackend } from "../compute/reference-backend.js";
import type { VeraAdapter } from "../format/types.js";
import type { ContainerWeight, MergeContainer } from "./core/container.js";
import { guardMerge } from "./guard-merge.js";
import { kernelCopier } from "./file-copier.js";
import { mergeAborted } from "./core/merge-aborted.js";
import type { MergeCommonParams } from "./merge-params.js";
import {
  plannedReport,
  type MergeReport,
  type MergeReportCarried,
  type MergeReportModule,
} from "./core/merge-report.js";
import type { MergeRun } from "./core/merge-run.js";
import { planDataFiles, type DataFilePlan } from "./core/plan-data-files.js";
import { writeInPlace } from "./write-in-place.js";
import { writeMergedModel } from "./write-merged-model.js";

/** Parameters of {@link planAndWrite}. */
export interface PlanAndWriteParams<W extends ContainerWeight> {
  container: MergeContainer<W>;
  /** The loaded adapter, where it came from, and what loading it warned about. */
  loaded: { adapter: VeraAdapter; source: MergeReport["adapterSource"] };
  /** The caller's options (backend, copier, durability, memory budget). */
  options: MergeCommonParams;
  /** What the report calls the model. */
  model: string;
  /** The input's head file (absolute). */
  input: string;
  /** The output's head file; required unless `inPlace` or `dryRun`. */
  output?: string;
  /** What the report calls the output. @default the output's head file */
  outputLabel?: string;
  inPlace: boolean;
  dryRun: boolean;
  /** The report's module table, given the plan. */
  reportModules: (plan: DataFilePlan<W>) => MergeReportModule[];
  /** Adapter modules left out (`skipMissing`). */
  skipped: string[];
  /** Base tensors replaced by tensors the adapter carries. @default none */
  carried?: MergeReportCarried[];
  warnings: string[];
  /** The merge's run context (cancellation, events, timings, start). */
  run: MergeRun;
  /** When planning started (performance.now()). */
  planStarted: number;
}

/** Plan, report, and (unless a dry run) write, the model checked and locked throughout (guardMerge); returns the report. */
export async function planAndWrite<W extends ContainerWeight>(params: PlanAndWriteParams<W>): Promise<MergeReport> {
  return guardMerge(params, () => planAndWriteGuarded(params));
}

async function planAndWriteGuarded<W extends ContainerWeight>(params: PlanAndWriteParams<W>): Promise<MergeReport> {
  const { container, options, dryRun, inPlace, run } = params;
  const { timings, emit } = run;
  const plan = planDataFiles({ files: container.dataFiles, weights: container.weights });
  const report = plannedReport({
    model: params.model,
    inPlace,
    dryRun,
    adapterSource: params.loaded.source,
    modules: params.reportModules(plan),
    carried: params.carried ?? [],
    skipped: params.skipped,
    weights: container.weights.length,
    bytesMerged: plan.mergedBytes,
    timings,
    warnings: [...params.warnings, ...(options.backend?.info?.warnings ?? [])],
  });
  timings.plan = performance.now() - params.planStarted;
  if (dryRun) {
    timings.total = performance.now() - run.started;
    emit({ type: "planned", report, tensors: container.weights.length, bytesTotal: plan.mergedBytes });
    return report;
  }
  const backend = options.backend ?? createReferenceBackend();
  const durable = options.durable ?? true;
  if (inPlace)
    return writeInPlace({
      container,
      plan,
      adapter: params.loaded.adapter,
      input: params.input,
      ...(params.outputLabel !== undefined ? { outputLabel: params.outputLabel } : {}),
      backend,
      durable,
      report,
      check: run.check,
      emit,
      started: run.started,
    });
  if (params.output === undefined)
    throw new VeraError(ErrorCode.ARG_INVALID, "no output given: pass an output path, or ask for an in-place merge", {
      expected: "output path",
    });
  return writeMergedModel({
    container,
    plan,
    adapter: params.loaded.adapter,
    input: params.input,
    output: params.output,
    ...(params.outputLabel !== undefined ? { outputLabel: params.outputLabel } : {}),
    backend,
    copier: options.copier ?? kernelCopier(),
    durable,
    memoryBudget: options.memoryBudget ?? 256 * 1024 * 1024,
    report,
    check: run.check,
    aborted: mergeAborted,
    emit,
    started: run.started,
  });
}

/**
 * The stages after planning of a merge into new files, for any container: resolve the outputs,
 * copy the data files while the weights are computed, write each merged weight into its copy,
 * write the head file, commit. On any error or cancellation every temporary file is removed and
 * the input is untouched. (In place: write-in-place.ts.)
 */
import type { ComputeBackend } from "../compute/backend.js";
import type { VeraAdapter } from "../format/types.js";
import { commitOutputs, rollbackOutputs, writeHeadFile } from "./commit-outputs.js";
import { projectionSlices } from "../compute/merge-tasks.js";
import { computeWeights } from "./core/compute-weights.js";
import type { ContainerWeight, MergeContainer } from "./core/container.js";
import { DataReader } from "./data-reader.js";
import { readStoredWeight, recordMaxAbsDelta } from "./stored-weight.js";
import { DataWriter } from "./data-writer.js";
import type { FileCopier } from "./file-copier.js";
import { MergeProgress } from "./merge-progress.js";
import type { MergeEvent, MergeReport } from "./core/merge-report.js";
import { OutputTransaction } from "./output-transaction.js";
import type { DataFilePlan } from "./core/plan-data-files.js";
import { resolveOutputs } from "./resolve-outputs.js";

/** Parameters of {@link writeMergedModel}. */
export interface WriteMergedModelParams<W extends ContainerWeight> {
  container: MergeContainer<W>;
  plan: DataFilePlan<W>;
  adapter: VeraAdapter;
  /** The input's head file (absolute). */
  input: string;
  /** The output's head file. */
  output: string;
  /** What the report calls the output. @default the output's head file */
  outputLabel?: string;
  backend: ComputeBackend;
  copier: FileCopier;
  durable: boolean;
  memoryBudget: number;
  /** The report so far (planning done); completed here. */
  report: MergeReport;
  /** Throws when the merge is cancelled. */
  check: () => void;
  /** The error of a cancelled merge. */
  aborted: () => Error;
  emit: (e: MergeEvent) => void;
  /** When the merge started (performance.now()), for the total time. */
  started: number;
}

/** Run the merge to its end; returns the completed report. */
export async function writeMergedModel<W extends ContainerWeight>(
  params: WriteMergedModelParams<W>,
): Promise<MergeReport> {
  const { container, plan, report, check, emit } = params;
  const timings = report.timings;
  const timed = (phase: "read" | "compute" | "write" | "copy", ms: number): void => void (timings[phase] += ms);
  const outputs = await resolveOutputs({
    input: params.input,
    output: params.output,
    files: plan.files.map((e) => e.file),
  });
  const order = plan.order;
  const copyFiles = outputs.files;
  const copyTotal = copyFiles.reduce((s, f) => s + f.file.size, 0);
  const head = container.headSize > 0;
  const bytesTotal = plan.mergedBytes + copyTotal + (head ? container.headSize : 0);
  report.backend = params.backend.name;
  report.output = params.outputLabel ?? outputs.output;

  const tp = performance.now();
  const sliceFor = projectionSlices(params.adapter);
  timings.projections = performance.now() - tp;
  emit({ type: "planned", report, tensors: order.length, bytesTotal });

  const tx = new OutputTransaction();
  const pathOf = new Map(plan.files.map((e) => [e.file.key, e.file.path]));
  const reader = new DataReader({ poolBytes: params.memoryBudget, shared: params.backend.sharedBuffers === true });
  const writer = new DataWriter({
    files: copyFiles.map((f) => ({ key: f.file.key, source: f.file.path, dest: f.dest, size: f.file.size })),
    tx,
    copier: params.copier,
    memoryBudget: params.memoryBudget,
    durable: params.durable,
    check,
    aborted: params.aborted,
    timed,
  });
  const progress = new MergeProgress({
    emit,
    tensors: order.length,
    bytesTotal,
    copiedBytes: () => writer.copiedBytes(),
  });
  try {
    await computeWeights({
      adapter: params.adapter,
      order,
      backend: params.backend,
      sliceFor,
      check,
      timed,
      before: (w) => void (progress.current = w.modules.map((m) => m.module).join(", ")),
      read: async (w) => {
        const t = performance.now();
        const v = await readStoredWeight({ container, reader, pathOf, weight: w });
        container.prepare?.(w, v);
        timed("read", performance.now() - t);
        return v;
      },
      merged: async (w, values, maxAbsDelta) => {
        recordMaxAbsDelta(report, maxAbsDelta);
        const target = plan.targets.get(w)!;
        container.merged(w, values, target);
        if (target.kind === "data")
          await writer.write(target.file, target.offset, values, () => reader.release(values));
        await progress.merged(w.byteLength);
      },
    });
    progress.current = undefined;
    await writer.finish();
    if (head) {
      const t = performance.now();
      await writeHeadFile({ tx, path: outputs.output, chunks: container.head() ?? [], durable: params.durable });
      timed("write", performance.now() - t);
    }
    check();
    emit({ type: "committing" });
    const tc = performance.now();
    await commitOutputs({ tx, last: [outputs.output] });
    timings.commit = performance.now() - tc;
  } catch (e) {
    await rollbackOutputs({ tx, settled: writer.copies });
    throw e;
  } finally {
    progress.stop();
    await writer.close();
    await reader.close();
  }
  report.files = [...(head ? [outputs.output] : []), ...copyFiles.map((f) => f.dest)];
  report.bytesWritten = copyTotal + plan.appendedBytes + (head ? container.headSize : 0);
  report.spilledBytes = writer.spilledBytes;
  timings.waitCopy = writer.waited;
  report.earlyWrittenBytes = writer.earlyWrittenBytes;
  timings.total = performance.now() - params.started;
  emit({ type: "done", report });
  return report;
}

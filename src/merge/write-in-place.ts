/**
 * The in-place end of a merge, for any container: only the merged weights' byte ranges of the
 * model's own files are rewritten; no other byte is read or written. An undo journal beside the
 * model holds each range's original bytes, made durable before the range is overwritten, so:
 * - on an error or cancellation the journal is applied at once and the model is as it was;
 * - after a crash or power loss the journal is still there: every merge refuses the model
 *   (`MERGE_INTERRUPTED`) until `vera recover` (`recoverMerge`) has applied it.
 * A head file that changes (an ONNX model with weights inside the `.onnx`) is written as a
 * temporary file and renamed over the original at the end, its original kept as a hard link
 * until the merge is committed. The commit point is the removal of the journal.
 */
import { promises as fsp } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import type { ComputeBackend } from "../compute/backend.js";
import { projectionSlices } from "../compute/merge-tasks.js";
import type { VeraAdapter } from "../format/types.js";
import { VeraError } from "../errors.js";
import { writeRange } from "../node/ranged-io.js";
import { writeHeadFile } from "./commit-outputs.js";
import { computeWeights } from "./core/compute-weights.js";
import type { ContainerWeight, MergeContainer } from "./core/container.js";
import { DataReader } from "./data-reader.js";
import { readStoredWeight, recordMaxAbsDelta } from "./stored-weight.js";
import { MergeErrorCode } from "./error-codes.js";
import { MergeProgress } from "./merge-progress.js";
import type { MergeEvent, MergeReport } from "./core/merge-report.js";
import { OutputTransaction } from "./output-transaction.js";
import type { DataFilePlan } from "./core/plan-data-files.js";
import { applyUndoJournal, headBackupPath, UndoJournal } from "./undo-journal.js";

/** Parameters of {@link writeInPlace}. */
export interface WriteInPlaceParams<W extends ContainerWeight> {
  container: MergeContainer<W>;
  plan: DataFilePlan<W>;
  adapter: VeraAdapter;
  /** The model's head file (absolute): the undo journal goes beside its real path. */
  input: string;
  /** What the report calls the output. @default `input` */
  outputLabel?: string;
  backend: ComputeBackend;
  /** fsync the journal before each overwrite and every file before the commit. */
  durable: boolean;
  /** The report so far (planning done); completed here. */
  report: MergeReport;
  /** Throws when the merge is cancelled. */
  check: () => void;
  emit: (e: MergeEvent) => void;
  /** When the merge started (performance.now()), for the total time. */
  started: number;
}

/** Merged weights whose writes may still run while the next weight is merged. */
const WRITES_AHEAD = 2;

/** Run an in-place merge to its end; returns the completed report. */
export async function writeInPlace<W extends ContainerWeight>(params: WriteInPlaceParams<W>): Promise<MergeReport> {
  const { container, plan, report, check, emit, durable } = params;
  // the journal, the lock and a replaced head go beside the real file (a symlink to it stays one)
  const input = await fsp.realpath(params.input);
  const timings = report.timings;
  const timed = (phase: "read" | "compute" | "write" | "copy", ms: number): void => void (timings[phase] += ms);
  const changed = plan.files.filter((e) => e.merged.length > 0);
  const head = container.headSize > 0 && container.headChanged();
  const bytesTotal = plan.mergedBytes + (head ? container.headSize : 0);
  report.backend = params.backend.name;
  report.output = params.outputLabel ?? params.input;

  const tp = performance.now();
  const sliceFor = projectionSlices(params.adapter);
  timings.projections = performance.now() - tp;
  emit({ type: "planned", report, tensors: plan.order.length, bytesTotal });

  const index = new Map(changed.map((e, i) => [e.file.key, i]));
  const pathOf = new Map(plan.files.map((e) => [e.file.key, e.file.path]));
  const tw = performance.now();
  const journal = await UndoJournal.create({
    input,
    files: changed.map((e) => ({ path: e.file.path, size: e.file.size })),
    headChanges: head,
    durable,
  });
  timed("write", performance.now() - tw);
  const tx = new OutputTransaction();
  const reader = new DataReader({ shared: params.backend.sharedBuffers === true });
  const handles = new Map<string, Promise<FileHandle>>();
  const handleFor = (key: string): Promise<FileHandle> => {
    let h = handles.get(key);
    if (!h) {
      h = fsp.open(pathOf.get(key)!, "r+");
      handles.set(key, h);
    }
    return h;
  };
  /** Journal size that covers each weight's original bytes (data weights overwritten in place). */
  const covered = new Map<W, Promise<number>>();
  const writes: Promise<void>[] = [];
  let dataBytes = 0;
  let headBytes = 0;
  let committed = false;
  const progress = new MergeProgress({ emit, tensors: plan.order.length, bytesTotal, copiedBytes: async () => 0 });
  /** Stop the progress timer and close every file the merge opened (before a rollback, and at the end). */
  const closeFiles = async (): Promise<void> => {
    progress.stop();
    for (const h of handles.values()) await h.then((fh) => fh.close()).catch(() => {});
    handles.clear();
    await reader.close();
  };
  try {
    await computeWeights({
      adapter: params.adapter,
      order: plan.order,
      backend: params.backend,
      sliceFor,
      check,
      timed,
      before: (w) => void (progress.current = w.modules.map((m) => m.module).join(", ")),
      read: async (w) => {
        const t = performance.now();
        const v = await readStoredWeight({ container, reader, pathOf, weight: w });
        timed("read", performance.now() - t);
        const target = plan.targets.get(w)!;
        const s = w.storage;
        if (target.kind === "data" && s.kind === "data" && target.offset === s.offset) {
          const tj = performance.now();
          const end = journal.append(index.get(s.file)!, s.offset, v);
          covered.set(w, end);
          await end; // written before `prepare` may reorder the bytes
          timed("write", performance.now() - tj);
        }
        container.prepare?.(w, v);
        return v;
      },
      merged: async (w, values, maxAbsDelta) => {
        recordMaxAbsDelta(report, maxAbsDelta);
        const target = plan.targets.get(w)!;
        container.merged(w, values, target);
        if (target.kind === "data") {
          // written in the background while the next weight is merged, at most WRITES_AHEAD at a time
          const end = covered.get(w);
          covered.delete(w);
          const job = (async (): Promise<void> => {
            const t = performance.now();
            // write-ahead: the original bytes are written (durable: synced) before the range is overwritten
            if (end) await (durable ? journal.syncThrough(await end) : end);
            check();
            await writeRange(await handleFor(target.file), target.offset, values);
            reader.release(values);
            dataBytes += values.byteLength;
            timed("write", performance.now() - t);
          })();
          job.catch(() => {});
          writes.push(job);
          while (writes.length > WRITES_AHEAD) await writes.shift();
        }
        await progress.merged(w.byteLength);
      },
    });
    for (const job of writes.splice(0)) await job;
    progress.current = undefined;
    const tf = performance.now();
    for (const h of handles.values()) if (durable) await (await h).sync();
    if (head) headBytes = await writeHeadFile({ tx, path: input, chunks: container.head() ?? [], durable });
    timed("write", performance.now() - tf);
    check();
    emit({ type: "committing" });
    const tc = performance.now();
    await tx.commit([input]); // the head (if any) replaced; its original stays linked beside the journal
    await journal.close();
    await fsp.rm(journal.path); // the commit point
    committed = true;
    await fsp.rm(headBackupPath(input), { force: true });
    timings.commit = performance.now() - tc;
  } catch (e) {
    await Promise.allSettled(writes); // no write may land after the rollback
    await tx.release(); // removes the head's temporary file (nothing runs in the background here)
    await closeFiles();
    await journal.close().catch(() => {});
    if (!committed)
      try {
        await applyUndoJournal({ journal: journal.path, durable });
      } catch (re) {
        throw new VeraError(
          MergeErrorCode.MERGE_INTERRUPTED,
          `the in-place merge of ${input} failed (${(e as Error).message}) and putting its original bytes back failed ` +
            `too (${(re as Error).message}); the undo journal ${journal.path} is kept: run \`vera recover ${input}\` once that is fixed`,
          { path: input, expected: "a rolled back model", received: journal.path, cause: e },
        );
      }
    throw e;
  } finally {
    await closeFiles();
  }
  report.files = [...(head ? [params.input] : []), ...changed.map((e) => e.file.path)];
  report.bytesWritten = dataBytes + headBytes;
  timings.total = performance.now() - params.started;
  emit({ type: "done", report });
  return report;
}

/**
 * Rolling back an interrupted in-place merge: the undo journal beside the model is applied (every
 * range it holds written back, grown files truncated, the head file's original put back) and
 * removed. A model without a journal is left alone.
 */
import { promises as fsp } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { ggufSplitName, parseGgufSplitName } from "../gguf/split-name.js";
import { ErrorCode, VeraError } from "../errors.js";
import { sweepStaleTemps } from "../node/temp-files.js";
import { lockModel } from "./model-lock.js";
import { applyUndoJournal, isUndoJournalName, undoJournalPath, type UndoResult } from "./undo-journal.js";

/** Parameters of {@link recoverMerge}. */
export interface RecoverMergeParams {
  /**
   * The model as it was given to the merge: its head file (`model.onnx`, `model.gguf`, a
   * `.safetensors` file, any part of a split GGUF) or its checkpoint folder.
   */
  model: string;
  /** fsync what is restored. @default true */
  durable?: boolean;
}

/** What {@link recoverMerge} did. */
export interface RecoverMergeReport {
  /** The journals applied (none when the model had no interrupted merge). */
  restored: UndoResult[];
}

/** A split GGUF's journal lies beside its first part, whichever part was given. */
function firstPart(path: string): string[] {
  const split = parseGgufSplitName(basename(path));
  if (!split || split.no === 1) return [];
  return [join(dirname(path), ggufSplitName({ ...split, no: 1 }))];
}

async function realOrSelf(path: string): Promise<string> {
  return fsp.realpath(path).catch(() => path);
}

/**
 * The head files whose journal may lie beside them: the path given and its real path (a merge
 * journals beside the real file; older versions beside the path given), a split GGUF's first part.
 */
async function headsOf(model: string, real: string, isDir: boolean): Promise<string[]> {
  const heads: string[] = [];
  if (isDir) {
    for (const dir of new Set([model, real]))
      for (const n of await fsp.readdir(dir))
        if (isUndoJournalName(n)) heads.push(join(dir, n.slice(1, -".vera-undo".length)));
  } else
    for (const p of new Set([model, real])) {
      heads.push(p, ...firstPart(p));
      for (const f of firstPart(p)) heads.push(await realOrSelf(f));
    }
  return heads;
}

/**
 * Roll back an interrupted in-place merge of `model` (symlinks resolved as a merge resolves them).
 * The model is locked first: a merge or recovery that still runs is `MERGE_BUSY`, never rolled back
 * under it. Every journal digest, its record count and its chain are checked before any byte is
 * written: a damaged journal changes nothing. Temporary files a dead merge left beside the model
 * (a partly written head file) are removed.
 *
 * @throws VeraError `IO_NOT_FOUND` (no such model), `MERGE_BUSY`, `MERGE_JOURNAL_CORRUPT`,
 *   `IO_UNSAFE_PATH` (a journal naming a file outside the model's folder), `IO_ERROR`.
 */
export async function recoverMerge(params: RecoverMergeParams): Promise<RecoverMergeReport> {
  const model = resolve(params.model);
  let heads: string[];
  try {
    const real = await fsp.realpath(model);
    heads = await headsOf(model, real, (await fsp.stat(real)).isDirectory());
  } catch (e) {
    throw new VeraError(ErrorCode.IO_NOT_FOUND, `model not found: ${model}`, { path: model, cause: e });
  }
  const restored: UndoResult[] = [];
  const done = new Set<string>();
  for (const head of heads) {
    const journal = undoJournalPath(head);
    if (!(await exists(journal))) continue;
    const realJournal = await realOrSelf(journal);
    if (done.has(realJournal)) continue;
    done.add(realJournal);
    const lock = await lockModel({ head: await realOrSelf(head), mode: "exclusive" });
    try {
      if (await exists(journal)) restored.push(await applyUndoJournal({ journal, durable: params.durable ?? true }));
    } finally {
      await lock.release();
    }
    sweepStaleTemps(dirname(journal));
  }
  return { restored };
}

async function exists(path: string): Promise<boolean> {
  return fsp.lstat(path).then(
    () => true,
    () => false,
  );
}

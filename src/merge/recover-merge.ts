/**
 * Rolling back an interrupted in-place merge: the undo journal beside the model is applied (every
 * range it holds written back, grown files truncated, the head file's original put back) and
 * removed. A model without a journal is left alone.
 */
import { promises as fsp } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { ggufSplitName, parseGgufSplitName } from "../gguf/split-name.js";
import { ErrorCode, VeraError } from "../errors.js";
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
  return [undoJournalPath(join(dirname(path), ggufSplitName({ ...split, no: 1 })))];
}

/**
 * Roll back an interrupted in-place merge of `model`. Every journal digest is checked before any
 * byte is written: a damaged journal changes nothing.
 *
 * @throws VeraError `IO_NOT_FOUND` (no such model), `MERGE_JOURNAL_CORRUPT`, `IO_UNSAFE_PATH`
 *   (a journal naming a file outside the model's folder), `IO_ERROR`.
 */
export async function recoverMerge(params: RecoverMergeParams): Promise<RecoverMergeReport> {
  const model = resolve(params.model);
  let journals: string[];
  try {
    const st = await fsp.stat(model);
    journals = st.isDirectory()
      ? (await fsp.readdir(model)).filter(isUndoJournalName).map((n) => join(model, n))
      : [undoJournalPath(model), ...firstPart(model)];
  } catch (e) {
    throw new VeraError(ErrorCode.IO_NOT_FOUND, `model not found: ${model}`, { path: model, cause: e });
  }
  const restored: UndoResult[] = [];
  for (const journal of journals.sort()) {
    try {
      await fsp.lstat(journal);
    } catch {
      continue;
    }
    restored.push(await applyUndoJournal({ journal, durable: params.durable ?? true }));
  }
  return { restored };
}

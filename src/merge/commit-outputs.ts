/**
 * The commit stage: the head file (the `.onnx`, ...) is written as a temporary file, then every
 * temporary file of the transaction is renamed into place, the head last, so a model never names
 * data that is not in place yet. With `durable`, files are fsynced before the renames.
 */
import { promises as fsp } from "node:fs";
import { writeRange } from "../node/ranged-io.js";
import type { OutputTransaction } from "./output-transaction.js";

/** Parameters of {@link writeHeadFile}. */
export interface WriteHeadFileParams {
  tx: OutputTransaction;
  /** Final path of the head file. */
  path: string;
  /** Its bytes, written back to back. */
  chunks: readonly Uint8Array[];
  /** fsync before returning. */
  durable: boolean;
}

/** Write the head file's temporary copy; returns the bytes written. */
export async function writeHeadFile(params: WriteHeadFileParams): Promise<number> {
  const fh = await fsp.open(params.tx.tempFor(params.path), "w");
  let pos = 0;
  try {
    for (const c of params.chunks) {
      await writeRange(fh, pos, c);
      pos += c.length;
    }
    if (params.durable) await fh.sync();
  } finally {
    await fh.close();
  }
  return pos;
}

/** Parameters of {@link commitOutputs}. */
export interface CommitOutputsParams {
  tx: OutputTransaction;
  /** Final paths renamed last, in this order (the head file). */
  last: readonly string[];
}

/** Rename every temporary file into place (the `last` ones after the others). */
export async function commitOutputs(params: CommitOutputsParams): Promise<void> {
  await params.tx.commit([...params.last]);
}

/** Parameters of {@link rollbackOutputs}. */
export interface RollbackOutputsParams {
  tx: OutputTransaction;
  /** Settles once no background work (a running copy) can touch the temporary paths any more. */
  settled: Promise<void>;
}

/**
 * Remove every temporary file now, and again once background work has settled (the process exit
 * hook keeps covering them until then).
 */
export async function rollbackOutputs(params: RollbackOutputsParams): Promise<void> {
  await params.tx.rollback();
  void params.settled.then(() => params.tx.release());
}

/**
 * Internal (Node): what every merge checks and holds around its work, whatever the container:
 * - no two of the model's files are one file (by device and inode, so hard links, symlinks and
 *   `a/../b` all count): a data file that is the head file, or two data files that are one;
 * - an in-place merge never writes into a Hugging Face cache's `blobs/` (shared by every snapshot);
 * - the model's lock (model-lock.ts): exclusive for an in-place merge, shared for a merge into new
 *   files, checked only for a dry run; then a journal left beside the model is an interrupted merge.
 */
import { promises as fsp } from "node:fs";
import { basename, dirname } from "node:path";
import { ErrorCode, VeraError } from "../errors.js";
import { ioError } from "../node/io-error.js";
import type { ContainerWeight, MergeContainer } from "./core/container.js";
import { MergeErrorCode } from "./error-codes.js";
import { lockModel, refuseBusy } from "./model-lock.js";
import { refuseInterrupted } from "./undo-journal.js";

/** Parameters of {@link guardMerge}. */
export interface GuardMergeParams<W extends ContainerWeight> {
  /** The input's head file (absolute). */
  input: string;
  container: MergeContainer<W>;
  inPlace: boolean;
  dryRun: boolean;
}

/** Refuse a model two of whose files (the head, data files holding tensors) are one file. */
async function refuseAliases<W extends ContainerWeight>(real: string, container: MergeContainer<W>): Promise<void> {
  const seen = new Map<string, string>();
  const add = async (path: string, label: string): Promise<void> => {
    const st = await fsp.stat(path, { bigint: true });
    const id = `${st.dev}:${st.ino}`;
    const other = seen.get(id);
    if (other !== undefined)
      throw new VeraError(
        ErrorCode.IO_UNSAFE_PATH,
        `${other} and ${label} are one file (${path}: a hard link, a symlink or another name for it); ` +
          "merging would write the same bytes twice or over the model's own file, so nothing was done",
        { path, expected: "distinct files", received: [other, label] },
      );
    seen.set(id, label);
  };
  if (container.headSize > 0) await add(real, `the model file ${basename(real)}`);
  for (const f of container.dataFiles)
    if (f.tensors.length > 0) await add(f.path, `data file ${JSON.stringify(f.label)}`);
}

/** A Hugging Face cache blob: `<cache>/models--ns--name/blobs/<digest>`. */
function isCacheBlob(real: string): boolean {
  return basename(dirname(real)) === "blobs" && basename(dirname(dirname(real))).startsWith("models--");
}

/** Refuse an in-place merge that would write into a Hub cache's blobs (shared by every snapshot). */
function refuseCacheBlobs<W extends ContainerWeight>(input: string, real: string, container: MergeContainer<W>) {
  const paths = [...(container.headSize > 0 ? [real] : []), ...container.dataFiles.map((f) => f.path)];
  const blob = paths.find(isCacheBlob);
  if (blob !== undefined)
    throw new VeraError(
      MergeErrorCode.MERGE_OUTPUT_CONFLICT,
      `${input} is in a Hub cache (${blob}): merging in place would change the cached revision and every snapshot ` +
        "sharing that file; give -o OUT instead",
      { path: input, expected: "an output (-o)", received: "--in-place" },
    );
}

/**
 * Check the model's files, take its lock, refuse an interrupted merge, run `run`, release.
 *
 * @throws VeraError `IO_UNSAFE_PATH` (two files that are one), `MERGE_OUTPUT_CONFLICT` (in place in a
 *   Hub cache), `MERGE_BUSY`, `MERGE_INTERRUPTED`, `IO_*`.
 */
export async function guardMerge<W extends ContainerWeight, R>(
  params: GuardMergeParams<W>,
  run: () => Promise<R>,
): Promise<R> {
  const { input, container } = params;
  let real: string;
  try {
    real = await fsp.realpath(input);
  } catch (e) {
    throw ioError({ cause: e, path: input, action: "cannot read the model" });
  }
  await refuseAliases(real, container);
  if (params.inPlace) refuseCacheBlobs(input, real, container);
  const lock = params.dryRun
    ? undefined
    : await lockModel({ head: real, mode: params.inPlace ? "exclusive" : "shared" });
  try {
    if (!lock) await refuseBusy({ head: real });
    await refuseInterrupted({ input, real, locked: lock !== undefined });
    return await run();
  } finally {
    await lock?.release();
  }
}

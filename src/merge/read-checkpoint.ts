/**
 * Internal (Node): reading a safetensors checkpoint for a merge from disk: a single `.safetensors` file, or a
 * transformers folder (`model.safetensors`, or shards listed by `model.safetensors.index.json`), through the merge
 * core's reader (`readCheckpointFolder`). A file may be a symlink only when it stays in the folder, or when the
 * folder is a Hub cache snapshot (`models--ns--name/snapshots/<commit>`) and the link resolves to a file directly in
 * that repo's own `blobs/` folder (the cache's layout).
 */
import { promises as fsp } from "node:fs";
import { basename, dirname, join, resolve, sep } from "node:path";
import { ErrorCode, VeraError } from "../errors.js";
import { readJsonFileBytes } from "../node/files.js";
import { nodeFileAccess } from "../node/node-file-access.js";
import { isInside } from "../node/path-inside.js";
import { hfBlobsOfSnapshot } from "../util/hf-cache-layout.js";
import {
  readCheckpointFolder,
  readShard,
  type Checkpoint,
  type CheckpointAccess,
  type CheckpointFile,
} from "./core/read-checkpoint-files.js";
import { MergeErrorCode } from "./error-codes.js";

export type { Checkpoint, CheckpointShard } from "./core/read-checkpoint-files.js";

/** Parameters of {@link readCheckpoint}. */
export interface ReadCheckpointParams {
  /** A `.safetensors` file, or a folder holding `model.safetensors.index.json` or `model.safetensors`. */
  path: string;
}

/**
 * The `blobs/` folder a Hub cache snapshot folder's links may point into: `dir` (a real path) is
 * `<cache>/models--ns--name/snapshots/<commit>`; undefined for any other folder.
 */
function cacheBlobsOf(dir: string): string | undefined {
  return hfBlobsOfSnapshot(dir.split(sep))?.join(sep);
}

/**
 * The real path of a plain file name inside `dir`; refuses symlinks leading out, except a Hub cache snapshot's link
 * to a file directly in its repo's `blobs/` folder (`cached` then).
 */
async function fileIn(dir: string, name: string, where: string): Promise<CheckpointFile> {
  let real: string;
  try {
    real = await fsp.realpath(join(dir, name));
  } catch (e) {
    throw new VeraError(
      MergeErrorCode.MERGE_CHECKPOINT_INDEX,
      `${where} names ${JSON.stringify(name)}, which is not in ${dir}`,
      { path: join(dir, name), expected: "the shard file", received: "missing", cause: e },
    );
  }
  const blobs = cacheBlobsOf(dir);
  const cached = !isInside(dir, real) && blobs !== undefined && dirname(real) === blobs;
  if (!isInside(dir, real) && !cached)
    throw new VeraError(
      ErrorCode.IO_UNSAFE_PATH,
      `${join(dir, name)} is a symlink to ${real}, outside the checkpoint's folder`,
      {
        path: join(dir, name),
        received: real,
      },
    );
  const st = await fsp.stat(real);
  if (!st.isFile())
    throw new VeraError(ErrorCode.IO_UNSAFE_PATH, `${join(dir, name)} is not a regular file`, {
      path: join(dir, name),
    });
  return { path: real, size: st.size, cached };
}

/** The disk as a checkpoint's files: real paths, the symlink rules of {@link fileIn}. */
function diskCheckpointAccess(): CheckpointAccess {
  const files = nodeFileAccess();
  return {
    names: async (dir) =>
      (await fsp.readdir(dir, { withFileTypes: true }))
        .filter((e) => e.isFile() || e.isSymbolicLink())
        .map((e) => e.name),
    fileIn,
    read: (path, offset, length) => files.read(path, { offset, length }),
    json: (path, what) => readJsonFileBytes(path, what),
    join,
  };
}

/**
 * Read a checkpoint's headers and check its index.
 *
 * @throws VeraError `MERGE_CONTAINER_UNKNOWN` (not a checkpoint), `MERGE_CHECKPOINT_INDEX`,
 *   `IO_UNSAFE_PATH` (a shard name with a path, a symlink out of the folder other than a Hub cache
 *   snapshot's link into its `blobs/`), `ST_*`.
 */
export async function readCheckpoint(params: ReadCheckpointParams): Promise<Checkpoint> {
  const given = resolve(params.path);
  let st;
  try {
    st = await fsp.stat(given);
  } catch (e) {
    throw new VeraError(ErrorCode.IO_NOT_FOUND, `model not found: ${given}`, { path: given, cause: e });
  }
  const access = diskCheckpointAccess();
  if (st.isFile()) {
    if (!given.endsWith(".safetensors"))
      throw new VeraError(MergeErrorCode.MERGE_CONTAINER_UNKNOWN, `${given} is not a .safetensors file`, {
        path: given,
        expected: "*.safetensors",
      });
    const dir = await fsp.realpath(dirname(given));
    const { cached, ...s } = await readShard(access, dir, basename(given), given);
    return { dir, main: s.name, single: true, shards: [s], others: [], cached };
  }
  return readCheckpointFolder({ access, dir: await fsp.realpath(given) });
}

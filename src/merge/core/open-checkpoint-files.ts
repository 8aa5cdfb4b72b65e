/** The pure merge's checkpoint opener: a safetensors file or folder read through a FileAccess (headers only). */
import { ErrorCode, VeraError } from "../../errors.js";
import { basenamePath, dirnamePath, joinPath, readJsonBytes, type FileAccess } from "../../peft/load/file-access.js";
import { MergeErrorCode } from "../error-codes.js";
import { checkpointContainer, type CheckpointWeight } from "./checkpoint-container.js";
import { loadMergeAdapter, openedModel, type ContainerOpener } from "./opened-model.js";
import {
  checkpointShapes,
  readCheckpointFolder,
  readShard,
  type Checkpoint,
  type CheckpointAccess,
} from "./read-checkpoint-files.js";

/** Given files as a checkpoint's folder: a name is found among them or is missing; nothing else exists. */
export function fileAccessCheckpoint(files: FileAccess): CheckpointAccess {
  const join = (dir: string, name: string): string => (dir === "" || dir === "." ? name : joinPath(files, dir, name));
  return {
    names: async (dir) => (await files.list(dir)).filter((e) => e.type === "file").map((e) => e.name),
    async fileIn(dir, name, where) {
      const path = join(dir, name);
      const kind = await files.stat(path);
      if (!kind)
        throw new VeraError(
          MergeErrorCode.MERGE_CHECKPOINT_INDEX,
          `${where} names ${JSON.stringify(name)}, which is not in ${dir}`,
          { path, expected: "the shard file", received: "missing" },
        );
      if (kind.type !== "file")
        throw new VeraError(ErrorCode.IO_UNSAFE_PATH, `${path} is not a regular file`, { path });
      return { path, size: kind.size, cached: false };
    },
    read: (path, offset, length) => files.read(path, { offset, length }),
    json: (path) => readJsonBytes(files, path),
    join,
  };
}

/** Read a checkpoint's headers (a `.safetensors` file, or a transformers folder), size the adapter, locate the weights. */
export const openCheckpointFiles: ContainerOpener<CheckpointWeight> = async (params, run) => {
  const { files, model } = params;
  const t0 = performance.now();
  const access = fileAccessCheckpoint(files);
  let checkpoint: Checkpoint;
  if ((await files.stat(model))?.type === "file") {
    const dir = dirnamePath(files, model);
    const { cached, ...s } = await readShard(access, dir, basenamePath(model), model);
    checkpoint = { dir, main: s.name, single: true, shards: [s], others: [], cached };
  } else checkpoint = await readCheckpointFolder({ access, dir: model });
  run.timings.readModel = performance.now() - t0;
  run.check();
  const loaded = await loadMergeAdapter(params.adapter, checkpointShapes(checkpoint));
  const container = checkpointContainer({
    checkpoint,
    modules: loaded.adapter.modules,
    skipMissing: params.skipMissing ?? false,
    carried: loaded.carried,
    ...(params.mapping ? { mapping: params.mapping } : {}),
  });
  return openedModel({ container, loaded, reportModules: () => container.reportModules() });
};

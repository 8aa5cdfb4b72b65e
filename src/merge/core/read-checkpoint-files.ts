/**
 * A safetensors checkpoint's headers, read through the caller's file access (the disk with its symlink rules, or
 * given files): a single `.safetensors` file, or a transformers folder (`model.safetensors`, or shards listed by
 * `model.safetensors.index.json`, checked against the shards' headers). Only the headers are read.
 */
import { ErrorCode, VeraError } from "../../errors.js";
import { loadedName } from "../../locate/checkpoint-names.js";
import { baseShapesFromWeights } from "../../peft/base-shapes-from-weights.js";
import type { BaseShapes } from "../../peft/base-shapes.js";
import { readSafetensorsHeader, type SafetensorsHeader } from "../../safetensors/parse.js";
import { parseStrictJson } from "../../util/strict-json.js";
import { MergeErrorCode } from "../error-codes.js";

/** A shard of a checkpoint. */
export interface CheckpointShard {
  /** File name (in the checkpoint's folder). */
  name: string;
  /** Real path. */
  path: string;
  size: number;
  header: SafetensorsHeader;
}

/** A checkpoint, headers read. */
export interface Checkpoint {
  /** The checkpoint's folder (real path). */
  dir: string;
  /** The file that names the checkpoint: the index, the single `.safetensors` file. */
  main: string;
  /** True for a single `.safetensors` file given on its own (the output is a file, not a folder). */
  single: boolean;
  /** Shards in file name order. */
  shards: CheckpointShard[];
  /** Other files of the folder, copied as they are (config.json, tokenizer files, the index). */
  others: Array<{ name: string; path: string; size: number }>;
  /** True when some file is a Hub cache link into the repo's `blobs/` folder (the folder is a cache snapshot). */
  cached: boolean;
  /** config.json's `model_type` (beside the checkpoint), when there is one: it names the rules that rename older tensor names. */
  modelType?: string;
}

/** A file of the checkpoint's folder, found and checked. */
export interface CheckpointFile {
  /** Its path, as the access reads it (on disk: its real path). */
  path: string;
  size: number;
  /** A Hub cache snapshot's link into its repo's `blobs/` folder. */
  cached: boolean;
}

/** How a checkpoint's files are found and read. */
export interface CheckpointAccess {
  /** The names of the plain files (and links to them) of a folder. */
  names(dir: string): Promise<string[]>;
  /**
   * A plain file name of the folder (checked with {@link checkPlainName} first), found and checked to stay in it.
   * @throws VeraError `MERGE_CHECKPOINT_INDEX` (missing), `IO_UNSAFE_PATH`.
   */
  fileIn(dir: string, name: string, where: string): Promise<CheckpointFile>;
  /** `size` bytes of a file from `offset`. */
  read(path: string, offset: number, length: number): Promise<Uint8Array>;
  /** A JSON file's bytes, refused over the input limit for JSON. */
  json(path: string, what: string): Promise<Uint8Array>;
  /** `name` in the folder `dir`, for messages. */
  join(dir: string, name: string): string;
}

/** Refuse a name that is not a plain file name in the checkpoint's folder (a path, `..`). */
export function checkPlainName(name: string, where: string): void {
  if (name === "" || name === "." || name === ".." || /[\\/\0]/.test(name))
    throw new VeraError(
      ErrorCode.IO_UNSAFE_PATH,
      `${where} names ${JSON.stringify(name)}, which is not a plain file name in the checkpoint's folder`,
      { path: where, expected: "a file name like model-00001-of-00002.safetensors", received: name },
    );
}

/** A shard: found, and its header read (8 bytes, then the JSON header). */
export async function readShard(
  access: CheckpointAccess,
  dir: string,
  name: string,
  where: string,
): Promise<CheckpointShard & { cached: boolean }> {
  checkPlainName(name, where);
  const f = await access.fileIn(dir, name, where);
  const header: SafetensorsHeader = await readSafetensorsHeader({
    source: { size: f.size, read: (offset, length) => access.read(f.path, offset, length) },
  });
  return { name, ...f, header };
}

/** The index's weight_map (tensor -> shard file name). */
function weightMap(text: string, where: string): Map<string, string> {
  let json: unknown;
  try {
    json = parseStrictJson(text);
  } catch (e) {
    throw new VeraError(MergeErrorCode.MERGE_CHECKPOINT_INDEX, `${where} is not valid JSON: ${(e as Error).message}`, {
      path: where,
      cause: e,
    });
  }
  const map = (json as { weight_map?: unknown } | null)?.weight_map;
  if (typeof map !== "object" || map === null || Array.isArray(map))
    throw new VeraError(MergeErrorCode.MERGE_CHECKPOINT_INDEX, `${where}: weight_map must be an object`, {
      path: where,
      expected: "an object of tensor name -> shard file name",
    });
  const out = new Map<string, string>();
  for (const [tensor, file] of Object.entries(map as Record<string, unknown>)) {
    if (typeof file !== "string")
      throw new VeraError(
        MergeErrorCode.MERGE_CHECKPOINT_INDEX,
        `${where}: weight_map[${JSON.stringify(tensor)}] is not a file name`,
        {
          path: where,
          received: typeof file,
        },
      );
    out.set(tensor, file);
  }
  return out;
}

/** Every tensor the index places in a shard is there, every shard tensor is in the index there, no name twice. */
function checkIndex(map: Map<string, string>, shards: CheckpointShard[], where: string): void {
  const seen = new Map<string, string>();
  for (const s of shards)
    for (const t of s.header.tensors.keys()) {
      const other = seen.get(t);
      if (other !== undefined)
        throw new VeraError(
          MergeErrorCode.MERGE_CHECKPOINT_INDEX,
          `tensor ${JSON.stringify(t)} is in two shards: ${other} and ${s.name}`,
          {
            path: t,
            received: [other, s.name],
          },
        );
      seen.set(t, s.name);
      const listed = map.get(t);
      if (listed !== s.name)
        throw new VeraError(
          MergeErrorCode.MERGE_CHECKPOINT_INDEX,
          listed === undefined
            ? `shard ${s.name} holds tensor ${JSON.stringify(t)}, which ${where} does not list`
            : `${where} places tensor ${JSON.stringify(t)} in ${listed}, but it is in ${s.name}`,
          { path: t, expected: listed ?? "listed in the index", received: s.name },
        );
    }
  for (const [t, file] of map)
    if (seen.get(t) !== file)
      throw new VeraError(
        MergeErrorCode.MERGE_CHECKPOINT_INDEX,
        `${where} places tensor ${JSON.stringify(t)} in ${file}, which does not hold it`,
        {
          path: t,
          expected: file,
          received: seen.get(t) ?? "in no shard",
        },
      );
}

const INDEX = "model.safetensors.index.json";

/**
 * Read a checkpoint folder's headers (`dir` as the access names it) and check its index; every other file of the
 * folder is listed to be copied as it is.
 *
 * @throws VeraError `MERGE_CONTAINER_UNKNOWN` (neither an index nor model.safetensors), `MERGE_CHECKPOINT_INDEX`,
 *   `IO_UNSAFE_PATH`, `ST_*`.
 */
export async function readCheckpointFolder(params: { access: CheckpointAccess; dir: string }): Promise<Checkpoint> {
  const { access, dir } = params;
  const names = await access.names(dir);
  let shards: Array<CheckpointShard & { cached: boolean }>;
  let main: string;
  if (names.includes(INDEX)) {
    main = INDEX;
    checkPlainName(INDEX, INDEX);
    const index = await access.fileIn(dir, INDEX, INDEX);
    const where = access.join(dir, INDEX);
    const map = weightMap(new TextDecoder().decode(await access.json(index.path, "index")), where);
    const files = [...new Set(map.values())].sort();
    shards = [];
    for (const f of files) shards.push(await readShard(access, dir, f, where));
    checkIndex(map, shards, INDEX);
  } else if (names.includes("model.safetensors")) {
    main = "model.safetensors";
    shards = [await readShard(access, dir, main, main)];
  } else
    throw new VeraError(MergeErrorCode.MERGE_CONTAINER_UNKNOWN, `${dir} holds neither ${INDEX} nor model.safetensors`, {
      path: dir,
      expected: `${INDEX} | model.safetensors`,
    });
  const taken = new Set(shards.map((s) => s.name));
  let cached = shards.some((s) => s.cached);
  const others: Checkpoint["others"] = [];
  for (const n of names.sort()) {
    if (taken.has(n)) continue;
    checkPlainName(n, dir);
    const { cached: linked, ...f } = await access.fileIn(dir, n, dir);
    cached ||= linked;
    others.push({ name: n, ...f });
  }
  const modelType = await modelTypeOf(
    access,
    others.find((o) => o.name === "config.json"),
  );
  return {
    dir,
    main,
    single: false,
    shards: shards.map(({ cached: _, ...s }) => s),
    others,
    cached,
    ...(modelType !== undefined ? { modelType } : {}),
  };
}

/** config.json's `model_type`, or undefined (no such file, over 1 MiB, not JSON, no string field). */
async function modelTypeOf(
  access: CheckpointAccess,
  config: { path: string; size: number } | undefined,
): Promise<string | undefined> {
  if (!config || config.size > 1024 * 1024) return undefined;
  try {
    const text = new TextDecoder().decode(await access.read(config.path, 0, config.size));
    const v = (JSON.parse(text) as { model_type?: unknown } | null)?.model_type;
    return typeof v === "string" ? v : undefined;
  } catch {
    return undefined;
  }
}

/** A PEFT folder's module shapes from the checkpoint's headers, under the names transformers loads them as. */
export function checkpointShapes(checkpoint: Checkpoint): BaseShapes {
  const tensors = checkpoint.shards.flatMap((s) =>
    [...s.header.tensors].map(([name, t]) => ({ name, shape: t.shape })),
  );
  return baseShapesFromWeights({
    tensors,
    label: `${checkpoint.main} (header)`,
    loadedName: (n) => loadedName(n, checkpoint.modelType),
  });
}

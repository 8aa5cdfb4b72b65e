/**
 * Internal (Node): reading a safetensors checkpoint for a merge: a single `.safetensors` file, or a
 * transformers folder (`model.safetensors`, or shards listed by `model.safetensors.index.json`).
 * Only the headers are read. The index is checked against the shards' headers: a missing shard, a
 * tensor in the wrong shard or in two shards is refused. A file may be a symlink only when it stays
 * in the folder, or when the folder is a Hub cache snapshot (`models--ns--name/snapshots/<commit>`)
 * and the link resolves to a file directly in that repo's own `blobs/` folder (the cache's layout).
 */
import { promises as fsp } from "node:fs";
import { basename, dirname, join, resolve, sep } from "node:path";
import { ErrorCode, VeraError } from "../errors.js";
import { isInside } from "../node/path-inside.js";
import { readJsonFileBytes, withFileSource } from "../node/files.js";
import { readSafetensorsHeader, type SafetensorsHeader } from "../safetensors/parse.js";
import { hfBlobsOfSnapshot } from "../util/hf-cache-layout.js";
import { parseStrictJson } from "../util/strict-json.js";
import { MergeErrorCode } from "./error-codes.js";

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

/** Parameters of {@link readCheckpoint}. */
export interface ReadCheckpointParams {
  /** A `.safetensors` file, or a folder holding `model.safetensors.index.json` or `model.safetensors`. */
  path: string;
}

const INDEX = "model.safetensors.index.json";

/**
 * The `blobs/` folder a Hub cache snapshot folder's links may point into: `dir` (a real path) is
 * `<cache>/models--ns--name/snapshots/<commit>`; undefined for any other folder.
 */
function cacheBlobsOf(dir: string): string | undefined {
  return hfBlobsOfSnapshot(dir.split(sep))?.join(sep);
}

/**
 * The real path of a plain file name inside `dir`; refuses path components and symlinks leading out,
 * except a Hub cache snapshot's link to a file directly in its repo's `blobs/` folder (`cached` then).
 */
async function fileIn(
  dir: string,
  name: string,
  where: string,
): Promise<{ path: string; size: number; cached: boolean }> {
  if (name === "" || name === "." || name === ".." || /[\\/\0]/.test(name))
    throw new VeraError(
      ErrorCode.IO_UNSAFE_PATH,
      `${where} names ${JSON.stringify(name)}, which is not a plain file name in the checkpoint's folder`,
      { path: where, expected: "a file name like model-00001-of-00002.safetensors", received: name },
    );
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

/** Read a safetensors file's header only (8 bytes, then the JSON header). */
function readHeader(path: string): Promise<SafetensorsHeader> {
  return withFileSource(path, (source) => readSafetensorsHeader({ source }), { maxBytes: Number.MAX_SAFE_INTEGER });
}

async function shard(dir: string, name: string, where: string): Promise<CheckpointShard & { cached: boolean }> {
  const f = await fileIn(dir, name, where);
  return { name, ...f, header: await readHeader(f.path) };
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
  if (st.isFile()) {
    if (!given.endsWith(".safetensors"))
      throw new VeraError(MergeErrorCode.MERGE_CONTAINER_UNKNOWN, `${given} is not a .safetensors file`, {
        path: given,
        expected: "*.safetensors",
      });
    const dir = await fsp.realpath(dirname(given));
    const { cached, ...s } = await shard(dir, basename(given), given);
    return { dir, main: s.name, single: true, shards: [s], others: [], cached };
  }
  const dir = await fsp.realpath(given);
  const names = (await fsp.readdir(dir, { withFileTypes: true }))
    .filter((e) => e.isFile() || e.isSymbolicLink())
    .map((e) => e.name);
  let shards: Array<CheckpointShard & { cached: boolean }>;
  let main: string;
  if (names.includes(INDEX)) {
    main = INDEX;
    const index = await fileIn(dir, INDEX, INDEX);
    const map = weightMap(new TextDecoder().decode(await readJsonFileBytes(index.path, "index")), join(dir, INDEX));
    const files = [...new Set(map.values())].sort();
    shards = [];
    for (const f of files) shards.push(await shard(dir, f, join(dir, INDEX)));
    checkIndex(map, shards, INDEX);
  } else if (names.includes("model.safetensors")) {
    main = "model.safetensors";
    shards = [await shard(dir, main, main)];
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
    const { cached: linked, ...f } = await fileIn(dir, n, dir);
    cached ||= linked;
    others.push({ name: n, ...f });
  }
  const modelType = await modelTypeOf(others.find((o) => o.name === "config.json"));
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
async function modelTypeOf(config: { path: string; size: number } | undefined): Promise<string | undefined> {
  if (!config || config.size > 1024 * 1024) return undefined;
  try {
    const v = (JSON.parse(await fsp.readFile(config.path, "utf8")) as { model_type?: unknown } | null)?.model_type;
    return typeof v === "string" ? v : undefined;
  } catch {
    return undefined;
  }
}

import { ErrorCode, VeraError } from "../../errors.js";
import { listLinearWeights } from "../../onnx/list-linear-weights.js";
import { readOnnxModel } from "../../onnx/read-onnx-model.js";
import { readSafetensorsHeader } from "../../safetensors/parse.js";
import { parseStrictJson } from "../../util/strict-json.js";
import type { BaseShapes } from "../base-shapes.js";
import { baseShapesFromConfig } from "../base-shapes-from-config.js";
import { baseShapesFromOnnx } from "../base-shapes-from-onnx.js";
import { loadedName } from "../../locate/checkpoint-names.js";
import { baseShapesFromWeights, type WeightEntry } from "../base-shapes-from-weights.js";
import { PeftErrorCode } from "../error-codes.js";
import { basenamePath, dirnamePath, joinPath, readJsonBytes, type FileAccess } from "./file-access.js";

/** Parameters of {@link readBaseShapesFrom}. */
export interface ReadBaseShapesFromParams {
  /** Where the base model lies. */
  files: FileAccess;
  /**
   * A transformers config.json, a safetensors weights file (only its header is read), a sharded
   * checkpoint's `model.safetensors.index.json` (each shard's header), an ONNX model (external data is
   * not read), or a folder holding one of these (weights index, weights, config.json, model.onnx: first found).
   */
  path: string;
}

/** The files a base folder is read by, in order of preference. */
const CANDIDATES = ["model.safetensors.index.json", "model.safetensors", "config.json", "model.onnx"];

/** Read only the header of a safetensors file (the one ranged header reader); no weight bytes. */
async function readSafetensorsEntries(files: FileAccess, path: string): Promise<WeightEntry[]> {
  const kind = await files.stat(path);
  if (kind?.type !== "file") throw new VeraError(ErrorCode.IO_NOT_FOUND, `no such file: ${path}`, { path });
  const header = await readSafetensorsHeader({
    source: { size: kind.size, read: (offset, length) => files.read(path, { offset, length }) },
  });
  return [...header.tensors].map(([name, info]) => ({ name, shape: info.shape }));
}

/** A JSON file's value: at most `INPUT_LIMITS.jsonBytes` (checked before reading), strictly parsed. */
async function readJson(files: FileAccess, path: string): Promise<unknown> {
  const bytes = await readJsonBytes(files, path);
  try {
    return parseStrictJson(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (e) {
    throw new VeraError(PeftErrorCode.PEFT_CONFIG_INVALID, `${path} is not valid JSON: ${(e as Error).message}`, {
      path,
      cause: e,
    });
  }
}

/** A shard file name from an index: one plain file name in the index's folder (never a path). */
function checkShardName(name: unknown, indexPath: string): string {
  if (
    typeof name !== "string" ||
    name === "" ||
    name === "." ||
    name === ".." ||
    /[\\/\0]/.test(name) ||
    !name.endsWith(".safetensors")
  )
    throw new VeraError(
      ErrorCode.IO_UNSAFE_PATH,
      `${indexPath} names shard ${JSON.stringify(name)}, which is not a plain .safetensors file name in the same folder`,
      { path: indexPath, expected: "a file name like model-00001-of-00002.safetensors", received: name },
    );
  return name;
}

/** The file a base path names: itself, or the first candidate its folder holds. */
async function baseFile(files: FileAccess, path: string): Promise<string> {
  const kind = await files.stat(path);
  if (kind === undefined) throw new VeraError(ErrorCode.IO_NOT_FOUND, `base model not found: ${path}`, { path });
  if (kind.type === "file") return path;
  for (const c of CANDIDATES) {
    const p = joinPath(files, path, c);
    if ((await files.stat(p))?.type === "file") return p;
  }
  throw new VeraError(PeftErrorCode.PEFT_BASE_UNSUPPORTED, `${path} holds none of ${CANDIDATES.join(", ")}`, {
    path,
    expected: CANDIDATES.join(" | "),
  });
}

/** Module shapes from a config.json or a sharded checkpoint's index (the header of every shard). */
async function shapesFromJson(files: FileAccess, path: string, name: string): Promise<BaseShapes> {
  const json = await readJson(files, path);
  if (typeof json !== "object" || json === null || !("weight_map" in json))
    return baseShapesFromConfig({ config: json, label: name });
  const map = (json as { weight_map: unknown }).weight_map;
  if (typeof map !== "object" || map === null || Array.isArray(map))
    throw new VeraError(PeftErrorCode.PEFT_CONFIG_INVALID, `${path}: weight_map must be an object`, { path });
  const shards = [...new Set(Object.values(map as Record<string, unknown>).map((s) => checkShardName(s, path)))].sort();
  const entries: WeightEntry[] = [];
  const dir = dirnamePath(files, path);
  for (const s of shards) entries.push(...(await readSafetensorsEntries(files, joinPath(files, dir, s))));
  return baseShapesFromWeights({
    tensors: entries,
    label: `${name} (${shards.length} shard header(s))`,
    ...(await checkpointNames(files, dir)),
  });
}

/**
 * The names transformers loads a checkpoint's tensors under (its renaming rules for older checkpoints, e.g.
 * ViT), by the `model_type` of the config.json beside it: PEFT names modules as the loaded model does.
 */
async function checkpointNames(files: FileAccess, dir: string): Promise<{ loadedName?: (stored: string) => string }> {
  const config = joinPath(files, dir, "config.json");
  if ((await files.stat(config))?.type !== "file") return {};
  const json = await readJson(files, config);
  const modelType =
    typeof json === "object" && json !== null && typeof (json as Record<string, unknown>)["model_type"] === "string"
      ? ((json as Record<string, unknown>)["model_type"] as string)
      : undefined;
  return modelType === undefined ? {} : { loadedName: (n) => loadedName(n, modelType) };
}

/**
 * Read a base model's module shapes for importing a PEFT adapter, from any {@link FileAccess}, touching as little
 * as possible: a config.json, the header of a safetensors file (or of every shard of an index), or an ONNX graph.
 *
 * @throws VeraError `IO_NOT_FOUND`, `PEFT_BASE_UNSUPPORTED`, `PEFT_CONFIG_INVALID`, `IO_UNSAFE_PATH` (a shard name),
 *   `ST_*`, `ONNX_*`.
 */
export async function readBaseShapesFrom(params: ReadBaseShapesFromParams): Promise<BaseShapes> {
  const { files } = params;
  const path = await baseFile(files, params.path);
  const name = basenamePath(path);
  if (name.endsWith(".onnx")) {
    const model = readOnnxModel({ bytes: await files.read(path) });
    return baseShapesFromOnnx({ weights: listLinearWeights({ model }), label: name });
  }
  if (name.endsWith(".safetensors"))
    return baseShapesFromWeights({
      tensors: await readSafetensorsEntries(files, path),
      label: `${name} (header)`,
      ...(await checkpointNames(files, dirnamePath(files, path))),
    });
  if (name.endsWith(".json")) return shapesFromJson(files, path, name);
  throw new VeraError(
    PeftErrorCode.PEFT_BASE_UNSUPPORTED,
    `base ${path}: expected a config.json, .safetensors, model.safetensors.index.json or .onnx file`,
    { path, expected: "config.json | *.safetensors | *.safetensors.index.json | *.onnx", received: name },
  );
}

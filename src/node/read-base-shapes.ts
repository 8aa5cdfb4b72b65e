import { promises as fsp } from "node:fs";
import { basename, dirname, join } from "node:path";
import { ErrorCode, VeraError } from "../errors.js";
import { listLinearWeights } from "../onnx/list-linear-weights.js";
import { readOnnxModel } from "../onnx/read-onnx-model.js";
import type { BaseShapes } from "../peft/base-shapes.js";
import { baseShapesFromConfig } from "../peft/base-shapes-from-config.js";
import { baseShapesFromOnnx } from "../peft/base-shapes-from-onnx.js";
import { baseShapesFromWeights, type WeightEntry } from "../peft/base-shapes-from-weights.js";
import { PeftErrorCode } from "../peft/error-codes.js";
import { readSafetensorsHeader } from "../safetensors/parse.js";
import { parseStrictJson } from "../util/strict-json.js";
import { readFileBytes, readJsonFileBytes, withFileSource } from "./files.js";

/** Parameters of {@link readBaseShapes}. */
export interface ReadBaseShapesParams {
  /**
   * A transformers config.json, a safetensors weights file (only its header is read), a sharded
   * checkpoint's `model.safetensors.index.json` (each shard's header), an ONNX model (external data is
   * not read), or a folder holding one of these (weights index, weights, config.json, model.onnx: first found).
   */
  path: string;
}

/** Read only the header of a safetensors file: 8 bytes, then the JSON header; no weight bytes. */
async function readSafetensorsEntries(path: string): Promise<WeightEntry[]> {
  const header = await withFileSource(path, (source) => readSafetensorsHeader({ source }), {
    maxBytes: Number.MAX_SAFE_INTEGER,
    what: "weights file",
  });
  return [...header.tensors].map(([name, info]) => ({ name, shape: info.shape }));
}

function parseJson(bytes: Uint8Array, path: string): unknown {
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
      {
        path: indexPath,
        expected: "a file name like model-00001-of-00002.safetensors",
        received: name,
      },
    );
  return name;
}

/**
 * Read a base model's module shapes for {@link importPeft}, touching as little as possible: a
 * config.json, the header of a safetensors file (or of every shard of an index), or an ONNX graph.
 */
export async function readBaseShapes(params: ReadBaseShapesParams): Promise<BaseShapes> {
  let path = params.path;
  let st: import("node:fs").Stats;
  try {
    st = await fsp.stat(path);
  } catch (e) {
    throw new VeraError(ErrorCode.IO_NOT_FOUND, `base model not found: ${path}`, { path, cause: e });
  }
  if (st.isDirectory()) {
    const candidates = ["model.safetensors.index.json", "model.safetensors", "config.json", "model.onnx"];
    let found: string | undefined;
    for (const c of candidates) {
      try {
        if ((await fsp.stat(join(path, c))).isFile()) {
          found = join(path, c);
          break;
        }
      } catch {
        /* next */
      }
    }
    if (!found)
      throw new VeraError(PeftErrorCode.PEFT_BASE_UNSUPPORTED, `${path} holds none of ${candidates.join(", ")}`, {
        path,
        expected: candidates.join(" | "),
      });
    path = found;
  }
  const name = basename(path);
  if (name.endsWith(".onnx")) {
    const model = readOnnxModel({ bytes: await readFileBytes(path) });
    return baseShapesFromOnnx({ weights: listLinearWeights({ model }), label: name });
  }
  if (name.endsWith(".safetensors"))
    return baseShapesFromWeights({ tensors: await readSafetensorsEntries(path), label: `${name} (header)` });
  if (name.endsWith(".json")) {
    const json = parseJson(await readJsonFileBytes(path), path);
    if (typeof json === "object" && json !== null && "weight_map" in json) {
      const map = (json as { weight_map: unknown }).weight_map;
      if (typeof map !== "object" || map === null || Array.isArray(map))
        throw new VeraError(PeftErrorCode.PEFT_CONFIG_INVALID, `${path}: weight_map must be an object`, { path });
      const shards = [
        ...new Set(Object.values(map as Record<string, unknown>).map((s) => checkShardName(s, path))),
      ].sort();
      const entries: WeightEntry[] = [];
      for (const s of shards) entries.push(...(await readSafetensorsEntries(join(dirname(path), s))));
      return baseShapesFromWeights({ tensors: entries, label: `${name} (${shards.length} shard header(s))` });
    }
    return baseShapesFromConfig({ config: json, label: name });
  }
  throw new VeraError(
    PeftErrorCode.PEFT_BASE_UNSUPPORTED,
    `base ${path}: expected a config.json, .safetensors, model.safetensors.index.json or .onnx file`,
    {
      path,
      expected: "config.json | *.safetensors | *.safetensors.index.json | *.onnx",
      received: name,
    },
  );
}

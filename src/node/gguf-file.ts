import { promises as fsp } from "node:fs";
import { join } from "node:path";
import { ErrorCode, VeraError } from "../errors.js";
import type { VeraAdapter } from "../format/types.js";
import { baseShapesFromGguf } from "../gguf/base-shapes-from-gguf.js";
import type { GgufLoraStream } from "../gguf/export-gguf-lora.js";
import { loraBaseFromConfig, loraBaseFromGguf, type GgufLoraBase } from "../gguf/lora-base.js";
import { parseGgufNameMapping, type GgufNameMapping } from "../gguf/tensor-names.js";
import { importPeft, type ImportPeftReport } from "../peft/import-peft.js";
import { readJsonFileBytes, readVeraFile, withFileSource, writeFileAtomicStream } from "./files.js";
import { readGgufFile } from "./read-gguf-file.js";

export { readGgufFile } from "./read-gguf-file.js";
import { readPeftFolder } from "./peft-folder.js";
import { readBaseShapes } from "./read-base-shapes.js";

function ioError(e: unknown, path: string): VeraError {
  const err = e as NodeJS.ErrnoException;
  if (err.code === "ENOENT") return new VeraError(ErrorCode.IO_NOT_FOUND, `no such file: ${path}`, { path, cause: e });
  return new VeraError(ErrorCode.IO_ERROR, `cannot read ${path}: ${err.message}`, { path, cause: e });
}

/** Write a planned GGUF (header, then each tensor's bytes and padding, one tensor in memory at a time): temp + rename. */
export async function writeGgufStreamFile(
  path: string,
  stream: Pick<GgufLoraStream, "plan" | "tensorBytes">,
): Promise<void> {
  const { plan } = stream;
  await writeFileAtomicStream(path, async (write) => {
    await write(plan.header);
    let pos = plan.header.byteLength;
    for (let i = 0; i < plan.tensors.length; i++) {
      const t = plan.tensors[i]!;
      if (t.position !== pos) throw new RangeError(`tensor ${t.name}: planned at ${t.position}, writing at ${pos}`);
      const bytes = stream.tensorBytes(i);
      await write(bytes);
      if (t.padding) await write(new Uint8Array(t.padding));
      pos += bytes.byteLength + t.padding;
    }
  });
}

/** Parameters of {@link loadGgufLoraInputs}. */
export interface LoadGgufLoraInputsParams {
  /** A verakit file or a PEFT VeRA folder. */
  adapter: string;
  /** The base: a GGUF model file, a transformers config.json, or a folder holding config.json. */
  base: string;
  /** A mapping file (JSON module -> llama.cpp tensor name). @default undefined */
  mapping?: string;
  /** Named adapter of a PEFT folder. @default undefined */
  adapterName?: string;
}

/** What {@link loadGgufLoraInputs} read: the adapter, the base description, and the mapping. */
export interface GgufLoraInputs {
  adapter: VeraAdapter;
  base: GgufLoraBase;
  mapping?: GgufNameMapping;
  imported?: ImportPeftReport;
}

/**
 * Read what `exportGgufLora` needs: the base (a GGUF header by ranges, or a config.json), the mapping
 * file, and the adapter (a PEFT folder is sized by the same base: GGUF tensor shapes or config.json).
 */
export async function loadGgufLoraInputs(params: LoadGgufLoraInputsParams): Promise<GgufLoraInputs> {
  const mapping =
    params.mapping !== undefined
      ? parseGgufNameMapping(new TextDecoder().decode(await readJsonFileBytes(params.mapping)), params.mapping)
      : undefined;
  let basePath = params.base;
  try {
    if ((await fsp.stat(basePath)).isDirectory()) basePath = join(basePath, "config.json");
  } catch (e) {
    throw ioError(e, basePath);
  }
  const head = await withFileSource(basePath, (s) => s.read(0, Math.min(4, s.size)), {
    maxBytes: Number.MAX_SAFE_INTEGER,
  });
  const isGguf = new TextDecoder().decode(head) === "GGUF";
  const base = isGguf
    ? loraBaseFromGguf(await readGgufFile(basePath), basePath)
    : loraBaseFromConfig(new TextDecoder().decode(await readJsonFileBytes(basePath)), basePath);
  let isDir = false;
  try {
    isDir = (await fsp.stat(params.adapter)).isDirectory();
  } catch {
    /* readVeraFile reports the missing file */
  }
  if (!isDir) return { adapter: await readVeraFile(params.adapter), base, ...(mapping ? { mapping } : {}) };
  const folder = await readPeftFolder({
    dir: params.adapter,
    ...(params.adapterName !== undefined ? { adapterName: params.adapterName } : {}),
  });
  const modules = [...folder.weights.tensors.keys()]
    .filter((k) => k.endsWith(".vera_lambda_b"))
    .map((k) => k.replace(/^base_model\.model\./, "").replace(/\.vera_lambda_b$/, ""));
  const shapes = isGguf
    ? baseShapesFromGguf({ base, modules, ...(mapping ? { mapping } : {}) })
    : await readBaseShapes({ path: basePath });
  const { adapter, report } = importPeft({
    config: folder.configText,
    weights: folder.weights,
    adapterName: folder.adapterName,
    configLabel: `${folder.dir}/adapter_config.json`,
    base: shapes,
  });
  return { adapter, base, imported: report, ...(mapping ? { mapping } : {}) };
}

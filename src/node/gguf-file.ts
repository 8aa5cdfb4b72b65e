import { promises as fsp } from "node:fs";
import { join } from "node:path";
import type { VeraAdapter } from "../format/types.js";
import { baseShapesFromGguf } from "../gguf/base-shapes-from-gguf.js";
import type { GgufLoraStream } from "../gguf/export-gguf-lora.js";
import { loraBaseFromConfig, loraBaseFromGguf, type GgufLoraBase } from "../gguf/lora-base.js";
import { parseGgufNameMapping, type GgufNameMapping } from "../gguf/tensor-names.js";
import type { ImportPeftReport } from "../peft/import-peft.js";
import type { LoadedAdapter } from "../peft/load/load-adapter.js";
import { peftModulePaths } from "../peft/peft-module-paths.js";
import { readJsonFileBytes, withFileSource, writeFileAtomicStream } from "./files.js";
import { loadAdapterFromPath } from "./load-adapter.js";
import { readGgufFile } from "./read-gguf-file.js";

export { readGgufFile } from "./read-gguf-file.js";
import { readBaseShapes } from "./read-base-shapes.js";
import type { SafetensorsFile } from "../safetensors/parse.js";
import { ioError } from "./io-error.js";

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
  /** The adapter as `loadAdapter` gave it (carried tensors included). */
  loaded: LoadedAdapter;
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
    throw ioError({ cause: e, path: basePath, action: "cannot read" });
  }
  const head = await withFileSource(basePath, (s) => s.read(0, Math.min(4, s.size)), {
    maxBytes: Number.MAX_SAFE_INTEGER,
  });
  const isGguf = new TextDecoder().decode(head) === "GGUF";
  const base = isGguf
    ? loraBaseFromGguf(await readGgufFile(basePath), basePath)
    : loraBaseFromConfig(new TextDecoder().decode(await readJsonFileBytes(basePath)), basePath);
  const loaded = await loadAdapterFromPath({
    path: params.adapter,
    // a PEFT folder is sized by the same base: the GGUF's tensor shapes, or config.json
    ...(isGguf
      ? {
          base: (peft: SafetensorsFile) =>
            baseShapesFromGguf({ base, modules: peftModulePaths(peft), ...(mapping ? { mapping } : {}) }),
        }
      : { readBase: () => readBaseShapes({ path: basePath }) }),
    ...(params.adapterName !== undefined ? { adapterName: params.adapterName } : {}),
  });
  return {
    adapter: loaded.adapter,
    base,
    loaded,
    ...(loaded.imported ? { imported: loaded.imported } : {}),
    ...(mapping ? { mapping } : {}),
  };
}

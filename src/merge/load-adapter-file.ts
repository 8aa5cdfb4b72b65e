import { promises as fsp } from "node:fs";
import { ErrorCode, VeraError } from "../errors.js";
import type { VeraAdapter } from "../format/types.js";
import { readVeraFile } from "../node/files.js";
import { readPeftFolder } from "../node/peft-folder.js";
import type { BaseShapes } from "../peft/base-shapes.js";
import { importPeft } from "../peft/import-peft.js";
import type { SafetensorsFile } from "../safetensors/parse.js";

/** Parameters of {@link loadAdapterFile}. */
export interface LoadAdapterFileParams {
  /** A verakit file (`adapter.vera.safetensors`) or a PEFT adapter folder. */
  path: string;
  /**
   * The base model's module shapes for a PEFT folder (PEFT files do not record in_features), or a
   * function of the PEFT weights that gives them.
   */
  base: BaseShapes | ((peftWeights: SafetensorsFile) => BaseShapes);
  /** PEFT sub-adapter name. @default the folder's adapter */
  adapterName?: string;
}

/** A loaded adapter and where it came from. */
export interface LoadedAdapterFile {
  adapter: VeraAdapter;
  /** `vera`: a verakit file; `peft`: imported from a PEFT folder against the base's shapes. */
  source: "vera" | "peft";
  /** Importer warnings (PEFT). */
  warnings: string[];
}

/**
 * Load the adapter to merge, for any kind of model: a verakit file, or a PEFT folder imported
 * against the model's module shapes.
 *
 * @throws VeraError `IO_NOT_FOUND`, `FORMAT_*` / `ST_*` (a broken verakit file), `PEFT_*`.
 */
export async function loadAdapterFile(params: LoadAdapterFileParams): Promise<LoadedAdapterFile> {
  let st;
  try {
    st = await fsp.stat(params.path);
  } catch (e) {
    throw new VeraError(ErrorCode.IO_NOT_FOUND, `adapter not found: ${params.path}`, { path: params.path, cause: e });
  }
  if (st.isDirectory()) {
    const folder = await readPeftFolder({
      dir: params.path,
      ...(params.adapterName !== undefined ? { adapterName: params.adapterName } : {}),
    });
    const base = typeof params.base === "function" ? params.base(folder.weights) : params.base;
    const { adapter, report } = importPeft({
      config: folder.configText,
      weights: folder.weights,
      base,
      adapterName: folder.adapterName,
    });
    return { adapter, source: "peft", warnings: report.warnings };
  }
  return { adapter: await readVeraFile(params.path), source: "vera", warnings: [] };
}

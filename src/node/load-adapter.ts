import { promises as fsp } from "node:fs";
import type { VeraAdapter } from "../format/types.js";
import type { BaseShapes } from "../peft/base-shapes.js";
import { importPeft, type ImportPeftReport } from "../peft/import-peft.js";
import { readVeraFile } from "./files.js";
import { readPeftFolder } from "./peft-folder.js";
import { readBaseShapes } from "./read-base-shapes.js";

/** Parameters of {@link loadAdapter}. */
export interface LoadAdapterParams {
  /** A verakit file, or a PEFT VeRA adapter folder. */
  path: string;
  /** Base model for a PEFT folder (see readBaseShapes). @default undefined */
  base?: string;
  /** Base shapes known already (e.g. from a grafted model's record), used when `base` is not given. @default undefined */
  baseShapes?: BaseShapes;
  /** Named adapter of a PEFT folder (see readPeftFolder). @default undefined */
  adapterName?: string;
}

/** Load a verakit file, or import a PEFT VeRA folder (then `imported` holds the import report). */
export async function loadAdapter(
  params: LoadAdapterParams,
): Promise<{ adapter: VeraAdapter; imported?: ImportPeftReport }> {
  let isDir = false;
  try {
    isDir = (await fsp.stat(params.path)).isDirectory();
  } catch {
    /* readVeraFile reports the missing file */
  }
  if (!isDir) return { adapter: await readVeraFile(params.path) };
  const folder = await readPeftFolder({
    dir: params.path,
    ...(params.adapterName !== undefined ? { adapterName: params.adapterName } : {}),
  });
  const base = params.base !== undefined ? await readBaseShapes({ path: params.base }) : params.baseShapes;
  const { adapter, report } = importPeft({
    config: folder.configText,
    weights: folder.weights,
    adapterName: folder.adapterName,
    configLabel: `${folder.dir}/adapter_config.json`,
    ...(base ? { base } : {}),
  });
  return { adapter, imported: report };
}

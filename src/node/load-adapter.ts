import { decodeAdapter, type AdapterBase, type LoadedAdapter } from "../peft/load/load-adapter.js";
import { readAdapterSource } from "../peft/load/read-adapter-source.js";
import { nodeFileAccess } from "./node-file-access.js";
import { readBaseShapes } from "./read-base-shapes.js";

/** Parameters of {@link loadAdapterFromPath}. */
export interface LoadAdapterFromPathParams {
  /** A verakit file, or a PEFT VeRA adapter folder (or its adapter_config.json). */
  path: string;
  /**
   * The base model for a PEFT folder: a path `readBaseShapes` reads (config.json, a safetensors header or index,
   * an .onnx, or a folder holding one), its shapes, or a function of the PEFT weights giving them.
   * @default undefined
   */
  base?: string | AdapterBase;
  /** Named adapter of a PEFT folder holding several. @default the folder's adapter */
  adapterName?: string;
}

/**
 * `loadAdapter` over the local file system: the Node door to the one adapter loader (verakit/peft), its two stages
 * (readAdapterSource, decodeAdapter) with a base given as a path read by `readBaseShapes` in between.
 */
export async function loadAdapterFromPath(params: LoadAdapterFromPathParams): Promise<LoadedAdapter> {
  const files = nodeFileAccess();
  const read = await readAdapterSource({
    source: { files, path: params.path },
    ...(params.adapterName !== undefined ? { adapterName: params.adapterName } : {}),
  });
  // a base given as a path is read only for a PEFT folder (a verakit file records its shapes)
  const base =
    typeof params.base === "string"
      ? read.format === "peft"
        ? await readBaseShapes({ path: params.base })
        : undefined
      : params.base;
  return decodeAdapter({ files: read, ...(base !== undefined ? { base } : {}), join: files.join! });
}

import { decodeAdapter, type AdapterBase, type LoadedAdapter } from "../peft/load/load-adapter.js";
import { readAdapterSource } from "../peft/load/read-adapter-source.js";
import { nodeFileAccess } from "./node-file-access.js";
import type { BaseShapes } from "../peft/base-shapes.js";

/** Parameters of {@link loadAdapterFromPath}. */
export interface LoadAdapterFromPathParams {
  /** A verakit file, or a PEFT VeRA adapter folder (or its adapter_config.json). */
  path: string;
  /**
   * The base model's shapes for a PEFT folder, or a function of the PEFT weights giving them.
   * @default undefined
   */
  base?: AdapterBase;
  /**
   * Reads the base's shapes, called only for a PEFT folder (a verakit file records its shapes), e.g.
   * `() => readBaseShapes({ path })`. Ignored when `base` is given.
   * @default undefined
   */
  readBase?: () => Promise<BaseShapes>;
  /** Named adapter of a PEFT folder holding several. @default the folder's adapter */
  adapterName?: string;
}

/**
 * `loadAdapter` over the local file system: the Node door to the one adapter loader (verakit/peft), its two stages
 * (readAdapterSource, decodeAdapter), with the base read in between only for a PEFT folder.
 */
export async function loadAdapterFromPath(params: LoadAdapterFromPathParams): Promise<LoadedAdapter> {
  const files = nodeFileAccess();
  const read = await readAdapterSource({
    source: { files, path: params.path },
    ...(params.adapterName !== undefined ? { adapterName: params.adapterName } : {}),
  });
  const base = params.base ?? (read.format === "peft" && params.readBase ? await params.readBase() : undefined);
  return decodeAdapter({ files: read, ...(base !== undefined ? { base } : {}), join: files.join! });
}

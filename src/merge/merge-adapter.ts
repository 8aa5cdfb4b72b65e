import type { VeraAdapter } from "../format/types.js";
import { loadAdapterFromPath } from "../node/load-adapter.js";
import type { AdapterBase } from "../peft/load/load-adapter.js";
import type { MergeReport } from "./core/merge-report.js";

/** Parameters of {@link mergeAdapter}. */
export interface MergeAdapterParams {
  /** The adapter object, or a verakit file / PEFT folder to load through the one adapter loader. */
  adapter: string | VeraAdapter;
  /** A PEFT folder's module shapes, from the model being merged (or a function of the PEFT weights). */
  base: AdapterBase;
  /** PEFT sub-adapter name. @default the folder's adapter */
  adapterName?: string;
}

/** The adapter a merge applies, where it came from, and the loader's warnings (any container). */
export async function mergeAdapter(
  params: MergeAdapterParams,
): Promise<{ adapter: VeraAdapter; source: MergeReport["adapterSource"]; warnings: string[] }> {
  if (typeof params.adapter !== "string") return { adapter: params.adapter, source: "object", warnings: [] };
  const loaded = await loadAdapterFromPath({
    path: params.adapter,
    base: params.base,
    ...(params.adapterName !== undefined ? { adapterName: params.adapterName } : {}),
  });
  return { adapter: loaded.adapter, source: loaded.format, warnings: loaded.warnings };
}

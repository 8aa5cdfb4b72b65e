/**
 * Internal: a PEFT VeRA repo pulled as a verakit adapter, through the one adapter loader. src/peft is loaded
 * lazily so a plain verakit pull does not load the converter.
 */
import { parseStrictJson } from "../../util/strict-json.js";
import { isVeraError, VeraError } from "../../errors.js";
import type { VeraAdapter } from "../../format/types.js";
import { writeVera } from "../../format/write.js";

/** Fetches a base model's parsed config.json (from the Hub or the cache), or undefined. */
export type BaseConfigProvider = (baseRepo: string, revision: string) => Promise<unknown | undefined>;

/** The base model a PEFT config names, when it is a Hub repo id. */
export function peftBaseOf(config: Uint8Array): { repo: string; revision: string } | undefined {
  try {
    const cfg = parseStrictJson(new TextDecoder().decode(config)) as Record<string, unknown>;
    const id = cfg["base_model_name_or_path"];
    const rev = cfg["revision"];
    if (
      typeof id !== "string" ||
      !/^[A-Za-z0-9_.-]{1,96}\/[A-Za-z0-9_.-]{1,96}$/.test(id) ||
      id.includes("..") ||
      id.includes("--")
    )
      return undefined;
    return {
      repo: id,
      revision: typeof rev === "string" && /^[A-Za-z0-9._\-/]{1,256}$/.test(rev) && !rev.includes("..") ? rev : "main",
    };
  } catch {
    return undefined;
  }
}

/**
 * Import a PEFT VeRA adapter downloaded into memory, with `loadAdapter` over the downloaded files (the repo is
 * the folder). When the module dimensions cannot be inferred from the adapter alone (PEFT_BASE_REQUIRED), the
 * base model's config.json named by base_model_name_or_path is asked from `baseConfig` and the load is repeated
 * with its shapes.
 */
export async function importPeftFiles(p: {
  config: Uint8Array;
  weights: Uint8Array;
  repo: string;
  baseConfig?: BaseConfigProvider;
}): Promise<{ adapter: VeraAdapter; bytes: Uint8Array }> {
  const { loadAdapter, pathFileAccess, PEFT_CONFIG_NAME, PEFT_WEIGHTS_NAME } = await import("../../peft/index.js");
  const { baseShapesFromConfig } = await import("../../peft/base-shapes-from-config.js");
  const files = pathFileAccess([
    { path: `${p.repo}/${PEFT_CONFIG_NAME}`, file: p.config },
    { path: `${p.repo}/${PEFT_WEIGHTS_NAME}`, file: p.weights },
  ]);
  const source = { files, path: p.repo };
  let adapter: VeraAdapter;
  try {
    adapter = (await loadAdapter({ source })).adapter;
  } catch (e) {
    const base = peftBaseOf(p.config);
    if (!isVeraError(e) || e.code !== "PEFT_BASE_REQUIRED" || !base || !p.baseConfig) throw e;
    let cfg: unknown;
    try {
      cfg = await p.baseConfig(base.repo, base.revision);
    } catch (inner) {
      const why = isVeraError(inner) ? `${inner.code}: ${inner.message}` : String((inner as Error)?.message ?? inner);
      throw new VeraError(
        e.code,
        `${e.message}. The base model ${base.repo} (from base_model_name_or_path) could not be read: ${why}`,
        { path: base.repo },
      );
    }
    if (cfg === undefined) throw e;
    const shapes = baseShapesFromConfig({ config: cfg, label: `${base.repo}/config.json` });
    adapter = (await loadAdapter({ source, base: shapes })).adapter;
  }
  return { adapter, bytes: writeVera({ adapter }) };
}

import { homedir } from "node:os";
import { join } from "node:path";
import { hfHome } from "./resolve-hub-token.js";

/** Parameters of {@link resolveHubCacheDir}. */
export interface ResolveHubCacheDirParams {
  /** An explicit cache folder; wins over the environment. */
  cacheDir?: string;
  /** Environment to read from. @default process.env */
  env?: Readonly<Record<string, string | undefined>>;
}

/**
 * The Hub cache folder, as Python's huggingface_hub finds it: HF_HUB_CACHE, else the older
 * HUGGINGFACE_HUB_CACHE, else HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub.
 */
export function resolveHubCacheDir(params: ResolveHubCacheDirParams = {}): string {
  const env = params.env ?? process.env;
  const expand = (p: string): string => (p === "~" || p.startsWith("~/") ? join(homedir(), p.slice(1)) : p);
  if (params.cacheDir) return expand(params.cacheDir);
  const explicit = env["HF_HUB_CACHE"] || env["HUGGINGFACE_HUB_CACHE"];
  if (explicit) return expand(explicit);
  return join(hfHome(env), "hub");
}

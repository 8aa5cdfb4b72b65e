import { promises as fsp } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

/** Parameters of {@link resolveHubToken}. */
export interface ResolveHubTokenParams {
  /** An explicit token (e.g. from `--token`); wins over everything else. */
  token?: string;
  /** Environment to read from. @default process.env */
  env?: Readonly<Record<string, string | undefined>>;
}

/** A token and where it came from (for messages; the token itself is never printed). */
export interface ResolvedHubToken {
  token: string;
  source: "option" | "HF_TOKEN" | "HUGGING_FACE_HUB_TOKEN" | "token-file";
  /** The token file, when the token came from one. */
  path?: string;
}

/** The folder huggingface_hub keeps its state in: HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface. */
export function hfHome(env: Readonly<Record<string, string | undefined>>): string {
  const expand = (p: string): string => (p === "~" || p.startsWith("~/") ? join(homedir(), p.slice(1)) : p);
  if (env["HF_HOME"]) return expand(env["HF_HOME"]);
  return join(expand(env["XDG_CACHE_HOME"] || join(homedir(), ".cache")), "huggingface");
}

/**
 * Find the access token the way Python's huggingface_hub does: the explicit token, else HF_TOKEN
 * (or the older HUGGING_FACE_HUB_TOKEN), else the token file `hf auth login` writes (HF_TOKEN_PATH,
 * default HF_HOME/token). Returns undefined when there is none. Never logs the token.
 */
export async function resolveHubToken(params: ResolveHubTokenParams = {}): Promise<ResolvedHubToken | undefined> {
  const env = params.env ?? process.env;
  if (params.token !== undefined && params.token !== "") return { token: params.token, source: "option" };
  const fromEnv = env["HF_TOKEN"]?.trim();
  if (fromEnv) return { token: fromEnv, source: "HF_TOKEN" };
  const legacy = env["HUGGING_FACE_HUB_TOKEN"]?.trim();
  if (legacy) return { token: legacy, source: "HUGGING_FACE_HUB_TOKEN" };
  const path = env["HF_TOKEN_PATH"] || join(hfHome(env), "token");
  let fh: fsp.FileHandle | undefined;
  try {
    fh = await fsp.open(path, "r");
    const buf = Buffer.alloc(4096);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    const token = buf.subarray(0, bytesRead).toString("utf8").trim();
    return token ? { token, source: "token-file", path } : undefined;
  } catch {
    return undefined;
  } finally {
    await fh?.close().catch(() => {});
  }
}

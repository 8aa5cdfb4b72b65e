/** Internal: find which adapter files a repository revision holds, and decode downloaded files. */
import { isVeraError, VeraError } from "../../errors.js";
import { checkInputSize, INPUT_LIMITS } from "../../util/input-limits.js";
import type { VeraAdapter } from "../../format/types.js";
import { HubErrorCode } from "../errors.js";
import type { HubFetch } from "../hub-fetch.js";
import { checkRepoPath } from "../repo-names.js";
import { loadHubLib } from "../internal/hub-lib.js";
import { importPeftFiles, type BaseConfigProvider } from "./import-peft-files.js";

/** The PEFT file names. */
export const PEFT_CONFIG = "adapter_config.json";
export const PEFT_WEIGHTS = "adapter_model.safetensors";

/** One file to fetch, as paths-info describes it. */
export interface AdapterFileRef {
  path: string;
  size: number;
  /** SHA-256 (LFS) or git blob SHA-1: the name of the blob in the cache. */
  etag: string;
}

/** Where the adapter of a revision is. */
export interface ResolvedAdapterFiles {
  /** The commit the revision points to. */
  commit: string;
  format: "vera" | "peft";
  files: AdapterFileRef[];
}

export interface ResolveAdapterFilesParams {
  repo: string;
  revision: string;
  filename: string;
  hubUrl: string;
  accessToken?: string;
  hubFetch: HubFetch;
  /** Largest file accepted. */
  maxBytes: number;
}

const COMMIT_RE = /^[0-9a-f]{40}$/;

/** The commit id a revision points to, asked of the Hub; a typed error when the answer holds none. */
async function revisionCommit(p: {
  repo: string;
  revision: string;
  hubUrl: string;
  accessToken?: string;
  hubFetch: HubFetch;
}): Promise<string> {
  const { modelInfo } = await loadHubLib();
  const info = await modelInfo({
    name: p.repo,
    revision: p.revision,
    additionalFields: ["sha"],
    hubUrl: p.hubUrl,
    fetch: p.hubFetch.fetch,
    ...(p.accessToken ? { accessToken: p.accessToken } : {}),
  });
  const commit = (info as { sha?: unknown }).sha;
  if (typeof commit !== "string" || !COMMIT_RE.test(commit))
    throw new VeraError(HubErrorCode.HUB_BAD_RESPONSE, `the Hub did not give a commit id for ${p.repo}@${p.revision}`, {
      path: p.repo,
      expected: "40 hex digits",
      received: typeof commit === "string" ? commit.slice(0, 64) : typeof commit,
    });
  return commit;
}

/** Ask the Hub for the commit of a revision, then which adapter files it has. */
export async function resolveAdapterFiles(p: ResolveAdapterFilesParams): Promise<ResolvedAdapterFiles> {
  const cred = p.accessToken ? { accessToken: p.accessToken } : {};
  const { pathsInfo } = await loadHubLib();
  const commit = await revisionCommit(p);
  const wanted = [p.filename, PEFT_CONFIG, PEFT_WEIGHTS];
  const entries = await pathsInfo({
    repo: p.repo,
    paths: wanted,
    revision: commit,
    hubUrl: p.hubUrl,
    fetch: p.hubFetch.fetch,
    ...cred,
  });
  const found = new Map<string, AdapterFileRef>();
  for (const e of entries) {
    if (!wanted.includes(e.path) || e.type !== "file") continue;
    const etag = e.lfs?.oid ?? e.oid;
    if (
      typeof etag !== "string" ||
      !/^([0-9a-f]{40}|[0-9a-f]{64})$/.test(etag) ||
      !Number.isSafeInteger(e.size) ||
      e.size < 0
    )
      throw new VeraError(
        HubErrorCode.HUB_BAD_RESPONSE,
        `the Hub described ${e.path} in ${p.repo} with an unusable oid or size`,
        { path: e.path, received: { oid: String(etag).slice(0, 80), size: e.size } },
      );
    if (e.size > p.maxBytes)
      throw new VeraError(
        HubErrorCode.HUB_BAD_RESPONSE,
        `${e.path} in ${p.repo} is ${e.size} bytes, more than the ${p.maxBytes} allowed`,
        { path: e.path, expected: `<= ${p.maxBytes}`, received: e.size },
      );
    if (e.path === PEFT_CONFIG)
      checkInputSize({ size: e.size, limit: INPUT_LIMITS.jsonBytes, path: `${p.repo}/${e.path}`, what: "Hub file" });
    found.set(e.path, { path: checkRepoPath(e.path), size: e.size, etag });
  }
  const vera = found.get(p.filename);
  if (vera) return { commit, format: "vera", files: [vera] };
  const cfg = found.get(PEFT_CONFIG);
  const weights = found.get(PEFT_WEIGHTS);
  if (cfg && weights) return { commit, format: "peft", files: [cfg, weights] };
  if (cfg)
    throw new VeraError(
      HubErrorCode.HUB_FILE_NOT_FOUND,
      `${p.repo}@${p.revision} has ${PEFT_CONFIG} but no ${PEFT_WEIGHTS} (PEFT's pickle-based adapter_model.bin is not read)`,
      { path: PEFT_WEIGHTS },
    );
  throw new VeraError(
    HubErrorCode.HUB_FILE_NOT_FOUND,
    `${p.repo}@${p.revision} holds no adapter: neither ${p.filename} nor a PEFT ${PEFT_CONFIG}`,
    {
      path: p.filename,
      expected: [p.filename, PEFT_CONFIG],
    },
  );
}

/** The commit of a revision and one file's description, or undefined when the file is absent. */
export async function resolveRepoFile(p: {
  repo: string;
  revision: string;
  path: string;
  hubUrl: string;
  accessToken?: string;
  hubFetch: HubFetch;
  maxBytes: number;
}): Promise<{ commit: string; ref: AdapterFileRef } | undefined> {
  const cred = p.accessToken ? { accessToken: p.accessToken } : {};
  const { pathsInfo } = await loadHubLib();
  const commit = await revisionCommit(p);
  const [e] = await pathsInfo({
    repo: p.repo,
    paths: [p.path],
    revision: commit,
    hubUrl: p.hubUrl,
    fetch: p.hubFetch.fetch,
    ...cred,
  });
  if (!e || e.path !== p.path || e.type !== "file") return undefined;
  const etag = e.lfs?.oid ?? e.oid;
  if (
    typeof etag !== "string" ||
    !/^([0-9a-f]{40}|[0-9a-f]{64})$/.test(etag) ||
    !Number.isSafeInteger(e.size) ||
    e.size < 0 ||
    e.size > p.maxBytes
  )
    throw new VeraError(
      HubErrorCode.HUB_BAD_RESPONSE,
      `the Hub described ${p.path} in ${p.repo} with an unusable oid or size`,
      { path: p.path },
    );
  return { commit, ref: { path: p.path, size: e.size, etag } };
}

/** The decoded adapter and the verakit bytes that represent it. */
export interface DecodedAdapter {
  adapter: VeraAdapter;
  /** The verakit file: the downloaded bytes for a verakit repo, the converted file for a PEFT repo. */
  bytes: Uint8Array;
}

/** Decode downloaded files with the one adapter loader: validate (verakit) or import (PEFT). Throws VeraError with every issue found. */
export async function decodeAdapterFiles(
  format: "vera" | "peft",
  files: Map<string, Uint8Array>,
  filename: string,
  repo: string,
  baseConfig?: BaseConfigProvider,
): Promise<DecodedAdapter> {
  if (format === "vera") {
    const bytes = files.get(filename)!;
    const { decodeAdapter } = await import("../../peft/load/load-adapter.js");
    try {
      const loaded = decodeAdapter({ files: { format: "vera", path: `${repo}/${filename}`, bytes } });
      return { adapter: loaded.adapter, bytes };
    } catch (e) {
      const issues = isVeraError(e) ? e.issues : [];
      if (issues.length === 0) throw e;
      throw VeraError.fromIssues(
        issues,
        `${repo}/${filename} is not a valid verakit file: ${issues[0]!.message}${issues.length > 1 ? ` (and ${issues.length - 1} more issue(s))` : ""}`,
      );
    }
  }
  return importPeftFiles({
    config: files.get(PEFT_CONFIG)!,
    weights: files.get(PEFT_WEIGHTS)!,
    repo,
    ...(baseConfig ? { baseConfig } : {}),
  });
}

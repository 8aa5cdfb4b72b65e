import { promises as fsp } from "node:fs";
import { INPUT_LIMITS } from "../../util/input-limits.js";
import { parseStrictJson } from "../../util/strict-json.js";
import { join } from "node:path";
import { isVeraError, VeraError } from "../../errors.js";
import { DEFAULT_FILE_NAME } from "../../format/types.js";
import { writeFileAtomic } from "../../node/files.js";
import { HubErrorCode } from "../errors.js";
import type { HubProgressEvent } from "../events.js";
import type { FetchAdapterParams, FetchedAdapter, FetchedFile } from "../pull/fetched-adapter.js";
import { resolveHubUrl } from "../hub-url.js";
import { decodeAdapterFiles, PEFT_CONFIG, PEFT_WEIGHTS } from "../pull/adapter-files.js";
import { drain, operationStream } from "../../util/event-stream.js";
import { fetchAdapterCore } from "../pull/fetch-core.js";
import { toHubError } from "../internal/to-hub-error.js";
import { checkRepoId, checkRepoPath, checkRevision } from "../repo-names.js";
import { hfSnapshot } from "../../util/hf-cache-layout.js";
import {
  cachedCommit,
  readCachedBlob,
  readSnapshotFile,
  repoFolder,
  writeSnapshot,
  type SnapshotFile,
} from "./internal/cache.js";
import { isHubOffline } from "./is-hub-offline.js";
import { resolveHubCacheDir } from "./resolve-hub-cache-dir.js";
import { resolveHubToken } from "./resolve-hub-token.js";

/** Parameters of {@link pullAdapter}: those of fetchAdapter plus the cache. */
export interface PullAdapterParams extends FetchAdapterParams {
  /** Access token. @default HF_TOKEN, else the token file (see resolveHubToken); none for public repos */
  accessToken?: string;
  /** Hub endpoint. @default HF_ENDPOINT, else "https://huggingface.co" */
  hubUrl?: string;
  /** Cache folder. @default HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub */
  cacheDir?: string;
  /** Use only the cache, no network. @default true when HF_HUB_OFFLINE is 1/ON/YES/TRUE, else false */
  offline?: boolean;
  /** Also write the verakit file (converted, for a PEFT repo) into this folder. @default none */
  outputDir?: string;
  /** Environment for the defaults above. @default process.env */
  env?: Readonly<Record<string, string | undefined>>;
}

/** Result of {@link pullAdapter}. */
export interface PullResult extends FetchedAdapter {
  cacheDir: string;
  /** The snapshot folder `<cacheDir>/models--ns--name/snapshots/<commit>`. */
  snapshotPath: string;
  /** Snapshot path of the verakit file (or of adapter_config.json for a PEFT repo). */
  cachePath: string;
  /** True when nothing was downloaded (offline, or every blob was already cached). */
  fromCache: boolean;
  /** Where `outputDir` got the verakit file. */
  outputPath?: string;
}

const TRANSIENT = new Set<string>([
  HubErrorCode.HUB_NETWORK,
  HubErrorCode.HUB_SERVER_ERROR,
  HubErrorCode.HUB_RATE_LIMITED,
]);

async function readOffline(
  cacheDir: string,
  repo: string,
  revision: string,
  filename: string,
  maxBytes: number,
): Promise<{ commit: string; format: "vera" | "peft"; files: SnapshotFile[] } | undefined> {
  const commit = await cachedCommit(cacheDir, repo, revision);
  if (!commit) return undefined;
  const vera = await readSnapshotFile(cacheDir, repo, commit, filename, maxBytes);
  if (vera) return { commit, format: "vera", files: [vera] };
  const cfg = await readSnapshotFile(cacheDir, repo, commit, PEFT_CONFIG, Math.min(maxBytes, INPUT_LIMITS.jsonBytes));
  const weights = cfg ? await readSnapshotFile(cacheDir, repo, commit, PEFT_WEIGHTS, maxBytes) : undefined;
  if (cfg && weights) return { commit, format: "peft", files: [cfg, weights] };
  return undefined;
}

async function pullCore(params: PullAdapterParams, emit: (e: HubProgressEvent) => void): Promise<PullResult> {
  const env = params.env ?? process.env;
  const repo = checkRepoId(params.repo);
  const revision = checkRevision(params.revision ?? "main");
  const filename = checkRepoPath(params.filename ?? DEFAULT_FILE_NAME, "filename");
  const cacheDir = resolveHubCacheDir({ ...(params.cacheDir ? { cacheDir: params.cacheDir } : {}), env });
  const offline = params.offline ?? isHubOffline({ env });
  const maxBytes = params.maxBytes ?? 2 ** 31 - 1;
  const hubUrl = resolveHubUrl({ ...(params.hubUrl ? { hubUrl: params.hubUrl } : {}), env });
  const token = params.accessToken ?? (await resolveHubToken({ env }))?.token;
  const snapshotOf = (commit: string): string => join(cacheDir, ...hfSnapshot(repo, commit));

  const fromSnapshot = async (why: "offline" | "fallback"): Promise<PullResult | undefined> => {
    if (why === "offline") emit({ type: "phase", phase: "resolving" });
    const found = await readOffline(cacheDir, repo, revision, filename, maxBytes);
    if (!found) return undefined;
    for (const f of found.files) emit({ type: "cached", path: f.path });
    emit({ type: "phase", phase: "decoding" });
    const decoded = await decodeAdapterFiles(
      found.format,
      new Map(found.files.map((f) => [f.path, f.bytes])),
      filename,
      repo,
      async (baseRepo, baseRevision) => {
        const commit = await cachedCommit(cacheDir, baseRepo, baseRevision);
        const f = commit
          ? await readSnapshotFile(cacheDir, baseRepo, commit, "config.json", INPUT_LIMITS.jsonBytes)
          : undefined;
        if (!f)
          throw new VeraError(HubErrorCode.HUB_OFFLINE_MISS, `${baseRepo}/config.json is not in the cache (offline)`, {
            path: baseRepo,
          });
        return parseStrictJson(new TextDecoder().decode(f.bytes)) as unknown;
      },
    );
    const files: FetchedFile[] = found.files.map((f) => ({
      path: f.path,
      size: f.bytes.length,
      etag: f.etag ?? "",
      bytes: f.bytes,
    }));
    if (why === "fallback")
      emit({
        type: "notice",
        message: `the Hub could not be reached; using the cached copy of ${repo}@${revision} (commit ${found.commit.slice(0, 12)})`,
      });
    return {
      repo,
      revision,
      commit: found.commit,
      format: found.format,
      adapter: decoded.adapter,
      bytes: decoded.bytes,
      files,
      cacheDir,
      snapshotPath: snapshotOf(found.commit),
      cachePath: found.files[0]!.pointer,
      fromCache: true,
    };
  };

  let result: PullResult;
  if (offline) {
    const r = await fromSnapshot("offline");
    if (!r)
      throw new VeraError(
        HubErrorCode.HUB_OFFLINE_MISS,
        `offline (HF_HUB_OFFLINE or --offline) and ${repo}@${revision} is not in the cache at ${cacheDir}: pull it once online`,
        {
          path: repoFolder(cacheDir, repo),
        },
      );
    result = r;
  } else {
    let fetched: FetchedAdapter;
    let downloaded = 0;
    try {
      fetched = await fetchAdapterCore(
        { ...params, repo, revision, filename, hubUrl, ...(token ? { accessToken: token } : {}) },
        (e) => {
          if (e.type === "download" && e.bytes === 0) downloaded++;
          emit(e);
        },
        (fromRepo, ref) => readCachedBlob(cacheDir, fromRepo, ref.etag, ref.size),
      );
    } catch (e) {
      // Like huggingface_hub: when the Hub is unreachable, a cached copy of the revision still serves.
      if (isVeraError(e) && TRANSIENT.has(e.code)) {
        const r = await fromSnapshot("fallback").catch(() => undefined);
        if (r) return finish(r);
      }
      throw e;
    }
    emit({ type: "phase", phase: "caching" });
    const pointers = await writeSnapshot(
      cacheDir,
      repo,
      revision,
      fetched.commit,
      fetched.files.map((f) => ({ path: f.path, etag: f.etag, bytes: f.bytes })),
    );
    if (fetched.baseConfig) {
      const b = fetched.baseConfig;
      await writeSnapshot(cacheDir, b.repo, b.revision, b.commit, [
        { path: b.file.path, etag: b.file.etag, bytes: b.file.bytes },
      ]);
    }
    result = {
      ...fetched,
      cacheDir,
      snapshotPath: snapshotOf(fetched.commit),
      cachePath: pointers[0]!,
      fromCache: downloaded === 0,
    };
  }
  return finish(result);

  async function finish(r: PullResult): Promise<PullResult> {
    if (params.outputDir === undefined) return r;
    try {
      await fsp.mkdir(params.outputDir, { recursive: true });
    } catch (e) {
      throw new VeraError("IO_ERROR", `cannot create ${params.outputDir}: ${(e as Error).message}`, {
        path: params.outputDir,
      });
    }
    const outputPath = join(params.outputDir, DEFAULT_FILE_NAME);
    await writeFileAtomic(outputPath, r.bytes);
    return { ...r, outputPath };
  }
}

/**
 * Pull an adapter into the Hub cache shared with Python's huggingface_hub (same layout: blobs,
 * snapshots with relative links, refs) and return it decoded. Every file is checked against its size
 * and digest and the adapter is validated before anything is written; blobs are renamed into place only
 * when complete. A PEFT VeRA repo is imported. Offline (HF_HUB_OFFLINE or `offline: true`) it reads the
 * cache only; when the Hub cannot be reached, a cached copy of the revision is used. Node only.
 */
export function pullAdapterIter(params: PullAdapterParams): AsyncGenerator<HubProgressEvent, PullResult> {
  return operationStream(params, async (p, emit) => {
    try {
      return await pullCore(p, emit);
    } catch (e) {
      throw toHubError(e, {
        action: `pulling ${params.repo}`,
        repo: params.repo,
        ...(params.revision ? { revision: params.revision } : {}),
        secrets: [params.accessToken, params.env?.["HF_TOKEN"]],
      });
    }
  });
}

/** Promise form of {@link pullAdapterIter}; progress goes to `params.onProgress`. */
export function pullAdapter(params: PullAdapterParams): Promise<PullResult> {
  return drain(pullAdapterIter(params), params.onProgress);
}

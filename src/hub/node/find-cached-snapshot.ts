import { promises as fsp } from "node:fs";
import { join } from "node:path";
import { VeraError } from "../../errors.js";
import { HubErrorCode } from "../errors.js";
import { checkRepoId, checkRevision } from "../repo-names.js";
import { hfRef, hfSnapshot } from "../../util/hf-cache-layout.js";
import { cachedCommit } from "./internal/cache.js";
import { resolveHubCacheDir } from "./resolve-hub-cache-dir.js";

/** Parameters of {@link findCachedSnapshot}. */
export interface FindCachedSnapshotParams {
  /** Model repository id `namespace/name`. */
  repo: string;
  /** Branch, tag or commit id. @default "main" */
  revision?: string;
  /** Cache folder. @default HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub */
  cacheDir?: string;
  /** Environment to read the cache folder from. @default process.env */
  env?: Readonly<Record<string, string | undefined>>;
}

/** A model revision found in the Hub cache. */
export interface CachedSnapshot {
  repo: string;
  revision: string;
  /** The commit the revision points to. */
  commit: string;
  /** The cache folder that was searched. */
  cacheDir: string;
  /** `<cacheDir>/models--ns--name/snapshots/<commit>`: its files are links into the repo's `blobs/`. */
  snapshotPath: string;
}

/**
 * Find a model revision in the Hub cache shared with Python's huggingface_hub (refs/<revision> ->
 * snapshots/<commit>), reading only the local disk: never the network.
 *
 * @throws VeraError `HUB_OFFLINE_MISS` when the revision is not cached (the message says to download
 *   it first and where the cache was searched), `ARG_INVALID` for a malformed repo id or revision.
 */
export async function findCachedSnapshot(params: FindCachedSnapshotParams): Promise<CachedSnapshot> {
  const repo = checkRepoId(params.repo);
  const revision = checkRevision(params.revision ?? "main");
  const cacheDir = resolveHubCacheDir({
    ...(params.cacheDir !== undefined ? { cacheDir: params.cacheDir } : {}),
    ...(params.env !== undefined ? { env: params.env } : {}),
  });
  const commit = await cachedCommit(cacheDir, repo, revision);
  const snapshotPath = commit === undefined ? undefined : join(cacheDir, ...hfSnapshot(repo, commit));
  const st = snapshotPath === undefined ? undefined : await fsp.stat(snapshotPath).catch(() => undefined);
  if (commit === undefined || snapshotPath === undefined || !st?.isDirectory()) {
    const rev = params.revision === undefined ? "" : ` --revision ${revision}`;
    throw new VeraError(
      HubErrorCode.HUB_OFFLINE_MISS,
      `${repo}@${revision} is not in the Hub cache at ${cacheDir}; download it first ` +
        `(e.g. \`huggingface-cli download ${repo}${rev}\`), or set HF_HUB_CACHE / HF_HOME to the cache that holds it`,
      {
        path: snapshotPath ?? join(cacheDir, ...hfRef(repo, revision)),
        expected: `${repo}@${revision} in the Hub cache`,
        received: "not cached",
      },
    );
  }
  return { repo, revision, commit, cacheDir, snapshotPath };
}

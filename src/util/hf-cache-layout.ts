/**
 * Internal: the one description of the Hugging Face Hub cache layout, shared with Python's huggingface_hub:
 *
 *   <cacheDir>/models--<ns>--<name>/blobs/<etag>                  file content (etag = SHA-256 or git SHA-1)
 *   <cacheDir>/models--<ns>--<name>/snapshots/<commit>/<path>     relative link to ../../blobs/<etag>
 *   <cacheDir>/models--<ns>--<name>/refs/<revision>               the commit id (no newline)
 *
 * Pure: each function returns path segments under the cache folder, which the caller joins with its
 * platform's path module (`join(cacheDir, ...segments)`). Repo ids, revisions and file paths are checked by
 * the callers (src/hub/repo-names.ts) before they reach here.
 */

/** The folders inside a repository's cache folder. */
export const HF_CACHE_FOLDERS = { blobs: "blobs", snapshots: "snapshots", refs: "refs" } as const;

/** The folder of a model repository in the cache: `models--<ns>--<name>`. */
export function hfRepoFolder(repo: string): string {
  return `models--${repo.split("/").join("--")}`;
}

/** `models--<ns>--<name>/blobs`. */
export function hfBlobsFolder(repo: string): string[] {
  return [hfRepoFolder(repo), HF_CACHE_FOLDERS.blobs];
}

/** `models--<ns>--<name>/blobs/<etag>`. */
export function hfBlob(repo: string, etag: string): string[] {
  return [...hfBlobsFolder(repo), etag];
}

/** `models--<ns>--<name>/snapshots/<commit>`. */
export function hfSnapshot(repo: string, commit: string): string[] {
  return [hfRepoFolder(repo), HF_CACHE_FOLDERS.snapshots, commit];
}

/** `models--<ns>--<name>/refs`. */
export function hfRefsFolder(repo: string): string[] {
  return [hfRepoFolder(repo), HF_CACHE_FOLDERS.refs];
}

/** `models--<ns>--<name>/refs/<revision>` (a revision `a/b` is the file `refs/a/b`). */
export function hfRef(repo: string, revision: string): string[] {
  return [...hfRefsFolder(repo), ...revision.split("/")];
}

/**
 * The repo's `blobs/` folder for a snapshot folder, given as its path's segments ending in
 * `models--<ns>--<name>/snapshots/<commit>`: the same segments with the last two replaced by `blobs`.
 * Undefined for any other folder.
 */
export function hfBlobsOfSnapshot(segments: readonly string[]): string[] | undefined {
  const n = segments.length;
  if (n < 3 || segments[n - 2] !== HF_CACHE_FOLDERS.snapshots || !segments[n - 3]!.startsWith("models--"))
    return undefined;
  return [...segments.slice(0, n - 2), HF_CACHE_FOLDERS.blobs];
}

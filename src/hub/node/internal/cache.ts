/**
 * Internal: reading and writing the Hub cache shared with Python's huggingface_hub (its layout is
 * src/util/hf-cache-layout.ts).
 *
 * Blobs are written to `<etag>.<random>.incomplete` in the blobs folder and renamed into place only
 * once complete and verified, so the cache never holds a partial blob under its final name; links
 * and refs are replaced atomically by rename as well.
 */
import { promises as fsp } from "node:fs";
import { dirname, join, relative, sep } from "node:path";
import { VeraError } from "../../../errors.js";
import { readFileBytes, writeAtomic, writeFileAtomic } from "../../../node/files.js";
import { errnoOf, ioError } from "../../../node/io-error.js";
import { isInside } from "../../../node/path-inside.js";
import { HubErrorCode } from "../../errors.js";
import { matchesEtag } from "../../internal/util.js";
import {
  HF_CACHE_FOLDERS,
  hfBlob,
  hfBlobsFolder,
  hfRef,
  hfRefsFolder,
  hfRepoFolder,
  hfSnapshot,
} from "../../../util/hf-cache-layout.js";

/** Folder of one model repo in the cache. */
export function repoFolder(cacheDir: string, repo: string): string {
  return join(cacheDir, hfRepoFolder(repo));
}

/** Read a cached blob by etag if present with the right size and digest; undefined otherwise. */
export async function readCachedBlob(
  cacheDir: string,
  repo: string,
  etag: string,
  size: number,
): Promise<Uint8Array | undefined> {
  const path = join(cacheDir, ...hfBlob(repo, etag));
  try {
    const st = await fsp.lstat(path);
    if (!st.isFile() || st.size !== size) return undefined;
    const b = await fsp.readFile(path);
    const bytes = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
    return (await matchesEtag(bytes, etag)) === true ? bytes : undefined;
  } catch {
    return undefined;
  }
}

/** A verified file to store. */
export interface CacheEntry {
  path: string;
  etag: string;
  bytes: Uint8Array;
}

/** Store verified files of one commit, then point `refs/<revision>` at it. Returns the snapshot paths. */
export async function writeSnapshot(
  cacheDir: string,
  repo: string,
  revision: string,
  commit: string,
  entries: CacheEntry[],
): Promise<string[]> {
  const root = repoFolder(cacheDir, repo);
  const blobs = join(cacheDir, ...hfBlobsFolder(repo));
  const snap = join(cacheDir, ...hfSnapshot(repo, commit));
  const out: string[] = [];
  try {
    await fsp.mkdir(blobs, { recursive: true });
    for (const e of entries) {
      const blob = join(blobs, e.etag);
      const have = await fsp.lstat(blob).catch(() => undefined);
      const intact =
        have?.isFile() &&
        have.size === e.bytes.length &&
        (await readCachedBlob(cacheDir, repo, e.etag, e.bytes.length)) !== undefined;
      if (!intact) await writeFileAtomic(blob, e.bytes);
      const pointer = join(snap, ...e.path.split("/"));
      if (!isInside(snap, pointer))
        throw new VeraError("IO_UNSAFE_PATH", `refusing to write outside the snapshot folder: ${e.path}`, {
          path: e.path,
        });
      await fsp.mkdir(dirname(pointer), { recursive: true });
      await linkAtomically(blob, pointer);
      out.push(pointer);
    }
    if (revision !== commit) {
      const ref = join(cacheDir, ...hfRef(repo, revision));
      if (!isInside(join(cacheDir, ...hfRefsFolder(repo)), ref))
        throw new VeraError("IO_UNSAFE_PATH", `refusing to write a ref outside the refs folder: ${revision}`, {
          path: revision,
        });
      await fsp.mkdir(dirname(ref), { recursive: true });
      await writeFileAtomic(ref, commit);
    }
  } catch (e) {
    if (e instanceof VeraError) throw e;
    throw ioError({ cause: e, path: root, action: "cannot write the Hub cache at" });
  }
  return out;
}

/** Make `pointer` a relative symlink to `blob` (replacing what is there); copy when links are not allowed. */
async function linkAtomically(blob: string, pointer: string): Promise<void> {
  const target = relative(dirname(pointer), blob);
  const current = await fsp.readlink(pointer).catch(() => undefined);
  if (current === target) return;
  await writeAtomic({
    path: pointer,
    durable: false,
    fill: (tmp) =>
      fsp.symlink(target, tmp).catch((e: unknown) => {
        if (!["EPERM", "EACCES", "ENOTSUP"].includes(errnoOf(e) ?? "")) throw e;
        return fsp.copyFile(blob, tmp); // like huggingface_hub where symlinks are unavailable
      }),
  });
}

/** The commit a revision points to in the cache, or undefined. */
export async function cachedCommit(cacheDir: string, repo: string, revision: string): Promise<string | undefined> {
  if (/^[0-9a-f]{40}$/.test(revision)) return revision;
  const ref = join(cacheDir, ...hfRef(repo, revision));
  if (!isInside(join(cacheDir, ...hfRefsFolder(repo)), ref)) return undefined;
  try {
    // a ref is 40 hex digits: anything larger (or not a regular file) is not one
    const text = new TextDecoder().decode(await readFileBytes(ref, { maxBytes: 4096 })).trim();
    return /^[0-9a-f]{40}$/.test(text) ? text : undefined;
  } catch {
    return undefined;
  }
}

/** A file read back from a snapshot. */
export interface SnapshotFile {
  path: string;
  pointer: string;
  etag: string | undefined;
  bytes: Uint8Array;
}

/**
 * Read a file of a cached snapshot, or undefined when absent. The link must resolve inside the repo's
 * cache folder; when it names a blob whose name is a digest, the content must match it (HUB_CACHE otherwise).
 */
export async function readSnapshotFile(
  cacheDir: string,
  repo: string,
  commit: string,
  path: string,
  maxBytes: number,
): Promise<SnapshotFile | undefined> {
  const root = repoFolder(cacheDir, repo);
  const snap = join(cacheDir, ...hfSnapshot(repo, commit));
  const pointer = join(snap, ...path.split("/"));
  if (!isInside(snap, pointer)) return undefined;
  let real: string;
  try {
    real = await fsp.realpath(pointer);
  } catch {
    return undefined;
  }
  const realRoot = await fsp.realpath(root).catch(() => root);
  if (!isInside(realRoot, real))
    throw new VeraError(
      HubErrorCode.HUB_CACHE,
      `the cached ${path} of ${repo} links outside the cache folder; delete ${snap} and pull again`,
      { path: pointer },
    );
  const st = await fsp.stat(real);
  if (!st.isFile()) return undefined;
  if (st.size > maxBytes)
    throw new VeraError(
      HubErrorCode.HUB_CACHE,
      `the cached ${path} of ${repo} is ${st.size} bytes, more than the ${maxBytes} allowed`,
      { path: pointer },
    );
  const b = await fsp.readFile(real);
  const bytes = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  const inBlobs = isInside(join(realRoot, HF_CACHE_FOLDERS.blobs), real);
  const etag = inBlobs ? real.slice(real.lastIndexOf(sep) + 1) : undefined;
  if (etag !== undefined && (await matchesEtag(bytes, etag)) === false)
    throw new VeraError(
      HubErrorCode.HUB_CACHE,
      `the cached ${path} of ${repo} does not match its digest ${etag}: the cache is damaged; delete ${join(cacheDir, ...hfBlob(repo, etag))} and pull again`,
      { path: pointer, expected: etag },
    );
  return { path, pointer, etag, bytes };
}

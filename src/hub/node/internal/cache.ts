/**
 * Internal: the Hub cache layout shared with Python's huggingface_hub.
 *
 *   <cacheDir>/models--<ns>--<name>/blobs/<etag>                       file content (etag = SHA-256 or git SHA-1)
 *   <cacheDir>/models--<ns>--<name>/snapshots/<commit>/<path>          relative symlink to ../../blobs/<etag>
 *   <cacheDir>/models--<ns>--<name>/refs/<revision>                    the commit id (no newline)
 *
 * Blobs are written to `<etag>.<random>.incomplete` in the blobs folder and renamed into place only
 * once complete and verified, so the cache never holds a partial blob under its final name; links
 * and refs are replaced atomically by rename as well.
 */
import { randomBytes } from "node:crypto";
import { promises as fsp } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { VeraError } from "../../../errors.js";
import { HubErrorCode } from "../../errors.js";
import { matchesEtag } from "../../internal/util.js";
import { readFileBytes } from "../../../node/files.js";

/** Folder of one model repo in the cache. */
export function repoFolder(cacheDir: string, repo: string): string {
  const [ns, name] = repo.split("/");
  return join(cacheDir, `models--${ns}--${name}`);
}

const rnd = (): string => randomBytes(6).toString("hex");

function isErrno(e: unknown, code: string): boolean {
  return (e as NodeJS.ErrnoException)?.code === code;
}

function ioError(e: unknown, path: string, what: string): VeraError {
  return new VeraError("IO_ERROR", `${what} ${path}: ${(e as Error)?.message ?? String(e)}`, { path });
}

/** Read a cached blob by etag if present with the right size and digest; undefined otherwise. */
export async function readCachedBlob(
  cacheDir: string,
  repo: string,
  etag: string,
  size: number,
): Promise<Uint8Array | undefined> {
  const path = join(repoFolder(cacheDir, repo), "blobs", etag);
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
  const blobs = join(root, "blobs");
  const snap = join(root, "snapshots", commit);
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
      if (!intact) {
        const tmp = `${blob}.${rnd()}.incomplete`;
        try {
          const fh = await fsp.open(tmp, "wx");
          try {
            await fh.writeFile(e.bytes);
            await fh.sync();
          } finally {
            await fh.close();
          }
          await fsp.rename(tmp, blob);
        } catch (err) {
          await fsp.rm(tmp, { force: true }).catch(() => {});
          throw err;
        }
      }
      const pointer = join(snap, ...e.path.split("/"));
      if (!inside(snap, pointer))
        throw new VeraError("IO_UNSAFE_PATH", `refusing to write outside the snapshot folder: ${e.path}`, {
          path: e.path,
        });
      await fsp.mkdir(dirname(pointer), { recursive: true });
      await linkAtomically(blob, pointer);
      out.push(pointer);
    }
    if (revision !== commit) {
      const ref = join(root, "refs", ...revision.split("/"));
      if (!inside(join(root, "refs"), ref))
        throw new VeraError("IO_UNSAFE_PATH", `refusing to write a ref outside the refs folder: ${revision}`, {
          path: revision,
        });
      await fsp.mkdir(dirname(ref), { recursive: true });
      const tmp = `${ref}.${rnd()}.tmp`;
      await fsp.writeFile(tmp, commit, { flag: "wx" });
      await fsp.rename(tmp, ref);
    }
  } catch (e) {
    if (e instanceof VeraError) throw e;
    throw ioError(e, root, "cannot write the Hub cache at");
  }
  return out;
}

/** Make `pointer` a relative symlink to `blob` (replacing what is there); copy when links are not allowed. */
async function linkAtomically(blob: string, pointer: string): Promise<void> {
  const target = relative(dirname(pointer), blob);
  const current = await fsp.readlink(pointer).catch(() => undefined);
  if (current === target) return;
  const tmp = `${pointer}.${rnd()}.tmp`;
  try {
    await fsp.symlink(target, tmp);
  } catch (e) {
    if (!isErrno(e, "EPERM") && !isErrno(e, "EACCES") && !isErrno(e, "ENOTSUP")) throw e;
    await fsp.copyFile(blob, tmp); // like huggingface_hub where symlinks are unavailable
  }
  try {
    await fsp.rename(tmp, pointer);
  } catch (e) {
    await fsp.rm(tmp, { force: true }).catch(() => {});
    throw e;
  }
}

function inside(folder: string, path: string): boolean {
  const r = relative(resolve(folder), resolve(path));
  return r !== "" && !r.startsWith("..") && !r.startsWith(sep) && !/^[A-Za-z]:/.test(r);
}

/** The commit a revision points to in the cache, or undefined. */
export async function cachedCommit(cacheDir: string, repo: string, revision: string): Promise<string | undefined> {
  if (/^[0-9a-f]{40}$/.test(revision)) return revision;
  const root = repoFolder(cacheDir, repo);
  const ref = join(root, "refs", ...revision.split("/"));
  if (!inside(join(root, "refs"), ref)) return undefined;
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
  const snap = join(root, "snapshots", commit);
  const pointer = join(snap, ...path.split("/"));
  if (!inside(snap, pointer)) return undefined;
  let real: string;
  try {
    real = await fsp.realpath(pointer);
  } catch {
    return undefined;
  }
  const realRoot = await fsp.realpath(root).catch(() => root);
  if (!inside(realRoot, real))
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
  const inBlobs = inside(join(realRoot, "blobs"), real);
  const etag = inBlobs ? real.slice(real.lastIndexOf(sep) + 1) : undefined;
  if (etag !== undefined && (await matchesEtag(bytes, etag)) === false)
    throw new VeraError(
      HubErrorCode.HUB_CACHE,
      `the cached ${path} of ${repo} does not match its digest ${etag}: the cache is damaged; delete ${join(root, "blobs", etag)} and pull again`,
      { path: pointer, expected: etag },
    );
  return { path, pointer, etag, bytes };
}

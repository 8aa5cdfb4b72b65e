/**
 * Internal (Node): the lock every merge takes on its model, by lock files beside the model's head
 * file (its first file: the `.onnx`, the `.gguf` or a split GGUF's first part, the checkpoint's
 * index or single `.safetensors`):
 *
 * - `.NAME.vera-lock`, exclusive: an in-place merge, or a recovery. Created atomically with its
 *   content (written to a temporary file, then hard-linked to the lock's name, which fails when it
 *   exists; O_EXCL where links are not available), holding the owner's pid, host, boot id, start time
 *   and a random nonce.
 * - `.NAME.vera-read-PID-NONCE`, shared: one per merge into new files reading the model. A reader
 *   creates its file, then looks for a live exclusive lock; an exclusive owner creates its lock, then
 *   looks for live readers: whichever comes second sees the other, so the two never both go on.
 *
 * A lock whose owner no longer runs (checked with `process.kill(pid, 0)` on the same host, and on
 * Linux the boot id and the process's start time, so a reused pid does not count) is stale and is
 * taken over: the taker first creates `.NAME.vera-lock-NONCE` (exclusively, named after the stale
 * lock's nonce), checks the lock still holds that nonce, and only then removes it; so only one
 * process can remove one stale lock, and it can never remove a lock taken after it looked. A lock
 * written on another host cannot be judged and counts as live.
 */
import { randomBytes } from "node:crypto";
import { promises as fsp } from "node:fs";
import { basename, dirname, join } from "node:path";
import { VeraError } from "../errors.js";
import { errnoOf, ioError } from "../node/io-error.js";
import { currentProcess, processAlive, type ProcessIdentity } from "../node/process-alive.js";
import { tempPathFor, trackTemp, untrackTemp } from "../node/temp-files.js";
import { MergeErrorCode } from "./error-codes.js";

/** `exclusive`: an in-place merge or a recovery; `shared`: a merge into new files reading the model. */
export type ModelLockMode = "exclusive" | "shared";

/** What a lock file holds. */
export interface ModelLockOwner extends ProcessIdentity {
  nonce: string;
  mode: ModelLockMode;
  /** When the lock was taken (ISO 8601). */
  since: string;
}

/** A lock held by this process. */
export interface ModelLock {
  /** The lock file; null for a shared lock on a model in a folder this process cannot write to (only checked). */
  readonly path: string | null;
  readonly mode: ModelLockMode;
  /** Remove the lock file (once). */
  release(): Promise<void>;
}

const MAX_TRIES = 8;
const MAX_DEPTH = 4;
const READ_ONLY = new Set(["EACCES", "EPERM", "EROFS"]);
const NO_LINKS = new Set(["EPERM", "ENOTSUP", "EOPNOTSUPP", "ENOSYS", "EMLINK", "EXDEV"]);

/** The exclusive lock's path for a model whose head file is `head`. */
export function modelLockPath(head: string): string {
  return join(dirname(head), `.${basename(head)}.vera-lock`);
}

function readerPrefix(head: string): string {
  return `.${basename(head)}.vera-read-`;
}

/** Create `path` holding `owner`, atomically; false when it exists. */
async function createLockFile(path: string, owner: ModelLockOwner): Promise<boolean> {
  const text = JSON.stringify(owner);
  const tmp = tempPathFor(path);
  try {
    await fsp.writeFile(tmp, text, { flag: "wx" });
    try {
      await fsp.link(tmp, path);
      return true;
    } catch (e) {
      if (errnoOf(e) === "EEXIST") return false;
      if (!NO_LINKS.has(errnoOf(e) ?? "")) throw e;
    }
    // no hard links on this file system: O_EXCL, then the content (briefly empty: read as busy)
    let fh: fsp.FileHandle;
    try {
      fh = await fsp.open(path, "wx");
    } catch (e) {
      if (errnoOf(e) === "EEXIST") return false;
      throw e;
    }
    try {
      await fh.writeFile(text);
    } finally {
      await fh.close();
    }
    return true;
  } finally {
    await fsp.rm(tmp, { force: true }).catch(() => {});
  }
}

/** The owner a lock file names: undefined when there is no such file, null when it names none. */
async function readOwner(path: string): Promise<ModelLockOwner | null | undefined> {
  let text: string;
  try {
    text = await fsp.readFile(path, "utf8");
  } catch (e) {
    if (errnoOf(e) === "ENOENT") return undefined;
    throw e;
  }
  try {
    const o = JSON.parse(text) as ModelLockOwner;
    const optional = (v: unknown): boolean => v === null || typeof v === "string";
    if (
      Number.isSafeInteger(o.pid) &&
      typeof o.host === "string" &&
      optional(o.boot) &&
      optional(o.start) &&
      typeof o.nonce === "string" &&
      /^[0-9a-f]{16}$/.test(o.nonce) &&
      (o.mode === "exclusive" || o.mode === "shared")
    )
      return o;
  } catch {
    /* not JSON */
  }
  return null;
}

function busy(head: string, lock: string, owner: ModelLockOwner | null): VeraError {
  const who = owner ? `process ${owner.pid} on ${owner.host} (since ${owner.since})` : "another process";
  const doing =
    owner?.mode === "shared" ? "reading it for a merge into new files" : "merging it in place, or recovering it";
  const other = owner && owner.host !== currentProcess().host;
  return new VeraError(
    MergeErrorCode.MERGE_BUSY,
    `${head} is in use: ${who} is ${doing} (lock ${lock}); nothing was done: try again once it has finished` +
      (owner === null || other ? `; if no merge of it runs${other ? ` on ${owner.host}` : ""}, remove ${lock}` : ""),
    {
      path: head,
      expected: "no other merge or recovery of this model running",
      received: owner ? { pid: owner.pid, host: owner.host, lock } : { lock },
    },
  );
}

/** The owner of a lock file if it still runs (or cannot be judged); undefined when there is none or it is stale. */
async function liveOwner(path: string): Promise<ModelLockOwner | null | undefined> {
  const owner = await readOwner(path);
  if (owner === undefined) return undefined;
  if (owner !== null && processAlive(owner) === false) return undefined;
  return owner;
}

/**
 * Remove the lock file `path` whose owner `stale` no longer runs; only one process can do so, and
 * only while the file still holds `stale`'s nonce. Does nothing when it no longer does.
 */
async function takeOver(head: string, path: string, stale: ModelLockOwner, me: ModelLockOwner, depth: number) {
  const marker = `${path}-${stale.nonce}`;
  if (depth >= MAX_DEPTH) throw busy(head, marker, null);
  if (!(await createLockFile(marker, me))) {
    const other = await readOwner(marker);
    if (other === undefined) return;
    if (other === null || processAlive(other) !== false) throw busy(head, path, other);
    await takeOver(head, marker, other, me, depth + 1); // its taker died on the way: take that over first
    return;
  }
  try {
    if ((await readOwner(path))?.nonce === stale.nonce) await fsp.rm(path, { force: true });
  } finally {
    await fsp.rm(marker, { force: true });
  }
}

/** Refuse while a reader that still runs holds the model; remove readers that died. */
async function refuseReaders(head: string): Promise<void> {
  const dir = dirname(head);
  const prefix = readerPrefix(head);
  for (const name of await fsp.readdir(dir)) {
    if (!name.startsWith(prefix) || !/^\d+-[0-9a-f]{16}$/.test(name.slice(prefix.length))) continue;
    const path = join(dir, name);
    const owner = await readOwner(path);
    if (owner === undefined) continue;
    if (owner !== null && processAlive(owner) === false) await fsp.rm(path, { force: true });
    else throw busy(head, path, owner);
  }
}

/** Remove takeover markers whose taker died (left by a process killed during a takeover). */
async function sweepMarkers(head: string): Promise<void> {
  const dir = dirname(head);
  const prefix = `${basename(modelLockPath(head))}-`;
  for (const name of await fsp.readdir(dir)) {
    if (!name.startsWith(prefix) || !/^[0-9a-f]{16}(-[0-9a-f]{16})*$/.test(name.slice(prefix.length))) continue;
    const owner = await readOwner(join(dir, name));
    if (owner && processAlive(owner) === false) await fsp.rm(join(dir, name), { force: true });
  }
}

async function lockExclusive(head: string, me: ModelLockOwner): Promise<string> {
  const path = modelLockPath(head);
  for (let i = 0; i < MAX_TRIES; i++) {
    if (await createLockFile(path, me)) {
      trackTemp(path);
      try {
        await refuseReaders(head);
        await sweepMarkers(head);
      } catch (e) {
        untrackTemp(path);
        await fsp.rm(path, { force: true });
        throw e;
      }
      return path;
    }
    const owner = await readOwner(path);
    if (owner === undefined) continue; // released meanwhile
    if (owner === null || processAlive(owner) !== false) throw busy(head, path, owner);
    await takeOver(head, path, owner, me, 0);
  }
  throw busy(head, path, (await readOwner(path).catch(() => null)) ?? null);
}

async function lockShared(head: string, me: ModelLockOwner): Promise<string | null> {
  const path = join(dirname(head), `${readerPrefix(head)}${me.pid}-${me.nonce}`);
  try {
    await createLockFile(path, me);
  } catch (e) {
    if (!READ_ONLY.has(errnoOf(e) ?? "")) throw e;
    // a folder this process cannot write to: a merge in place of it cannot be ours, only checked for
    await refuseBusy({ head });
    return null;
  }
  trackTemp(path);
  try {
    const lock = modelLockPath(head);
    const owner = await liveOwner(lock);
    if (owner !== undefined) throw busy(head, lock, owner);
  } catch (e) {
    untrackTemp(path);
    await fsp.rm(path, { force: true });
    throw e;
  }
  return path;
}

/** Parameters of {@link lockModel}. */
export interface LockModelParams {
  /** The model's head file, symlinks resolved. */
  head: string;
  mode: ModelLockMode;
}

/**
 * Lock a model for a merge: `exclusive` refuses while any other merge or recovery holds it,
 * `shared` while an in-place merge or a recovery does. A stale lock is taken over. A shared lock
 * on a model in a folder this process cannot write to (a read-only mount, another user's files) is
 * only checked: no reader file is left there, so an in-place merge by a user who can write there
 * does not see this reader.
 *
 * @throws VeraError `MERGE_BUSY` (naming the owner's pid and host, and the lock file), `IO_*`.
 */
export async function lockModel(params: LockModelParams): Promise<ModelLock> {
  const me: ModelLockOwner = {
    ...currentProcess(),
    nonce: randomBytes(8).toString("hex"),
    mode: params.mode,
    since: new Date().toISOString(),
  };
  let path: string | null;
  try {
    path = params.mode === "exclusive" ? await lockExclusive(params.head, me) : await lockShared(params.head, me);
  } catch (e) {
    throw e instanceof VeraError ? e : ioError({ cause: e, path: modelLockPath(params.head), action: "cannot lock" });
  }
  let released = path === null;
  return {
    path,
    mode: params.mode,
    async release() {
      if (released || path === null) return;
      released = true;
      untrackTemp(path);
      if ((await readOwner(path).catch(() => undefined))?.nonce === me.nonce) await fsp.rm(path, { force: true });
    },
  };
}

/**
 * Refuse a model that an in-place merge or a recovery holds (its owner still runs), without
 * taking a lock: for a dry run, and before a model is called interrupted.
 *
 * @throws VeraError `MERGE_BUSY`.
 */
export async function refuseBusy(params: { head: string }): Promise<void> {
  const lock = modelLockPath(params.head);
  const owner = await liveOwner(lock);
  if (owner !== undefined) throw busy(params.head, lock, owner);
}

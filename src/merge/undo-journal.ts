/**
 * Internal (Node): the undo journal of an in-place merge. Before a merged weight overwrites its
 * range of a data file, the range's original bytes are appended to the journal and the journal is
 * made durable (write-ahead), so an interrupted merge (crash, power loss, kill -9) can always be
 * rolled back: {@link applyUndoJournal} puts every journalled range back, truncates files that
 * grew, restores the head file from its saved link, and removes the journal.
 *
 * Layout (little-endian):
 * - header: `VERAUNDO` (8 bytes), u32 version (1), u32 length N, N bytes of UTF-8 JSON
 *   ({@link UndoJournalHeader}), 32-byte SHA-256 of the JSON;
 * - then entries: `VUE1`, u32 file index, u64 offset, u64 length, 32-byte SHA-256 of the 24
 *   bytes before it and the data, then `length` bytes of data (the range's original bytes).
 *
 * An entry cut short at the end of the journal was never acted on (its range is written only
 * after the entry is synced) and is ignored; a whole entry whose digest does not match is
 * corruption and nothing is restored.
 */
import { createHash } from "node:crypto";
import { promises as fsp } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import { basename, dirname, isAbsolute, join, normalize, sep } from "node:path";
import { ErrorCode, VeraError } from "../errors.js";
import { readRange, writeRange } from "../node/ranged-io.js";
import { sha256OffThread } from "./digest-off-thread.js";
import { MergeErrorCode } from "./error-codes.js";

const MAGIC = new TextEncoder().encode("VERAUNDO");
const ENTRY_MAGIC = 0x31455556; // "VUE1" read as u32 LE
const VERSION = 1;
const MAX_HEADER = 16 * 1024 * 1024;
const ENTRY_HEAD = 24;
const DIGEST = 32;
const CHUNK = 16 * 1024 * 1024;

/** What the journal's header records. Paths are relative to the journal's folder. */
export interface UndoJournalHeader {
  /** The model's head file (relative), for messages. */
  model: string;
  /** The files changed in place, with their sizes before the merge. */
  files: Array<{ path: string; size: number }>;
  /** The head file replaced at the end; its original is kept as `<journal>-head` (a hard link, or a copy). */
  head: { path: string } | null;
}

/** The journal's path for a model whose head file is `input`. */
export function undoJournalPath(input: string): string {
  return join(dirname(input), `.${basename(input)}.vera-undo`);
}

/** Whether a file name is an undo journal's (`.NAME.vera-undo`). */
export function isUndoJournalName(name: string): boolean {
  return /^\..+\.vera-undo$/.test(name);
}

/** The path of the saved original head file for `input`. */
export function headBackupPath(input: string): string {
  return `${undoJournalPath(input)}-head`;
}

function sha256(...parts: Uint8Array[]): Uint8Array {
  const h = createHash("sha256");
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b);
}

/** Parameters of {@link UndoJournal.create}. */
export interface CreateUndoJournalParams {
  /** The model's head file (absolute): the journal goes beside it. */
  input: string;
  /** The files to change (absolute, inside the journal's folder) and their current sizes. */
  files: ReadonlyArray<{ path: string; size: number }>;
  /** The head file is replaced at the end: keep a link to its original. */
  headChanges: boolean;
  /** fsync the journal before each range it covers is overwritten. */
  durable: boolean;
}

/** An open undo journal being written (one in-place merge). */
export class UndoJournal {
  readonly path: string;
  private readonly fh: FileHandle;
  private readonly durable: boolean;
  private size: number;
  private syncedSize: number;
  private chain: Promise<void> = Promise.resolve();
  private syncing: Promise<void> | undefined;
  private closed = false;

  private constructor(path: string, fh: FileHandle, size: number, durable: boolean) {
    this.path = path;
    this.fh = fh;
    this.size = size;
    this.syncedSize = durable ? 0 : size;
    this.durable = durable;
  }

  /**
   * Create the journal (exclusively: a journal already there means an earlier in-place merge was
   * interrupted) and, when the head changes, link its original beside it; both made durable.
   *
   * @throws VeraError `MERGE_INTERRUPTED` (a journal is already there), `IO_ERROR`.
   */
  static async create(params: CreateUndoJournalParams): Promise<UndoJournal> {
    const path = undoJournalPath(params.input);
    const dir = dirname(path);
    const realDir = await fsp.realpath(dir);
    const rel = (p: string): string => {
      const r = p.startsWith(dir + sep)
        ? p.slice(dir.length + 1)
        : p.startsWith(realDir + sep)
          ? p.slice(realDir.length + 1)
          : undefined;
      if (r === undefined)
        throw new VeraError(
          ErrorCode.IO_UNSAFE_PATH,
          `${p} lies outside the model's folder ${dir} (a link): an in-place merge writes only files in that folder; give -o OUT`,
          { path: p, expected: `a file inside ${dir}`, received: p },
        );
      return r.split(sep).join("/");
    };
    const header: UndoJournalHeader = {
      model: basename(params.input),
      files: params.files.map((f) => ({ path: rel(f.path), size: f.size })),
      head: params.headChanges ? { path: basename(params.input) } : null,
    };
    let fh: FileHandle;
    try {
      fh = await fsp.open(path, "wx");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "EEXIST") throw interrupted(params.input, path);
      throw new VeraError(ErrorCode.IO_ERROR, `cannot create the undo journal ${path}: ${(e as Error).message}`, {
        path,
        cause: e,
      });
    }
    try {
      const json = new TextEncoder().encode(JSON.stringify(header));
      const head = new Uint8Array(16);
      head.set(MAGIC, 0);
      const dv = new DataView(head.buffer);
      dv.setUint32(8, VERSION, true);
      dv.setUint32(12, json.length, true);
      const bytes = new Uint8Array(16 + json.length + DIGEST);
      bytes.set(head, 0);
      bytes.set(json, 16);
      bytes.set(sha256(json), 16 + json.length);
      await writeRange(fh, 0, bytes);
      const backup = headBackupPath(params.input);
      await fsp.rm(backup, { force: true }); // left by a merge that ended between its last two steps
      if (header.head) {
        try {
          await fsp.link(params.input, backup);
        } catch {
          await fsp.copyFile(params.input, backup);
        }
      }
      if (params.durable) {
        await fh.sync();
        await syncDir(dir);
      }
      return new UndoJournal(path, fh, bytes.length, params.durable);
    } catch (e) {
      await fh.close().catch(() => {});
      await fsp.rm(path, { force: true }).catch(() => {});
      if (header.head) await fsp.rm(headBackupPath(params.input), { force: true }).catch(() => {});
      throw e instanceof VeraError
        ? e
        : new VeraError(ErrorCode.IO_ERROR, `cannot write the undo journal ${path}: ${(e as Error).message}`, {
            path,
            cause: e,
          });
    }
  }

  /**
   * Append the original bytes of `[offset, offset + bytes.length)` of file `file` (an index into
   * the header's files). Resolves once written (not yet durable); returns the journal size that
   * covers it, for {@link syncThrough}. `bytes` may change once this resolves.
   */
  append(file: number, offset: number, bytes: Uint8Array): Promise<number> {
    const head = new Uint8Array(ENTRY_HEAD);
    const dv = new DataView(head.buffer);
    dv.setUint32(0, ENTRY_MAGIC, true);
    dv.setUint32(4, file, true);
    dv.setBigUint64(8, BigInt(offset), true);
    dv.setBigUint64(16, BigInt(bytes.length), true);
    const digest = sha256OffThread([head, bytes]); // off the JavaScript thread, overlapped with the compute
    digest.catch(() => {}); // surfaces through `done`
    const at = this.size;
    this.size += ENTRY_HEAD + DIGEST + bytes.length;
    const end = this.size;
    const done = this.chain.then(async () => {
      const hd = new Uint8Array(ENTRY_HEAD + DIGEST);
      hd.set(head, 0);
      hd.set(await digest, ENTRY_HEAD);
      await writeRange(this.fh, at, hd);
      await writeRange(this.fh, at + hd.length, bytes);
    });
    this.chain = done.catch(() => {});
    return done.then(() => end);
  }

  /** Make the journal durable up to `end` (a value {@link append} returned). */
  async syncThrough(end: number): Promise<void> {
    while (this.syncedSize < end) {
      if (!this.syncing) {
        const target = this.size;
        this.syncing = this.chain
          .then(() => this.fh.sync())
          .then(() => void (this.syncedSize = Math.max(this.syncedSize, target)))
          .finally(() => (this.syncing = undefined));
      }
      await this.syncing;
    }
  }

  /** Close the journal file (it stays on disk). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.chain;
    await this.fh.close().catch(() => {});
  }
}

async function syncDir(dir: string): Promise<void> {
  let fh: FileHandle | undefined;
  try {
    fh = await fsp.open(dir, "r");
    await fh.sync();
  } catch {
    /* not every platform can fsync a folder */
  } finally {
    await fh?.close().catch(() => {});
  }
}

function interrupted(input: string, journal: string): VeraError {
  return new VeraError(
    MergeErrorCode.MERGE_INTERRUPTED,
    `an in-place merge of ${input} was interrupted and its files may hold partly merged weights; ` +
      `run \`vera recover ${input}\` to put the original bytes back (undo journal ${journal})`,
    { path: input, expected: "no undo journal", received: journal },
  );
}

/**
 * Refuse a model whose in-place merge was interrupted (an undo journal lies beside it).
 *
 * @throws VeraError `MERGE_INTERRUPTED`.
 */
export async function refuseInterrupted(input: string): Promise<void> {
  const journal = undoJournalPath(input);
  try {
    await fsp.lstat(journal);
  } catch {
    return;
  }
  throw interrupted(input, journal);
}

function corrupt(journal: string, message: string, received?: unknown): VeraError {
  return new VeraError(
    MergeErrorCode.MERGE_JOURNAL_CORRUPT,
    `the undo journal ${journal} is damaged (${message}); nothing was restored`,
    { path: journal, expected: "an intact verakit undo journal", ...(received !== undefined ? { received } : {}) },
  );
}

/** A journalled range, checked. */
interface Entry {
  file: number;
  offset: number;
  length: number;
  /** Where its data starts in the journal. */
  at: number;
}

/** A file named by a journal, resolved and checked to lie inside the journal's folder. */
async function resolveInside(dir: string, rel: string, journal: string): Promise<string> {
  if (typeof rel !== "string" || rel === "" || isAbsolute(rel) || rel.includes("\0") || rel.includes("\\"))
    throw corrupt(journal, `a file path ${JSON.stringify(rel)} is not a plain relative path`, rel);
  const norm = normalize(rel);
  if (norm.split(sep).includes("..")) throw corrupt(journal, `a file path ${JSON.stringify(rel)} leaves its folder`);
  const p = join(dir, norm);
  const realDir = await fsp.realpath(dir);
  let real: string;
  try {
    real = await fsp.realpath(p);
  } catch (e) {
    throw new VeraError(ErrorCode.IO_NOT_FOUND, `the journal names ${p}, which is missing; nothing was restored`, {
      path: p,
      cause: e,
    });
  }
  if (!real.startsWith(realDir + sep))
    throw new VeraError(ErrorCode.IO_UNSAFE_PATH, `the journal names ${p}, which resolves outside ${dir}`, {
      path: p,
    });
  return real;
}

/** The journal's header and entries, every digest checked. */
async function readJournal(
  path: string,
  fh: FileHandle,
): Promise<{ header: UndoJournalHeader; entries: Entry[]; ignoredTail: number }> {
  const size = (await fh.stat()).size;
  if (size < 16) return { header: { model: "", files: [], head: null }, entries: [], ignoredTail: -1 };
  const head = await readRange(fh, 0, 16);
  if (!equalBytes(head.subarray(0, 8), MAGIC)) throw corrupt(path, "no VERAUNDO magic");
  const dv = new DataView(head.buffer, head.byteOffset, 16);
  const version = dv.getUint32(8, true);
  if (version !== VERSION) throw corrupt(path, `version ${version}, expected ${VERSION}`, version);
  const n = dv.getUint32(12, true);
  if (n > MAX_HEADER) throw corrupt(path, `a header of ${n} bytes`, n);
  // a header cut short: the journal was being created; nothing was changed yet
  if (16 + n + DIGEST > size) return { header: { model: "", files: [], head: null }, entries: [], ignoredTail: -1 };
  const json = await readRange(fh, 16, n);
  if (!equalBytes(await readRange(fh, 16 + n, DIGEST), sha256(json))) throw corrupt(path, "the header's digest");
  let header: UndoJournalHeader;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(json)) as UndoJournalHeader;
  } catch {
    throw corrupt(path, "the header is not JSON");
  }
  if (
    !header ||
    !Array.isArray(header.files) ||
    header.files.some((f) => typeof f?.path !== "string" || !Number.isSafeInteger(f.size) || f.size < 0) ||
    (header.head !== null && typeof header.head?.path !== "string")
  )
    throw corrupt(path, "the header's fields");
  const entries: Entry[] = [];
  let pos = 16 + n + DIGEST;
  const buf = new Uint8Array(CHUNK);
  while (pos + ENTRY_HEAD + DIGEST <= size) {
    const eh = await readRange(fh, pos, ENTRY_HEAD + DIGEST);
    const ev = new DataView(eh.buffer, eh.byteOffset, eh.byteLength);
    const file = ev.getUint32(4, true);
    const offset = Number(ev.getBigUint64(8, true));
    const length = Number(ev.getBigUint64(16, true));
    if (ev.getUint32(0, true) !== ENTRY_MAGIC) throw corrupt(path, `no entry magic at byte ${pos}`);
    const f = header.files[file];
    if (!f || !Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset + length > f.size)
      throw corrupt(path, `the entry at byte ${pos} names a range outside its file`, { file, offset, length });
    const at = pos + ENTRY_HEAD + DIGEST;
    if (at + length > size) break; // cut short: never acted on
    const h = createHash("sha256").update(eh.subarray(0, ENTRY_HEAD));
    for (let done = 0; done < length; ) {
      const k = Math.min(CHUNK, length - done);
      h.update(await readRange(fh, at + done, k, buf.subarray(0, k)));
      done += k;
    }
    if (!equalBytes(new Uint8Array(h.digest()), eh.subarray(ENTRY_HEAD)))
      throw corrupt(path, `the digest of the entry at byte ${pos}`);
    entries.push({ file, offset, length, at });
    pos = at + length;
  }
  return { header, entries, ignoredTail: size - pos };
}

/** What {@link applyUndoJournal} did. */
export interface UndoResult {
  /** The journal that was applied. */
  journal: string;
  /** Files put back (absolute). */
  files: string[];
  /** Ranges and bytes written back. */
  ranges: number;
  bytes: number;
  /** Whether the head file was put back from its saved original. */
  headRestored: boolean;
}

/**
 * Roll an interrupted (or failed) in-place merge back: check every entry's digest first, then
 * write each journalled range back, truncate every file to its size before the merge, put the
 * head file's original back, sync, and remove the journal. A damaged journal changes nothing.
 *
 * @throws VeraError `MERGE_JOURNAL_CORRUPT`, `IO_NOT_FOUND` (a file it names is gone),
 *   `IO_UNSAFE_PATH`, `IO_ERROR`.
 */
export async function applyUndoJournal(params: { journal: string; durable?: boolean }): Promise<UndoResult> {
  const { journal } = params;
  const durable = params.durable ?? true;
  const dir = dirname(journal);
  const jfh = await fsp.open(journal, "r");
  try {
    const { header, entries } = await readJournal(journal, jfh);
    const paths = await Promise.all(header.files.map((f) => resolveInside(dir, f.path, journal)));
    // the saved head goes by the journal's name, whatever the header says
    const headBackup = `${journal}-head`;
    const headPath = header.head ? await resolveInside(dir, header.head.path, journal) : undefined;
    const handles = new Map<number, FileHandle>();
    const buf = new Uint8Array(CHUNK);
    let bytes = 0;
    try {
      for (let i = 0; i < paths.length; i++) handles.set(i, await fsp.open(paths[i]!, "r+"));
      for (const e of entries) {
        const fh = handles.get(e.file)!;
        for (let done = 0; done < e.length; ) {
          const k = Math.min(CHUNK, e.length - done);
          await writeRange(fh, e.offset + done, await readRange(jfh, e.at + done, k, buf.subarray(0, k)));
          done += k;
        }
        bytes += e.length;
      }
      for (const [i, fh] of handles) {
        if ((await fh.stat()).size > header.files[i]!.size) await fh.truncate(header.files[i]!.size);
        if (durable) await fh.sync();
      }
    } finally {
      for (const fh of handles.values()) await fh.close().catch(() => {});
    }
    let headRestored = false;
    if (headPath) {
      try {
        await fsp.rename(headBackup, headPath);
        headRestored = true;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
      }
    }
    if (durable) await syncDir(dir);
    await jfh.close();
    await fsp.rm(journal, { force: true });
    await fsp.rm(headBackup, { force: true });
    if (durable) await syncDir(dir);
    return { journal, files: paths, ranges: entries.length, bytes, headRestored };
  } catch (e) {
    if (e instanceof VeraError) throw e;
    throw new VeraError(ErrorCode.IO_ERROR, `cannot roll back with ${journal}: ${(e as Error).message}`, {
      path: journal,
      cause: e,
    });
  } finally {
    await jfh.close().catch(() => {});
  }
}

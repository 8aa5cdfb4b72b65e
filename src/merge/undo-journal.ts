/**
 * Internal (Node): the undo journal of an in-place merge. Before a merged weight overwrites its
 * range of a data file, the range's original bytes are appended to the journal and the journal is
 * made durable (write-ahead), so an interrupted merge (crash, power loss, kill -9) can always be
 * rolled back: {@link applyUndoJournal} puts every journalled range back, truncates files that
 * grew, restores the head file from its saved link, and removes the journal.
 *
 * The layout (version 3, CRC-32 per record; version 2, SHA-256 per record, is still read; both
 * with a record count and a chain digest over the header and every record) is encoded and decoded
 * in `undo-journal-format.ts`. A record cut short at the end of the journal, or
 * one whole but not yet counted, was never acted on (its range is written only after the record
 * and its count are synced) and is ignored; a journal holding fewer records than it counts (cut at
 * a record boundary), a digest or chain that does not match, or a version-1 journal (which has no
 * count to check) is corruption and nothing is restored.
 */
import { promises as fsp } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import { basename, dirname, isAbsolute, join, normalize, relative, sep } from "node:path";
import { ErrorCode, VeraError } from "../errors.js";
import { errnoOf } from "../node/io-error.js";
import { isInside } from "../node/path-inside.js";
import { readRange, writeRange } from "../node/ranged-io.js";
import { MergeErrorCode } from "./error-codes.js";
import { refuseBusy } from "./model-lock.js";
import {
  chainNext,
  chainStart,
  checksumBytes,
  decodeEntryHead,
  decodeSlot,
  DIGEST,
  encodeEntryHead,
  encodeJournalHeader,
  encodeSlot,
  ENTRY_HEAD,
  equalBytes,
  JOURNAL_MAGIC,
  JOURNAL_PREFIX,
  JOURNAL_VERSION,
  READABLE_VERSIONS,
  recordChecksum,
  sha256,
  SLOT,
  slotOffset,
  type UndoJournalHeader,
} from "./undo-journal-format.js";

export type { UndoJournalHeader } from "./undo-journal-format.js";

const MAX_HEADER = 16 * 1024 * 1024;
const CHUNK = 16 * 1024 * 1024;

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
  /** Bytes of the header (the slots follow). */
  private readonly headerLength: number;
  /** Records appended so far, and the chain digest over the header and those written. */
  private records = 0;
  private chainDigest: Uint8Array;

  private constructor(path: string, fh: FileHandle, header: Uint8Array, durable: boolean) {
    this.path = path;
    this.fh = fh;
    this.headerLength = header.length;
    this.size = header.length + 2 * SLOT;
    this.syncedSize = durable ? 0 : this.size;
    this.durable = durable;
    this.chainDigest = chainStart(header);
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
      const base = isInside(dir, p) ? dir : isInside(realDir, p) ? realDir : undefined;
      if (base === undefined)
        throw new VeraError(
          ErrorCode.IO_UNSAFE_PATH,
          `${p} lies outside the model's folder ${dir} (a link): an in-place merge writes only files in that folder; give -o OUT`,
          { path: p, expected: `a file inside ${dir}`, received: p },
        );
      return relative(base, p).split(sep).join("/");
    };
    const headerFields: UndoJournalHeader = {
      model: basename(params.input),
      files: params.files.map((f) => ({ path: rel(f.path), size: f.size })),
      head: params.headChanges ? { path: basename(params.input) } : null,
    };
    let fh: FileHandle;
    try {
      fh = await fsp.open(path, "wx");
    } catch (e) {
      if (errnoOf(e) === "EEXIST") throw interrupted(params.input, path);
      throw new VeraError(ErrorCode.IO_ERROR, `cannot create the undo journal ${path}: ${(e as Error).message}`, {
        path,
        cause: e,
      });
    }
    try {
      const header = encodeJournalHeader(headerFields);
      const chain = chainStart(header);
      const bytes = new Uint8Array(header.length + 2 * SLOT);
      bytes.set(header, 0);
      bytes.set(encodeSlot(0, chain), slotOffset(header.length, 0));
      bytes.set(encodeSlot(0, chain), slotOffset(header.length, 1));
      await writeRange(fh, 0, bytes);
      const backup = headBackupPath(params.input);
      await fsp.rm(backup, { force: true }); // left by a merge that ended between its last two steps
      if (headerFields.head) {
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
      return new UndoJournal(path, fh, header, params.durable);
    } catch (e) {
      await fh.close().catch(() => {});
      await fsp.rm(path, { force: true }).catch(() => {});
      if (headerFields.head) await fsp.rm(headBackupPath(params.input), { force: true }).catch(() => {});
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
    const head = encodeEntryHead(file, offset, bytes.length);
    // CRC-32 at several GB/s, on this thread: cheaper than copying the bytes out for another thread
    const sum = recordChecksum(JOURNAL_VERSION);
    sum.update(head);
    sum.update(bytes);
    const digest = sum.digest();
    const at = this.size;
    this.size += ENTRY_HEAD + digest.length + bytes.length;
    const end = this.size;
    const done = this.chain.then(async () => {
      const hd = new Uint8Array(ENTRY_HEAD + digest.length);
      hd.set(head, 0);
      hd.set(digest, ENTRY_HEAD);
      await writeRange(this.fh, at, hd);
      await writeRange(this.fh, at + hd.length, bytes);
      await this.count(digest);
    });
    this.chain = done.catch(() => {});
    return done.then(() => end);
  }

  /** Count a record once it is written: its slot (see undo-journal-format.ts) takes the new count and chain. */
  private async count(digest: Uint8Array): Promise<void> {
    this.chainDigest = chainNext(this.chainDigest, digest);
    this.records++;
    await writeRange(this.fh, slotOffset(this.headerLength, this.records), encodeSlot(this.records, this.chainDigest));
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

async function exists(path: string): Promise<boolean> {
  return fsp.lstat(path).then(
    () => true,
    () => false,
  );
}

/** Parameters of {@link refuseInterrupted}. */
export interface RefuseInterruptedParams {
  /** The model's head file as given (its journal may lie beside it, or beside its real path). */
  input: string;
  /** The head file, symlinks resolved (its lock lies beside it). */
  real: string;
  /** Whether this process holds the model's lock (then a journal can only be an interrupted merge's). */
  locked: boolean;
}

/**
 * Refuse a model whose in-place merge was interrupted: an undo journal lies beside it and no
 * process that still runs holds its lock. A merge running now is `MERGE_BUSY`, never interrupted.
 *
 * @throws VeraError `MERGE_INTERRUPTED`, `MERGE_BUSY`.
 */
export async function refuseInterrupted(params: RefuseInterruptedParams): Promise<void> {
  const journals = [...new Set([undoJournalPath(params.real), undoJournalPath(params.input)])];
  const found = async (): Promise<string | undefined> => {
    for (const j of journals) if (await exists(j)) return j;
    return undefined;
  };
  let journal = await found();
  if (journal === undefined) return;
  if (!params.locked) {
    // its owner takes the lock before it creates the journal and removes it after the journal
    await refuseBusy({ head: params.real });
    journal = await found(); // a merge that ended meanwhile
    if (journal === undefined) return;
  }
  throw interrupted(params.input, journal);
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
  if (!isInside(realDir, real))
    throw new VeraError(ErrorCode.IO_UNSAFE_PATH, `the journal names ${p}, which resolves outside ${dir}`, {
      path: p,
    });
  return real;
}

const EMPTY: UndoJournalHeader = { model: "", files: [], head: null };

/** The journal's header and its length; null when it was cut short while the journal was created. */
async function readHeader(
  path: string,
  fh: FileHandle,
  size: number,
): Promise<{ header: UndoJournalHeader; length: number; version: number } | null> {
  if (size < JOURNAL_PREFIX) return null;
  const head = await readRange(fh, 0, JOURNAL_PREFIX);
  if (!equalBytes(head.subarray(0, 8), JOURNAL_MAGIC)) throw corrupt(path, "no VERAUNDO magic");
  const dv = new DataView(head.buffer, head.byteOffset, JOURNAL_PREFIX);
  const version = dv.getUint32(8, true);
  if (version === 1)
    throw corrupt(path, "a version-1 journal, which records no count of its entries and cannot be checked", version);
  if (!READABLE_VERSIONS.includes(version))
    throw corrupt(path, `version ${version}, expected one of ${READABLE_VERSIONS.join(", ")}`, version);
  const n = dv.getUint32(12, true);
  if (n > MAX_HEADER) throw corrupt(path, `a header of ${n} bytes`, n);
  const length = JOURNAL_PREFIX + n + DIGEST;
  // cut short in the header or its slots: the journal was being created; nothing was changed yet
  if (length + 2 * SLOT > size) return null;
  const json = await readRange(fh, JOURNAL_PREFIX, n);
  if (!equalBytes(await readRange(fh, JOURNAL_PREFIX + n, DIGEST), sha256(json)))
    throw corrupt(path, "the header's digest");
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
  return { header, length, version };
}

/** The record count and chain of the slot with the highest valid count. */
async function readCount(path: string, fh: FileHandle, headerLength: number) {
  const slots = [0, 1].map(async (i) => decodeSlot(await readRange(fh, headerLength + i * SLOT, SLOT)));
  const valid = (await Promise.all(slots)).filter((x) => x !== null);
  if (valid.length === 0) throw corrupt(path, "both record counts are damaged");
  return valid.reduce((a, b) => (b.count > a.count ? b : a));
}

/** The journal's header and the records it counts, every digest and the chain checked. */
async function readJournal(path: string, fh: FileHandle): Promise<{ header: UndoJournalHeader; entries: Entry[] }> {
  const size = (await fh.stat()).size;
  const read = await readHeader(path, fh, size);
  if (read === null) return { header: EMPTY, entries: [] };
  const { header } = read;
  const counted = await readCount(path, fh, read.length);
  let chain = chainStart(await readRange(fh, 0, read.length));
  const sumBytes = checksumBytes(read.version);
  const entries: Entry[] = [];
  let pos = read.length + 2 * SLOT;
  const buf = new Uint8Array(CHUNK);
  while (entries.length < counted.count) {
    const cut = (): VeraError =>
      corrupt(path, `it counts ${counted.count} records but holds ${entries.length} (cut short at byte ${pos})`, {
        count: counted.count,
        found: entries.length,
      });
    if (pos + ENTRY_HEAD + sumBytes > size) throw cut();
    const eh = await readRange(fh, pos, ENTRY_HEAD + sumBytes);
    const { magic, file, offset, length } = decodeEntryHead(eh);
    if (!magic) throw corrupt(path, `no entry magic at byte ${pos}`);
    const f = header.files[file];
    if (!f || !Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset + length > f.size)
      throw corrupt(path, `the entry at byte ${pos} names a range outside its file`, { file, offset, length });
    const at = pos + ENTRY_HEAD + sumBytes;
    if (at + length > size) throw cut();
    const h = recordChecksum(read.version);
    h.update(eh.subarray(0, ENTRY_HEAD));
    for (let done = 0; done < length; ) {
      const k = Math.min(CHUNK, length - done);
      h.update(await readRange(fh, at + done, k, buf.subarray(0, k)));
      done += k;
    }
    const digest = h.digest();
    if (!equalBytes(digest, eh.subarray(ENTRY_HEAD))) throw corrupt(path, `the checksum of the entry at byte ${pos}`);
    chain = chainNext(chain, digest);
    entries.push({ file, offset, length, at });
    pos = at + length;
  }
  // records after the counted ones were never acted on (counted and synced before their range is written)
  if (!equalBytes(chain, counted.chain)) throw corrupt(path, "the chain digest over its header and records");
  return { header, entries };
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
        if (errnoOf(e) !== "ENOENT") throw e;
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

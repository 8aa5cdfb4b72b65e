/**
 * The writer/copier stage: output data files are copied in the background, one at a time, while
 * weights are merged; each merged weight is written into its file's copy as soon as that is safe:
 * - once the copy is done, or (sequential copier) once the running copy has passed its range
 *   ("early" writes, each checked after the copy by reading back its first and last bytes);
 * - otherwise it is held in memory (up to a budget) until the copy has passed it;
 * - beyond the budget, with a sequential copier, computing waits until the copy has passed it: the
 *   copy is then the slower stage, and the merge ends when it ends (the memory budget keeps the
 *   compute stage that far ahead);
 * - beyond the budget otherwise (a copier whose progress is unknown until its end, or `whenAhead:
 *   "spill"`), it goes to a scratch file and is patched in after the copies, so computing never
 *   waits for a copy.
 * Knows no container format: files, offsets and bytes only.
 */
import { promises as fsp } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import { dirname, join } from "node:path";
import { VeraError } from "../errors.js";
import { readRange, writeRange } from "../node/ranged-io.js";
import { MergeErrorCode } from "./error-codes.js";
import type { FileCopier } from "./file-copier.js";
import { OutputTransaction } from "./output-transaction.js";

/** A data file to write. */
export interface DataWriterFile {
  /** The file's identity (as weights' targets name it). */
  key: string;
  /** The input file. */
  source: string;
  /** The final output path (written as a temporary file of the transaction). */
  dest: string;
  /** Input size in bytes. */
  size: number;
}

/** Parameters of {@link DataWriter}'s constructor. */
export interface DataWriterParams {
  /** The files to copy (those that are written). */
  files: readonly DataWriterFile[];
  /** The output transaction (temporary and scratch paths). */
  tx: OutputTransaction;
  copier: FileCopier;
  /** Most bytes of merged weights held in memory while their file is being copied. */
  memoryBudget: number;
  /** fsync every written file before commit. */
  durable: boolean;
  /** Throws when the merge is cancelled. */
  check: () => void;
  /** The error of a cancelled merge. */
  aborted: () => Error;
  /**
   * How often a held write looks at the running copy's progress, milliseconds.
   * @default 20 (1000 for a copier that is not sequential: only the copy's end matters then)
   */
  pollMs?: number;
  /** Adds busy time, milliseconds, to a phase. */
  timed?: (phase: "copy" | "write", ms: number) => void;
  /**
   * A merged weight beyond the memory budget that the copy has not reached yet: wait for the copy, or
   * put it in a scratch file and patch it in after the copies.
   * @default "wait" with a sequential copier, "spill" otherwise
   */
  whenAhead?: "wait" | "spill";
}

interface EarlyWrite {
  f: DataWriterFile;
  offset: number;
  length: number;
  head: Uint8Array;
  tail: Uint8Array;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Copies data files and writes merged weights into the copies. */
export class DataWriter {
  private readonly p: DataWriterParams;
  private readonly byKey = new Map<string, DataWriterFile>();
  private readonly copied = new Map<DataWriterFile, Promise<void>>();
  private readonly copiedDone = new Set<DataWriterFile>();
  private readonly handles = new Map<string, Promise<FileHandle>>();
  private readonly pending: Array<Promise<void>> = [];
  private readonly early: EarlyWrite[] = [];
  private readonly spilled: Array<{ f: DataWriterFile; offset: number; at: number; length: number }> = [];
  private spill: { fh: Promise<FileHandle>; size: number } | undefined;
  private copying: { temp: string; file: DataWriterFile } | undefined;
  private copyDone = 0;
  private held = 0;
  /** Milliseconds computing waited for the copy (`whenAhead: "wait"`). */
  waited = 0;
  /** Settles when every copy has ended (resolved or failed). */
  readonly copies: Promise<void>;
  /** The last copy (rejects when any copy failed). */
  private readonly last: Promise<void>;

  /** Starts the copies (in the background, one file at a time, in order). */
  constructor(params: DataWriterParams) {
    this.p = params;
    let chain: Promise<void> = Promise.resolve();
    for (const f of params.files) {
      this.byKey.set(f.key, f);
      const temp = params.tx.tempFor(f.dest);
      const done = chain.then(async () => {
        if (params.tx.isClosed) throw params.aborted();
        params.check();
        const t = performance.now();
        this.copying = { temp, file: f };
        await params.copier.copy(f.source, temp);
        this.copying = undefined;
        params.timed?.("copy", performance.now() - t);
        this.copyDone += f.size;
        this.copiedDone.add(f);
        if (params.tx.isClosed) {
          await OutputTransaction.discard(temp);
          throw params.aborted();
        }
      });
      done.catch(() => {});
      this.copied.set(f, done);
      chain = done;
    }
    this.copies = chain.then(
      () => {},
      () => {},
    );
    this.last = chain;
  }

  /** Total bytes of the files to copy. */
  get copyTotal(): number {
    return this.p.files.reduce((n, f) => n + f.size, 0);
  }

  /** Bytes copied so far (the running copy's progress included). */
  async copiedBytes(): Promise<number> {
    const c = this.copying;
    return this.copyDone + (c ? await this.p.copier.progress(c.temp) : 0);
  }

  /** Bytes of merged weights that waited in the scratch file. */
  get spilledBytes(): number {
    return this.spilled.reduce((n, x) => n + x.length, 0);
  }

  /** Bytes of merged weights written while their file's copy was still running. */
  get earlyWrittenBytes(): number {
    return this.early.reduce((n, x) => n + x.length, 0);
  }

  /**
   * Write a merged weight's bytes at `offset` of a file's copy: now, once the copy has passed
   * it (held in memory), or after the copies (scratch file). Resolves once the bytes are safe (not
   * necessarily written); `values` must not change afterwards, until `written` is called (once its
   * bytes are in the copy or the scratch file; not called when the write fails).
   */
  async write(key: string, offset: number, values: Uint8Array, written?: () => void): Promise<void> {
    const f = this.byKey.get(key);
    if (!f) throw new Error(`internal: data file ${key} is not written`);
    const end = offset + values.byteLength;
    if (this.copiedDone.has(f) || (await this.copyPassed(f, end))) {
      await this.writeNow(f, offset, values, !this.copiedDone.has(f));
      written?.();
    } else if (this.held + values.byteLength <= this.p.memoryBudget) {
      this.held += values.byteLength;
      const done = this.waitCopyPast(f, end).then(async (beforeCopyEnd) => {
        await this.writeNow(f, offset, values, beforeCopyEnd);
        this.held -= values.byteLength;
        written?.();
      });
      done.catch(() => {});
      this.pending.push(done);
    } else if ((this.p.whenAhead ?? (this.p.copier.sequential ? "wait" : "spill")) === "wait") {
      const t = performance.now();
      const beforeCopyEnd = await this.waitCopyPast(f, end);
      this.waited += performance.now() - t;
      await this.writeNow(f, offset, values, beforeCopyEnd);
      written?.();
    } else {
      const t = performance.now();
      this.spill ??= {
        fh: fsp.open(this.p.tx.scratchFor(join(dirname(f.dest), ".vera-merge-spill")), "w+"),
        size: 0,
      };
      const at = this.spill.size;
      this.spill.size += values.byteLength;
      await writeRange(await this.spill.fh, at, values);
      this.spilled.push({ f, offset, at, length: values.byteLength });
      this.p.timed?.("write", performance.now() - t);
      written?.();
    }
  }

  /**
   * Wait for every write and copy, check the early writes, patch in the spilled weights, and (when
   * durable) fsync every file written; all files are closed.
   *
   * @throws VeraError `MERGE_COPY_RACE` when an early write did not survive its file's copy.
   */
  async finish(): Promise<void> {
    for (const p of this.pending) await p;
    await this.last;
    this.p.check();
    for (const e of this.early) {
      const fh = await this.handleFor(e.f);
      const head = await readRange(fh, e.offset, e.head.byteLength);
      const tail = await readRange(fh, e.offset + e.length - e.tail.byteLength, e.tail.byteLength);
      if (!equalBytes(head, e.head) || !equalBytes(tail, e.tail))
        throw new VeraError(
          MergeErrorCode.MERGE_COPY_RACE,
          `a merged tensor at offset ${e.offset} of ${e.f.dest} was overwritten by the file copy; nothing was written`,
          { path: e.f.dest },
        );
    }
    if (this.spill) await this.patchSpilled(await this.spill.fh);
    for (const p of this.handles.values()) {
      const fh = await p;
      if (this.p.durable) await fh.sync();
      await fh.close();
    }
    if (this.p.durable) {
      // Copied files without merged weights were never opened for writing: sync them too.
      for (const f of this.p.files) {
        if (this.handles.has(f.dest)) continue;
        const fh = await fsp.open(this.p.tx.tempFor(f.dest), "r+");
        await fh.sync();
        await fh.close();
      }
    }
    this.handles.clear();
  }

  /** Close every open file (after a failure). Copies still running are not waited for. */
  async close(): Promise<void> {
    for (const p of [...this.handles.values(), ...(this.spill ? [this.spill.fh] : [])])
      await p.then((fh) => fh.close()).catch(() => {});
    this.handles.clear();
  }

  private handleFor(f: DataWriterFile): Promise<FileHandle> {
    let fh = this.handles.get(f.dest);
    if (!fh) {
      fh = fsp.open(this.p.tx.tempFor(f.dest), "r+");
      this.handles.set(f.dest, fh);
    }
    return fh;
  }

  private async writeNow(f: DataWriterFile, offset: number, values: Uint8Array, beforeCopyEnd: boolean): Promise<void> {
    const t = performance.now();
    await writeRange(await this.handleFor(f), offset, values);
    if (beforeCopyEnd) {
      const k = Math.min(64, values.byteLength);
      this.early.push({
        f,
        offset,
        length: values.byteLength,
        head: values.slice(0, k),
        tail: values.slice(values.byteLength - k),
      });
    }
    this.p.timed?.("write", performance.now() - t);
  }

  /** Whether the copy of `f` is done, or (sequential copier) the running copy has written past `end`. */
  private async copyPassed(f: DataWriterFile, end: number): Promise<boolean> {
    if (this.copiedDone.has(f)) return true;
    const c = this.copying;
    if (!this.p.copier.sequential || c?.file !== f) return false;
    return (await this.p.copier.progress(c.temp)) >= end;
  }

  /** Resolves once the copy of `f` has passed `end`: true while the copy is still running (an early write). */
  private async waitCopyPast(f: DataWriterFile, end: number): Promise<boolean> {
    const whole = this.copied.get(f)!;
    const sequential = this.p.copier.sequential;
    const poll = this.p.pollMs ?? (sequential ? 20 : 1000);
    let settled = false;
    whole.then(
      () => void (settled = true),
      () => void (settled = true),
    );
    for (;;) {
      if (settled) {
        await whole;
        return false;
      }
      if (sequential && (await this.copyPassed(f, end))) return !this.copiedDone.has(f);
      await Promise.race([whole.catch(() => {}), new Promise((r) => setTimeout(r, poll))]);
    }
  }

  /** Patch the spilled weights into the copies, in bounded chunks. */
  private async patchSpilled(sfh: FileHandle): Promise<void> {
    const t = performance.now();
    const buf = new Uint8Array(Math.min(16 * 1024 * 1024, Math.max(...this.spilled.map((x) => x.length))));
    for (const x of this.spilled) {
      const fh = await this.handleFor(x.f);
      for (let done = 0; done < x.length; ) {
        const n = Math.min(buf.length, x.length - done);
        const chunk = await readRange(sfh, x.at + done, n, buf.subarray(0, n));
        await writeRange(fh, x.offset + done, chunk);
        done += n;
      }
      this.p.check();
    }
    await sfh.close();
    this.spill = undefined;
    this.p.timed?.("write", performance.now() - t);
  }
}

/** Internal: positioned reads of input data files, one open handle per file, into reused buffers. */
import { promises as fsp } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import { allocateRange, readRange } from "../node/ranged-io.js";

/** Parameters of {@link DataReader}'s constructor. */
export interface DataReaderParams {
  /**
   * Most bytes of released buffers kept for the next reads. A fresh buffer of a weight's size
   * costs a page fault per 4 KiB page on its first touch: reused buffers take that cost once.
   * @default 256 MiB
   */
  poolBytes?: number;
  /**
   * Allocate the buffers in SharedArrayBuffers (for a backend that merges them on another thread without a copy).
   * @default false
   */
  shared?: boolean;
}

/**
 * Reads byte ranges of files, keeping each file open until {@link DataReader.close}. Each read
 * fills a buffer that the caller owns until it hands it back with {@link DataReader.release}.
 */
export class DataReader {
  private readonly handles = new Map<string, Promise<FileHandle>>();
  /** Released buffers (whole), smallest first. */
  private readonly free: Uint8Array[] = [];
  private freeBytes = 0;
  /** Whole buffers handed out, by the ArrayBuffer they view. */
  private readonly owned = new WeakMap<ArrayBufferLike, Uint8Array>();
  private readonly poolBytes: number;
  private readonly shared: boolean;

  constructor(params: DataReaderParams = {}) {
    this.poolBytes = params.poolBytes ?? 256 * 1024 * 1024;
    this.shared = params.shared ?? false;
  }

  /**
   * `length` bytes at `offset` of the file at `path`, in a buffer of this reader (a released one
   * when one is large enough). Hand it back with {@link release} once nothing reads it any more.
   */
  async read(path: string, offset: number, length: number): Promise<Uint8Array> {
    let fh = this.handles.get(path);
    if (!fh) {
      fh = fsp.open(path, "r");
      this.handles.set(path, fh);
    }
    const buf = this.take(length, offset, path);
    try {
      return await readRange(await fh, offset, length, buf, path);
    } catch (e) {
      this.release(buf);
      throw e;
    }
  }

  /** Hand back a buffer {@link read} returned (other buffers are ignored). */
  release(buf: Uint8Array): void {
    const whole = this.owned.get(buf.buffer);
    if (!whole) return;
    this.owned.delete(buf.buffer);
    if (this.freeBytes + whole.byteLength > this.poolBytes) return; // dropped: the pool is full
    const i = this.free.findIndex((b) => b.byteLength > whole.byteLength);
    this.free.splice(i < 0 ? this.free.length : i, 0, whole);
    this.freeBytes += whole.byteLength;
  }

  /** Close every file (errors ignored) and drop the buffers. */
  async close(): Promise<void> {
    for (const p of this.handles.values()) await p.then((fh) => fh.close()).catch(() => {});
    this.handles.clear();
    this.free.length = 0;
    this.freeBytes = 0;
  }

  /** A buffer of `length` bytes: the smallest released one that fits, else a new one. */
  private take(length: number, offset: number, path: string): Uint8Array {
    const i = this.free.findIndex((b) => b.byteLength >= length);
    let whole: Uint8Array;
    if (i >= 0) {
      whole = this.free.splice(i, 1)[0]!;
      this.freeBytes -= whole.byteLength;
    } else whole = allocateRange(Math.max(1, length), offset, path, this.shared); // IO_TOO_LARGE for a crafted length
    this.owned.set(whole.buffer, whole);
    return whole.subarray(0, length);
  }
}

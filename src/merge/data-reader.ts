/** Internal: positioned reads of input data files, one open handle per file. */
import { promises as fsp } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import { readRange } from "../node/ranged-io.js";

/** Reads byte ranges of files, keeping each file open until {@link DataReader.close}. */
export class DataReader {
  private readonly handles = new Map<string, Promise<FileHandle>>();

  /** `length` bytes at `offset` of the file at `path`, as a fresh buffer. */
  async read(path: string, offset: number, length: number): Promise<Uint8Array> {
    let fh = this.handles.get(path);
    if (!fh) {
      fh = fsp.open(path, "r");
      this.handles.set(path, fh);
    }
    return readRange(await fh, offset, length, undefined, path);
  }

  /** Close every file (errors ignored). */
  async close(): Promise<void> {
    for (const p of this.handles.values()) await p.then((fh) => fh.close()).catch(() => {});
    this.handles.clear();
  }
}

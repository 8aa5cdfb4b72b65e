import { constants, promises as fsp } from "node:fs";
import { VeraError } from "../errors.js";
import { readVera, type ValidateOptions } from "../format/validate.js";
import { writeVera, type WriteVeraParams } from "../format/write.js";
import type { VeraAdapter } from "../format/types.js";
import { ioError } from "./io-error.js";
import { registerNodeSha256 } from "./node-sha256.js";
import { tempPathFor, trackTemp, untrackTemp } from "./temp-files.js";

export { sweepStaleTemps, tempPathFor } from "./temp-files.js";

// Digests of adapters read and written here use node:crypto.
registerNodeSha256();

/** Read a whole file. Missing files give IO_NOT_FOUND, other failures IO_ERROR. */
export async function readFileBytes(path: string): Promise<Uint8Array> {
  try {
    const b = await fsp.readFile(path);
    return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  } catch (e) {
    throw ioError({ cause: e, path, action: "cannot read" });
  }
}

/** Parameters of {@link writeAtomic}. */
export interface WriteAtomicParams {
  /** The final path. */
  path: string;
  /** Writes the temporary file `temp` (created by the callee: it does not exist yet). */
  fill: (temp: string) => Promise<void>;
  /** fsync the temporary file before the rename. @default true */
  durable?: boolean;
}

/**
 * The one atomic writer: `fill` writes a temporary file beside `path` (same folder, the pid in its
 * name), which is fsynced and renamed over `path`. On any failure, and when the process exits or is
 * ended by SIGTERM / SIGHUP / SIGINT first, the temporary file is removed and `path` is unchanged;
 * a VeraError from `fill` passes through as it is.
 */
export async function writeAtomic(params: WriteAtomicParams): Promise<void> {
  const { path } = params;
  const tmp = tempPathFor(path);
  trackTemp(tmp);
  try {
    await params.fill(tmp);
    if (params.durable ?? true) {
      const fh = await fsp.open(tmp, "r+");
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
    }
    await fsp.rename(tmp, path);
  } catch (e) {
    await fsp.rm(tmp, { force: true }).catch(() => {});
    if (e instanceof VeraError) throw e;
    throw ioError({ cause: e, path, action: "cannot write" });
  } finally {
    untrackTemp(tmp);
  }
}

/**
 * Write a file atomically from a producer that emits its bytes in pieces (so only one piece is held
 * in memory), through {@link writeAtomic}.
 */
export async function writeFileAtomicStream(
  path: string,
  produce: (write: (bytes: Uint8Array) => Promise<void>) => Promise<void>,
): Promise<void> {
  await writeAtomic({
    path,
    fill: async (tmp) => {
      const fh = await fsp.open(tmp, "wx");
      try {
        await produce(async (b) => {
          let off = 0;
          while (off < b.byteLength) off += (await fh.write(b, off, b.byteLength - off)).bytesWritten;
        });
      } finally {
        await fh.close();
      }
    },
  });
}

/** Parameters of {@link copyFileAtomic}. */
export interface CopyFileAtomicParams {
  source: string;
  dest: string;
  /** fsync the copy before the rename. @default true */
  durable?: boolean;
}

/** Copy a file atomically (a reflink clone where the file system has them), through {@link writeAtomic}. */
export async function copyFileAtomic(params: CopyFileAtomicParams): Promise<void> {
  await writeAtomic({
    path: params.dest,
    fill: (tmp) => fsp.copyFile(params.source, tmp, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE),
    ...(params.durable !== undefined ? { durable: params.durable } : {}),
  });
}

/**
 * Write bytes to `path` atomically: write a temporary file in the same folder, fsync, rename.
 * On any failure the temporary file is removed and `path` is unchanged.
 */
export async function writeFileAtomic(path: string, data: Uint8Array | string): Promise<void> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  await writeFileAtomicStream(path, (write) => write(bytes));
}

/** Read and validate a verakit file from disk. */
export async function readVeraFile(path: string, options: ValidateOptions = {}): Promise<VeraAdapter> {
  return readVera(await readFileBytes(path), options);
}

/** Serialise (validated, canonical) and write a verakit file atomically. */
export async function writeVeraFile(path: string, params: WriteVeraParams | VeraAdapter): Promise<Uint8Array> {
  const bytes = writeVera("adapter" in params ? params : { adapter: params });
  await writeFileAtomic(path, bytes);
  return bytes;
}

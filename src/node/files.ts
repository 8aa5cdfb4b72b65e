import { constants, promises as fsp, type Stats } from "node:fs";
import { ErrorCode, isVeraError, VeraError } from "../errors.js";
import type { ByteRangeSource } from "../util/byte-range-source.js";
import { checkInputSize, INPUT_LIMITS } from "../util/input-limits.js";
import { readRange } from "./ranged-io.js";
import { readVera, type ValidateOptions } from "../format/validate.js";
import { writeVera, type WriteVeraParams } from "../format/write.js";
import type { VeraAdapter } from "../format/types.js";
import { ioError } from "./io-error.js";
import { registerNodeSha256 } from "./node-sha256.js";
import { tempPathFor, trackTemp, untrackTemp } from "./temp-files.js";

export { sweepStaleTemps, tempPathFor } from "./temp-files.js";

// Digests of adapters read and written here use node:crypto.
registerNodeSha256();

/** Options of {@link readFileBytes} and {@link withFileSource}. */
export interface ReadFileOptions {
  /** The most bytes the file may hold (checked on its stat size, before reading). @default INPUT_LIMITS.wholeFileBytes */
  maxBytes?: number;
  /** What the file is, for messages. @default "file" */
  what?: string;
}

/** Refuse anything but a regular file (a device such as /dev/zero, a FIFO, a socket, a folder). */
export function checkRegular(st: Stats, path: string, what: string): void {
  if (st.isFile()) return;
  const kind = st.isDirectory()
    ? "a folder"
    : st.isCharacterDevice() || st.isBlockDevice()
      ? "a device"
      : st.isFIFO()
        ? "a FIFO"
        : st.isSocket()
          ? "a socket"
          : "not a regular file";
  throw new VeraError(ErrorCode.IO_NOT_A_FILE, `${what} ${path} is ${kind}, not a regular file`, {
    path,
    expected: "a regular file",
    received: kind,
  });
}

/**
 * Open an input file for positioned reads, after checking (by stat, before opening: a FIFO would block
 * the open) that it is a regular file of at most `maxBytes`; `use` gets its size and a ranged read. Every
 * input file read in pieces (GGUF and safetensors headers) goes through here.
 *
 * @throws VeraError `IO_NOT_FOUND`, `IO_NOT_A_FILE`, `IO_TOO_LARGE`, `IO_ERROR`; a VeraError from `use` passes through.
 */
export async function withFileSource<T>(
  path: string,
  use: (source: ByteRangeSource) => Promise<T>,
  options: ReadFileOptions = {},
): Promise<T> {
  const what = options.what ?? "file";
  let fh: fsp.FileHandle | undefined;
  try {
    checkRegular(await fsp.stat(path), path, what);
    fh = await fsp.open(path, "r");
    const st = await fh.stat();
    checkRegular(st, path, what);
    checkInputSize({ size: st.size, limit: options.maxBytes ?? INPUT_LIMITS.wholeFileBytes, path, what });
    const handle = fh;
    return await use({ size: st.size, read: (o, n) => readRange(handle, o, n, undefined, path) });
  } catch (e) {
    if (isVeraError(e)) throw e;
    throw ioError({ cause: e, path, action: "cannot read" });
  } finally {
    await fh?.close().catch(() => {});
  }
}

/**
 * Read a whole input file: only a regular file (IO_NOT_A_FILE: `/dev/zero` ends at once) of at most
 * `maxBytes` (IO_TOO_LARGE, from its stat size, before anything is read). Missing files give
 * IO_NOT_FOUND, other failures IO_ERROR.
 */
export async function readFileBytes(path: string, options: ReadFileOptions = {}): Promise<Uint8Array> {
  return withFileSource(path, (source) => source.read(0, source.size), options);
}

/** Read a JSON input file's bytes (at most `INPUT_LIMITS.jsonBytes`, checked before reading). */
export async function readJsonFileBytes(path: string, what = "JSON file"): Promise<Uint8Array> {
  return readFileBytes(path, { maxBytes: INPUT_LIMITS.jsonBytes, what });
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

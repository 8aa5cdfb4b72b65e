import { randomBytes } from "node:crypto";
import { promises as fsp, type Stats } from "node:fs";
import { basename, dirname, join } from "node:path";
import { ErrorCode, isVeraError, VeraError } from "../errors.js";
import type { ByteRangeSource } from "../util/byte-range-source.js";
import { checkInputSize, INPUT_LIMITS } from "../util/input-limits.js";
import { readRange } from "./ranged-io.js";
import { readVera, type ValidateOptions } from "../format/validate.js";
import { writeVera, type WriteVeraParams } from "../format/write.js";
import type { VeraAdapter } from "../format/types.js";
import { registerNodeSha256 } from "./node-sha256.js";

// Digests of adapters read and written here use node:crypto.
registerNodeSha256();

function ioError(e: unknown, path: string, what: string): VeraError {
  const err = e as NodeJS.ErrnoException;
  if (err?.code === "ENOENT")
    return new VeraError(ErrorCode.IO_NOT_FOUND, `${what}: no such file or folder: ${path}`, { path, cause: e });
  return new VeraError(ErrorCode.IO_ERROR, `${what} ${path}: ${err?.message ?? String(e)}`, { path, cause: e });
}

/** Options of {@link readFileBytes} and {@link withFileSource}. */
export interface ReadFileOptions {
  /** The most bytes the file may hold (checked on its stat size, before reading). @default INPUT_LIMITS.wholeFileBytes */
  maxBytes?: number;
  /** What the file is, for messages. @default "file" */
  what?: string;
}

/** Refuse anything but a regular file (a device such as /dev/zero, a FIFO, a socket, a folder). */
function checkRegular(st: Stats, path: string, what: string): void {
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
    throw ioError(e, path, "cannot read");
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

/** A temporary path next to `path` (same folder, so a rename is atomic). */
export function tempPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
}

/**
 * Write a file atomically from a producer that emits its bytes in pieces (so only one piece is held
 * in memory): a temporary file in the same folder, fsync, rename. On any failure the temporary file
 * is removed and `path` is unchanged; a VeraError from the producer passes through as it is.
 */
export async function writeFileAtomicStream(
  path: string,
  produce: (write: (bytes: Uint8Array) => Promise<void>) => Promise<void>,
): Promise<void> {
  const tmp = tempPathFor(path);
  let fh: fsp.FileHandle | undefined;
  try {
    fh = await fsp.open(tmp, "wx");
    const handle = fh;
    await produce(async (b) => {
      let off = 0;
      while (off < b.byteLength) off += (await handle.write(b, off, b.byteLength - off)).bytesWritten;
    });
    await fh.sync();
    await fh.close();
    fh = undefined;
    await fsp.rename(tmp, path);
  } catch (e) {
    await fh?.close().catch(() => {});
    await fsp.rm(tmp, { force: true }).catch(() => {});
    if (e instanceof VeraError) throw e;
    throw ioError(e, path, "cannot write");
  }
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

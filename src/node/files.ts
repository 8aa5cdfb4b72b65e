import { randomBytes } from "node:crypto";
import { promises as fsp } from "node:fs";
import { basename, dirname, join } from "node:path";
import { ErrorCode, VeraError } from "../errors.js";
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

/** Read a whole file. Missing files give IO_NOT_FOUND, other failures IO_ERROR. */
export async function readFileBytes(path: string): Promise<Uint8Array> {
  try {
    const b = await fsp.readFile(path);
    return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  } catch (e) {
    throw ioError(e, path, "cannot read");
  }
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

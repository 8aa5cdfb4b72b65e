import type { FileHandle } from "node:fs/promises";
import { ErrorCode, VeraError } from "../errors.js";

/** The most bytes one ranged read may bring into memory at once (one buffer: Node's limit, 4 GiB). */
export const MAX_RANGE_BYTES = 2 ** 32 - 1;

/**
 * A fresh buffer for `length` bytes (in a SharedArrayBuffer when `shared`), or IO_TOO_LARGE (a crafted 4 TiB weight,
 * or a length the machine cannot hold).
 */
export function allocateRange(length: number, position: number, label: string | undefined, shared = false): Uint8Array {
  const fail = (why: string): VeraError =>
    new VeraError(
      ErrorCode.IO_TOO_LARGE,
      `${label ? `${label}: ` : ""}cannot read ${length} bytes at offset ${position} at once: ${why}`,
      { ...(label ? { path: label } : {}), expected: `<= ${MAX_RANGE_BYTES} bytes`, received: length },
    );
  if (!Number.isSafeInteger(length) || length < 0 || length > MAX_RANGE_BYTES)
    throw fail(`more than the ${MAX_RANGE_BYTES} bytes one buffer holds`);
  try {
    return shared ? new Uint8Array(new SharedArrayBuffer(length)) : new Uint8Array(length);
  } catch (e) {
    if (e instanceof RangeError) throw fail(`out of memory (${e.message})`);
    throw e;
  }
}

/**
 * Read exactly `length` bytes at `position` of an open file (positioned reads; the file offset is
 * not used, so reads of different ranges may run concurrently). `label` (the file's path) names the file
 * in errors.
 *
 * @throws VeraError `IO_ERROR` when the file ends first, `IO_TOO_LARGE` for a length no buffer can hold.
 */
export async function readRange(
  fh: FileHandle,
  position: number,
  length: number,
  into?: Uint8Array,
  label?: string,
): Promise<Uint8Array> {
  const buf = into ?? allocateRange(length, position, label);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(buf, done, length - done, position + done);
    if (bytesRead === 0)
      throw new VeraError(
        ErrorCode.IO_ERROR,
        `unexpected end of file: wanted ${length} bytes at offset ${position}, got ${done}`,
        {
          expected: position + length,
          received: position + done,
        },
      );
    done += bytesRead;
  }
  return buf;
}

/** Write all of `data` at `position` of an open file (positioned writes). */
export async function writeRange(fh: FileHandle, position: number, data: Uint8Array): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await fh.write(data, done, data.length - done, position + done);
    done += bytesWritten;
  }
}

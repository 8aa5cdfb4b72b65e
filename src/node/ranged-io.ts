import type { FileHandle } from "node:fs/promises";
import { ErrorCode, VeraError } from "../errors.js";

/**
 * Read exactly `length` bytes at `position` of an open file (positioned reads; the file offset is
 * not used, so reads of different ranges may run concurrently).
 *
 * @throws VeraError `IO_ERROR` when the file ends first.
 */
export async function readRange(
  fh: FileHandle,
  position: number,
  length: number,
  into?: Uint8Array,
): Promise<Uint8Array> {
  const buf = into ?? new Uint8Array(length);
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

/** Internal (Node): container detection by content: a GGUF file starts with the magic "GGUF". */
import { promises as fsp } from "node:fs";

/** Whether `path` is a regular file starting with the GGUF magic (false for folders and missing files). */
export async function isGgufFile(path: string): Promise<boolean> {
  let fh: fsp.FileHandle | undefined;
  try {
    if (!(await fsp.stat(path)).isFile()) return false;
    fh = await fsp.open(path, "r");
    const head = new Uint8Array(4);
    const { bytesRead } = await fh.read(head, 0, 4, 0);
    return bytesRead === 4 && String.fromCharCode(...head) === "GGUF";
  } catch {
    return false;
  } finally {
    await fh?.close().catch(() => {});
  }
}

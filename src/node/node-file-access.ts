import { promises as fsp } from "node:fs";
import { dirname, join } from "node:path";
import type { FileAccess, FileKind, FolderEntry } from "../peft/load/file-access.js";
import { checkRegular, readFileBytes, withFileSource } from "./files.js";
import { ioError } from "./io-error.js";

/**
 * The {@link FileAccess} of the local file system (native paths): what `loadAdapter` reads adapters through in Node.
 * Missing files give IO_NOT_FOUND, other failures IO_ERROR.
 */
export function nodeFileAccess(): FileAccess {
  return {
    async stat(path: string): Promise<FileKind | undefined> {
      let st;
      try {
        st = await fsp.stat(path);
      } catch {
        return undefined;
      }
      if (st.isDirectory()) return { type: "folder" };
      // a device (/dev/zero), a FIFO or a socket is refused here, never read (IO_NOT_A_FILE)
      checkRegular(st, path, "input");
      return { type: "file", size: st.size };
    },
    async list(path: string): Promise<FolderEntry[]> {
      try {
        const entries = await fsp.readdir(path, { withFileTypes: true });
        return entries
          .filter((e) => e.isFile() || e.isDirectory())
          .map((e) => ({ name: e.name, type: e.isDirectory() ? "folder" : "file" }));
      } catch (e) {
        throw ioError({ cause: e, path, action: "cannot list" });
      }
    },
    async read(path: string, range?: { offset: number; length: number }): Promise<Uint8Array> {
      if (!range) return readFileBytes(path);
      return withFileSource(path, (source) => source.read(range.offset, range.length), {
        maxBytes: Number.MAX_SAFE_INTEGER,
      });
    },
    join,
    dirname,
  };
}

import { promises as fsp } from "node:fs";
import { dirname, join } from "node:path";
import { ErrorCode, VeraError } from "../errors.js";
import type { FileAccess, FileKind, FolderEntry } from "../peft/load/file-access.js";
import { readFileBytes } from "./files.js";
import { readRange } from "./ranged-io.js";

function ioError(e: unknown, path: string, what: "file" | "folder"): VeraError {
  const err = e as NodeJS.ErrnoException;
  if (err.code === "ENOENT")
    return new VeraError(ErrorCode.IO_NOT_FOUND, `no such ${what}: ${path}`, { path, cause: e });
  return new VeraError(ErrorCode.IO_ERROR, `cannot read ${path}: ${err.message}`, { path, cause: e });
}

/**
 * The {@link FileAccess} of the local file system (native paths): what `loadAdapter` reads adapters through in Node.
 * Missing files give IO_NOT_FOUND, other failures IO_ERROR.
 */
export function nodeFileAccess(): FileAccess {
  return {
    async stat(path: string): Promise<FileKind | undefined> {
      try {
        const st = await fsp.stat(path);
        if (st.isDirectory()) return { type: "folder" };
        return st.isFile() ? { type: "file", size: st.size } : undefined;
      } catch {
        return undefined;
      }
    },
    async list(path: string): Promise<FolderEntry[]> {
      try {
        const entries = await fsp.readdir(path, { withFileTypes: true });
        return entries
          .filter((e) => e.isFile() || e.isDirectory())
          .map((e) => ({ name: e.name, type: e.isDirectory() ? "folder" : "file" }));
      } catch (e) {
        throw ioError(e, path, "folder");
      }
    },
    async read(path: string, range?: { offset: number; length: number }): Promise<Uint8Array> {
      if (!range) return readFileBytes(path);
      let fh: fsp.FileHandle | undefined;
      try {
        fh = await fsp.open(path, "r");
        return await readRange(fh, range.offset, range.length);
      } catch (e) {
        if (e instanceof VeraError) throw e;
        throw ioError(e, path, "file");
      } finally {
        await fh?.close().catch(() => {});
      }
    },
    join,
    dirname,
  };
}

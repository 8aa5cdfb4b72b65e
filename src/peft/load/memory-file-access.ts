import { ErrorCode, VeraError } from "../../errors.js";
import type { FileAccess, FileKind, FolderEntry } from "./file-access.js";

/** A file given by its path and its bytes or Blob. */
export interface PathFile {
  /** `/`-separated path relative to the root of what was given (a folder picker's `webkitRelativePath`). */
  path: string;
  /** The file's bytes, or a Blob/File read on demand. */
  file: Uint8Array | Blob;
}

function normalise(path: string): string {
  return path
    .split("/")
    .filter((s) => s !== "" && s !== ".")
    .join("/");
}

/**
 * A {@link FileAccess} over files held in memory or as Blobs (a page's dropped folder, files downloaded from the
 * Hub): folders are the path prefixes; "" and "." name the root. Nothing outside the given files exists.
 */
export function pathFileAccess(files: readonly PathFile[]): FileAccess {
  const byPath = new Map<string, Uint8Array | Blob>();
  for (const f of files) byPath.set(normalise(f.path), f.file);
  const isFolder = (dir: string): boolean => dir === "" || [...byPath.keys()].some((p) => p.startsWith(`${dir}/`));
  const sizeOf = (f: Uint8Array | Blob): number => (f instanceof Uint8Array ? f.byteLength : f.size);
  return {
    stat(path: string): Promise<FileKind | undefined> {
      const p = normalise(path);
      const f = byPath.get(p);
      if (f !== undefined) return Promise.resolve({ type: "file", size: sizeOf(f) });
      return Promise.resolve(isFolder(p) ? { type: "folder" } : undefined);
    },
    list(path: string): Promise<FolderEntry[]> {
      const dir = normalise(path);
      const prefix = dir === "" ? "" : `${dir}/`;
      const out = new Map<string, FolderEntry["type"]>();
      for (const p of byPath.keys()) {
        if (!p.startsWith(prefix)) continue;
        const rest = p.slice(prefix.length).split("/");
        out.set(rest[0]!, rest.length > 1 ? "folder" : "file");
      }
      return Promise.resolve([...out].map(([name, type]) => ({ name, type })));
    },
    async read(path: string, range?: { offset: number; length: number }): Promise<Uint8Array> {
      const f = byPath.get(normalise(path));
      if (f === undefined) throw new VeraError(ErrorCode.IO_NOT_FOUND, `no such file: ${path}`, { path });
      if (f instanceof Uint8Array) return range ? f.subarray(range.offset, range.offset + range.length) : f;
      const part = range ? f.slice(range.offset, range.offset + range.length) : f;
      return new Uint8Array(await part.arrayBuffer());
    },
  };
}

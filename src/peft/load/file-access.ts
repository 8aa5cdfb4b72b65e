import { checkInputSize, INPUT_LIMITS } from "../../util/input-limits.js";
/**
 * The little a loader needs from where an adapter lies (a disk, a Blob list dropped in a page, files
 * downloaded into memory): what is at a path, the entries of a folder, and a file's bytes.
 */

/** What {@link FileAccess.stat} finds at a path. */
export type FileKind = { type: "file"; size: number } | { type: "folder" };

/** One entry of a folder. */
export interface FolderEntry {
  /** The entry's own name (one path component). */
  name: string;
  type: "file" | "folder";
}

/** Read-only access to files, by `/`-separated paths (native paths on disk). */
export interface FileAccess {
  /** What is at `path`, or undefined when nothing is. */
  stat(path: string): Promise<FileKind | undefined>;
  /** The entries of the folder at `path`. */
  list(path: string): Promise<FolderEntry[]>;
  /** The bytes of the file at `path`: all of them, or `length` bytes from `offset`. */
  read(path: string, range?: { offset: number; length: number }): Promise<Uint8Array>;
  /** The path of `name` inside the folder `dir`. @default `${dir}/${name}` */
  join?(dir: string, name: string): string;
  /** The folder a path lies in. @default the path up to its last `/` ("." when none) */
  dirname?(path: string): string;
}

/** `name` inside `dir`, as `files` joins paths. */
export function joinPath(files: FileAccess, dir: string, name: string): string {
  if (files.join) return files.join(dir, name);
  return dir === "" ? name : `${dir}/${name}`;
}

/** The folder `path` lies in, as `files` names folders. */
export function dirnamePath(files: FileAccess, path: string): string {
  if (files.dirname) return files.dirname(path);
  const k = path.lastIndexOf("/");
  return k < 0 ? "." : path.slice(0, k);
}

/** The last component of a path. */
export function basenamePath(path: string): string {
  const parts = path.split(/[\\/]/).filter((s) => s !== "");
  return parts[parts.length - 1] ?? path;
}

/**
 * Read a JSON file's bytes through `files`, refusing one larger than `INPUT_LIMITS.jsonBytes` (by its
 * size, before reading: a size bomb ends in `IO_TOO_LARGE` at once).
 */
export async function readJsonBytes(files: FileAccess, path: string): Promise<Uint8Array> {
  const kind = await files.stat(path);
  if (kind?.type === "file")
    checkInputSize({ size: kind.size, limit: INPUT_LIMITS.jsonBytes, path, what: "JSON file" });
  return files.read(path);
}

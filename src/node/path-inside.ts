import { isAbsolute, relative, resolve, sep } from "node:path";

/**
 * Internal (Node): the one path-inside-folder check. Whether `path` lies strictly inside `dir` (not
 * `dir` itself), by path names only: resolve symlinks first (`realpath`) where links matter.
 */
export function isInside(dir: string, path: string): boolean {
  const r = relative(resolve(dir), resolve(path));
  return r !== "" && r !== ".." && !r.startsWith(`..${sep}`) && !isAbsolute(r);
}

/**
 * Internal (Node): the one mapping from a file system error (`NodeJS.ErrnoException`) to a
 * `VeraError`: a missing file or folder is `IO_NOT_FOUND`, anything else `IO_ERROR`, the message
 * naming what was being done and the path.
 */
import { ErrorCode, VeraError } from "../errors.js";

/** The errno code of a file system error (`ENOENT`, ...), or undefined for any other value. */
export function errnoOf(e: unknown): string | undefined {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === "string" && /^E[A-Z0-9]+$/.test(code) ? code : undefined;
}

/** Parameters of {@link ioError}. */
export interface IoErrorParams {
  /** The error thrown by node:fs. */
  cause: unknown;
  /** The path it was about. */
  path: string;
  /** What was being done, for the message (`cannot read`, `cannot write`, ...). @default "cannot access" */
  action?: string;
}

/** The VeraError for a file system error: `IO_NOT_FOUND` (ENOENT, ENOTDIR on the way) or `IO_ERROR`. */
export function ioError(params: IoErrorParams): VeraError {
  const { cause, path } = params;
  const action = params.action ?? "cannot access";
  const code = errnoOf(cause);
  if (code === "ENOENT")
    return new VeraError(ErrorCode.IO_NOT_FOUND, `${action}: no such file or folder: ${path}`, { path, cause });
  const why =
    code === "EACCES" || code === "EPERM" ? "permission denied" : ((cause as Error)?.message ?? String(cause));
  return new VeraError(ErrorCode.IO_ERROR, `${action} ${path}: ${why}`, { path, cause });
}

import { ErrorCode, VeraError } from "../errors.js";

const PART = /^[A-Za-z0-9_.-]{1,96}$/;

/**
 * Check a model repository id `namespace/name` as the Hub (and huggingface_hub's validate_repo_id)
 * does: letters, digits, `_`, `-`, `.`; at most 96 characters per part; no `--` or `..`; not starting or
 * ending with `-` or `.`; not ending with `.git`. Throws ARG_INVALID.
 */
export function checkRepoId(repo: string, where = "repo"): string {
  const parts = repo.split("/");
  const bad = (why: string): never => {
    throw new VeraError(ErrorCode.ARG_INVALID, `${where}: "${printable(repo)}" is not a model repo id (${why})`, {
      path: where,
      expected: "namespace/name, e.g. alice/llama-vera",
      received: printable(repo),
    });
  };
  if (parts.length !== 2) bad("expected exactly one /");
  for (const p of parts) {
    if (!PART.test(p)) bad("each part is 1-96 letters, digits, _ - or .");
    if (/^[-.]|[-.]$/.test(p)) bad("a part must not start or end with - or .");
  }
  if (repo.includes("--") || repo.includes("..")) bad("-- and .. are not allowed");
  if (repo.endsWith(".git")) bad("must not end with .git");
  return repo;
}

/** Check a revision (branch, tag or commit id). Throws ARG_INVALID. */
export function checkRevision(revision: string, where = "revision"): string {
  if (
    revision.length === 0 ||
    revision.length > 256 ||
    !/^[A-Za-z0-9._\-/]+$/.test(revision) ||
    revision.split("/").some((s) => s === "" || s === "." || s === "..") ||
    revision.endsWith(".lock")
  ) {
    throw new VeraError(ErrorCode.ARG_INVALID, `${where}: "${printable(revision)}" is not a valid revision`, {
      path: where,
      expected: "a branch, tag or commit id: letters, digits, . _ - and / between non-empty parts",
      received: printable(revision),
    });
  }
  return revision;
}

/**
 * Check a file path inside a repository before it is used as a path on disk: relative, `/`-separated,
 * no empty, `.` or `..` parts, no backslashes, no drive letters, no control characters. Throws IO_UNSAFE_PATH.
 */
export function checkRepoPath(path: string, where = "path"): string {
  const parts = path.split("/");
  if (
    path.length === 0 ||
    path.length > 1024 ||
    path.includes("\\") ||
    // eslint-disable-next-line no-control-regex -- control characters are what this rejects
    /[\u0000-\u001f\u007f]/.test(path) ||
    /^[A-Za-z]:/.test(path) ||
    parts.some((s) => s === "" || s === "." || s === "..")
  ) {
    throw new VeraError(
      ErrorCode.IO_UNSAFE_PATH,
      `${where}: "${printable(path)}" is not a safe relative path inside a repository`,
      {
        path: where,
        expected: "a relative path such as adapter.vera.safetensors",
        received: printable(path),
      },
    );
  }
  return path;
}

/** Internal: shorten and neutralise a user-supplied string for an error message. */
function printable(s: string): string {
  // eslint-disable-next-line no-control-regex -- control characters are what this replaces
  const clean = s.replace(/[\u0000-\u001f\u007f]/g, "?");
  return clean.length > 120 ? `${clean.slice(0, 117)}...` : clean;
}

import { checkRepoId, checkRevision } from "./repo-names.js";

/** Parameters of {@link parseRepoRef}. */
export interface ParseRepoRefParams {
  /** `namespace/name` or `namespace/name@revision`. */
  ref: string;
  /** Name of the argument, for messages. @default "repo" */
  where?: string;
}

/** A parsed repository reference. */
export interface RepoRef {
  repo: string;
  /** Present only when the reference named one. */
  revision?: string;
}

/** Split and check `namespace/name[@revision]`. Throws ARG_INVALID. */
export function parseRepoRef(params: ParseRepoRefParams): RepoRef {
  const where = params.where ?? "repo";
  const at = params.ref.indexOf("@");
  if (at < 0) return { repo: checkRepoId(params.ref, where) };
  return {
    repo: checkRepoId(params.ref.slice(0, at), where),
    revision: checkRevision(params.ref.slice(at + 1), where),
  };
}

/**
 * Stable error codes of the Hub client (`HUB_*`). Every failure of a push, pull or whoami is a
 * `VeraError` with one of these codes (or a `VERA_*` / `ARG_*` / `IO_*` code for bad local input).
 * Messages never contain the access token.
 */
export const HubErrorCode = {
  /** An operation that needs a token (push, whoami) found none: no option, no HF_TOKEN, no token file. */
  HUB_TOKEN_MISSING: "HUB_TOKEN_MISSING",
  /** The token is malformed (Hugging Face tokens start with `hf_`). The token itself is never echoed. */
  HUB_TOKEN_INVALID: "HUB_TOKEN_INVALID",
  /** 401: the Hub rejected the token (expired, revoked or mistyped), or the request needed one. */
  HUB_UNAUTHORIZED: "HUB_UNAUTHORIZED",
  /** 403: the token may not do this (read-only token, or a namespace the account cannot write to). */
  HUB_FORBIDDEN: "HUB_FORBIDDEN",
  /** 403 on a gated repo: its conditions were not accepted by this account. */
  HUB_GATED: "HUB_GATED",
  /** 404 for the repository (or a private one the token cannot see). */
  HUB_REPO_NOT_FOUND: "HUB_REPO_NOT_FOUND",
  /** 404 for the revision (branch, tag or commit) inside an existing repository. */
  HUB_REVISION_NOT_FOUND: "HUB_REVISION_NOT_FOUND",
  /** The repository exists but holds no adapter file (neither the verakit file nor a PEFT adapter). */
  HUB_FILE_NOT_FOUND: "HUB_FILE_NOT_FOUND",
  /** 409 / 412: a conflicting state (the branch moved during the push, a name already taken). */
  HUB_CONFLICT: "HUB_CONFLICT",
  /** 429 after the bounded retries, or a Retry-After longer than the configured cap. */
  HUB_RATE_LIMITED: "HUB_RATE_LIMITED",
  /** 5xx after the bounded retries. */
  HUB_SERVER_ERROR: "HUB_SERVER_ERROR",
  /** Any other HTTP error status. */
  HUB_HTTP_ERROR: "HUB_HTTP_ERROR",
  /**
   * The server did not answer in time, after the bounded retries: no response headers within the connect
   * timeout, or no body bytes within the idle timeout (a stalled server). Names the URL, never the token.
   */
  HUB_TIMEOUT: "HUB_TIMEOUT",
  /** The server could not be reached, or the connection was cut, after the bounded retries. */
  HUB_NETWORK: "HUB_NETWORK",
  /** A download did not match its announced size or digest (SHA-256 for LFS files, git SHA-1 otherwise). */
  HUB_INTEGRITY: "HUB_INTEGRITY",
  /** The server answered something the client cannot interpret. */
  HUB_BAD_RESPONSE: "HUB_BAD_RESPONSE",
  /** The commit request failed in a way that leaves open whether it was applied, and checking did not settle it. */
  HUB_COMMIT_UNCERTAIN: "HUB_COMMIT_UNCERTAIN",
  /**
   * Offline mode (HF_HUB_OFFLINE or `offline: true`) and the adapter is not in the cache; or a model
   * read only from the cache (`findCachedSnapshot`, `vera merge org/model`) is not there.
   */
  HUB_OFFLINE_MISS: "HUB_OFFLINE_MISS",
  /** The local cache holds something unexpected (a link leaving the cache, a blob failing its digest). */
  HUB_CACHE: "HUB_CACHE",
  /** A PEFT conversion needed for this operation is not available. */
  HUB_PEFT_UNAVAILABLE: "HUB_PEFT_UNAVAILABLE",
  /** The operation was aborted through its AbortSignal. */
  HUB_ABORTED: "HUB_ABORTED",
} as const;

/** One of {@link HubErrorCode}. */
export type HubErrorCodeValue = (typeof HubErrorCode)[keyof typeof HubErrorCode];

/** Internal: turn whatever a Hub call threw into a VeraError with a HUB_* code and a redacted message. */
import { isVeraError, VeraError, type ErrorCodeValue } from "../../errors.js";
import { HubErrorCode } from "../errors.js";
import type { HubFetch } from "../hub-fetch.js";
import { redactError, redactSecrets } from "../redact.js";
import { isHubApiError } from "./hub-lib.js";
import { isAbort, safeUrl } from "./util.js";

/** Context for messages. */
export interface HubErrorContext {
  /** What was being done, e.g. `pushing to alice/x`. */
  action: string;
  repo?: string;
  revision?: string;
  path?: string;
  /** Secrets to scrub (the token). */
  secrets: readonly (string | undefined)[];
  hubFetch?: HubFetch;
  /** Extra hint for a missing repository (e.g. "pass --create"). */
  repoMissingHint?: string;
  /** Extra hint for a missing revision. */
  revisionMissingHint?: string;
}

const MAX_SERVER_TEXT = 300;

function serverText(e: { message: string }): string | undefined {
  // HubApiError.message is "<server error>. URL: <url>[. Request ID: <id>]"; keep the server part.
  const m = e.message.replace(/\.?\s*URL: .*$/s, "").trim();
  if (!m || /^Api error with status \d+$/.test(m)) return undefined;
  return m.length > MAX_SERVER_TEXT ? `${m.slice(0, MAX_SERVER_TEXT)}...` : m;
}

/** Convert any thrown value into a VeraError (HUB_* for transport failures), never carrying the token. */
export function toHubError(e: unknown, ctx: HubErrorContext): VeraError {
  const red = (s: string): string => redactSecrets({ text: s, secrets: ctx.secrets });
  if (isVeraError(e)) return redactError({ error: e, secrets: ctx.secrets }) as VeraError;
  const where = ctx.path ?? ctx.repo;
  const at = [ctx.repo, ctx.revision ? `@${ctx.revision}` : "", ctx.path ? `/${ctx.path}` : ""].join("");
  const mk = (
    code: ErrorCodeValue,
    message: string,
    extra: { expected?: unknown; received?: unknown } = {},
  ): VeraError => new VeraError(code, red(message), { ...(where !== undefined ? { path: red(where) } : {}), ...extra });

  if (isAbort(e)) return mk(HubErrorCode.HUB_ABORTED, `${ctx.action}: aborted`);

  if (isHubApiError(e)) {
    const he = e;
    const info = ctx.hubFetch?.errorInfo(he.url);
    const status = he.statusCode;
    const server = serverText(he) ?? info?.errorMessage;
    const detail = `${server ? `: ${server}` : ""} [HTTP ${status}${he.requestId ? `, request id ${he.requestId}` : ""}, ${safeUrl(he.url)}]`;
    const code = info?.errorCode;
    if ((status === 403 || status === 401) && code === "GatedRepo")
      return mk(
        HubErrorCode.HUB_GATED,
        `${ctx.action}: ${ctx.repo ?? "the repository"} is gated: accept its access conditions on its Hub page with this account, then retry${detail}`,
        { received: status },
      );
    if (status === 401 && code === "RepoNotFound")
      return mk(
        HubErrorCode.HUB_REPO_NOT_FOUND,
        `${ctx.action}: repository ${ctx.repo ?? "?"} not found, or private and the request had no token that can see it${ctx.repoMissingHint ? ` (${ctx.repoMissingHint})` : ""}${detail}`,
        { received: status },
      );
    if (status === 401)
      return mk(
        HubErrorCode.HUB_UNAUTHORIZED,
        ctx.secrets.some(Boolean)
          ? `${ctx.action}: the Hub rejected the credentials (check the token: --token, HF_TOKEN or the token file; it may be expired or revoked)${detail}`
          : `${ctx.action}: the Hub wants a token for this (pass --token, set HF_TOKEN, or log in with \`hf auth login\`)${detail}`,
        { received: status },
      );
    if (status === 403)
      return mk(
        HubErrorCode.HUB_FORBIDDEN,
        `${ctx.action}: not allowed (a token with the write role is needed, and the repo must be in your namespace or an organization you can write to)${detail}`,
        { received: status },
      );
    if (status === 404) {
      if (code === "RevisionNotFound")
        return mk(
          HubErrorCode.HUB_REVISION_NOT_FOUND,
          `${ctx.action}: revision "${ctx.revision ?? "?"}" does not exist in ${ctx.repo ?? "the repository"}${ctx.revisionMissingHint ? ` (${ctx.revisionMissingHint})` : ""}${detail}`,
          { received: status },
        );
      if (code === "EntryNotFound")
        return mk(HubErrorCode.HUB_FILE_NOT_FOUND, `${ctx.action}: ${at} does not exist${detail}`, {
          received: status,
        });
      return mk(
        HubErrorCode.HUB_REPO_NOT_FOUND,
        `${ctx.action}: repository ${ctx.repo ?? "?"} not found (or private and this token cannot see it)${ctx.repoMissingHint ? ` (${ctx.repoMissingHint})` : ""}${detail}`,
        { received: status },
      );
    }
    if (status === 409 || status === 412)
      return mk(HubErrorCode.HUB_CONFLICT, `${ctx.action}: conflict${detail}`, { received: status });
    if (status === 429) {
      const wait =
        info?.retryAfterMs !== undefined ? ` (the Hub asks to wait ${Math.ceil(info.retryAfterMs / 1000)} s)` : "";
      return mk(
        HubErrorCode.HUB_RATE_LIMITED,
        `${ctx.action}: rate limited by the Hub${wait}; retries exhausted, try again later${detail}`,
        { received: status },
      );
    }
    if (status >= 500)
      return mk(
        HubErrorCode.HUB_SERVER_ERROR,
        `${ctx.action}: the Hub failed (server error) after ${(ctx.hubFetch?.retry.maxRetries ?? 0) + 1} attempt(s)${detail}`,
        { received: status },
      );
    return mk(HubErrorCode.HUB_HTTP_ERROR, `${ctx.action}: unexpected HTTP status${detail}`, { received: status });
  }

  if ((e as Error)?.constructor?.name === "InvalidApiResponseFormatError")
    return mk(
      HubErrorCode.HUB_BAD_RESPONSE,
      `${ctx.action}: the server's answer is not what a Hub sends: ${(e as Error).message}`,
    );

  const err = e as Error & { cause?: { code?: string; message?: string } };
  if (err instanceof TypeError && (err.message === "fetch failed" || err.message === "terminated" || err.cause?.code)) {
    const why = err.cause?.code ?? err.cause?.message ?? err.message;
    return mk(HubErrorCode.HUB_NETWORK, `${ctx.action}: cannot reach the Hub or the connection was cut (${why})`);
  }
  if (err instanceof TypeError && /access token must start with 'hf_'/.test(err.message))
    return mk(
      HubErrorCode.HUB_TOKEN_INVALID,
      `${ctx.action}: the token does not look like a Hugging Face token (they start with hf_)`,
    );
  if (err instanceof SyntaxError)
    return mk(HubErrorCode.HUB_BAD_RESPONSE, `${ctx.action}: the server answered malformed JSON`);
  return mk(HubErrorCode.HUB_BAD_RESPONSE, `${ctx.action}: ${err?.message ?? String(e)}`);
}

import { isVeraError, VeraError, type Issue } from "../errors.js";

/** Parameters of {@link redactSecrets}. */
export interface RedactSecretsParams {
  /** Text that may contain a secret (an error message, a stack trace, a JSON dump). */
  text: string;
  /** Exact secrets to remove (e.g. the access token in use). Entries shorter than 4 characters are ignored. @default [] */
  secrets?: readonly (string | undefined)[];
}

/** What replaces a removed secret. */
export const REDACTED = "[REDACTED]";

// Hugging Face user/org tokens and OAuth tokens: hf_ / hf_oauth_ followed by 30+ letters and digits (20+ matched here,
// so short names such as hf_hub_download stay readable).
const TOKEN_LIKE = /hf_[A-Za-z0-9_]{20,}/g;
const BEARER = /(Bearer\s+)[^\s"',;)]+/gi;
const URL_CREDENTIALS = /(\b[a-z][a-z0-9+.-]*:\/\/)[^/\s:@]+(?::[^/\s@]*)?@/gi;

/**
 * Remove secrets from a text: every exact occurrence of the given secrets, anything shaped like a
 * Hugging Face token (`hf_...`), the value of any `Bearer ...` credential, and `user:password@` in URLs.
 * Used on every message, stack trace and progress line the Hub client produces.
 */
export function redactSecrets(params: RedactSecretsParams): string {
  let out = params.text;
  for (const s of params.secrets ?? []) {
    if (typeof s === "string" && s.length >= 4) out = out.split(s).join(REDACTED);
  }
  return out.replace(TOKEN_LIKE, REDACTED).replace(BEARER, `$1${REDACTED}`).replace(URL_CREDENTIALS, `$1${REDACTED}@`);
}

/** Parameters of {@link redactError}. */
export interface RedactErrorParams {
  error: unknown;
  /** Exact secrets to remove. @default [] */
  secrets?: readonly (string | undefined)[];
}

/**
 * A copy of an error with secrets removed from its message, stack, path and issues (a VeraError stays a
 * VeraError with the same code; anything else becomes a plain Error). The original's `cause` is dropped,
 * since it may carry request details.
 */
export function redactError(params: RedactErrorParams): Error {
  const { error, secrets } = params;
  const r = (s: string): string => redactSecrets({ text: s, ...(secrets ? { secrets } : {}) });
  const rv = (v: unknown): unknown =>
    typeof v === "string"
      ? r(v)
      : v === undefined || v === null || typeof v !== "object"
        ? v
        : JSON.parse(r(JSON.stringify(v)));
  if (error instanceof VeraError || isVeraError(error)) {
    const e = error as VeraError;
    const out = new VeraError(e.code, r(e.message), {
      ...(e.path !== undefined ? { path: r(e.path) } : {}),
      ...(e.expected !== undefined ? { expected: rv(e.expected) } : {}),
      ...(e.received !== undefined ? { received: rv(e.received) } : {}),
      issues: e.issues.map((i) => rv(i) as Issue),
    });
    if (e.stack) out.stack = r(e.stack);
    return out;
  }
  const e = error instanceof Error ? error : new Error(String(error));
  const out = new Error(r(e.message));
  out.name = e.name;
  if (e.stack) out.stack = r(e.stack);
  const code = (e as { code?: unknown }).code;
  if (typeof code === "string") (out as Error & { code?: string }).code = code;
  return out;
}

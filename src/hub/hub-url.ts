import { ErrorCode, VeraError } from "../errors.js";

/** The public Hugging Face Hub. */
export const DEFAULT_HUB_URL = "https://huggingface.co";

/** Parameters of {@link resolveHubUrl}. */
export interface ResolveHubUrlParams {
  /** An explicit endpoint (e.g. from `--hub-url`); wins over the environment. */
  hubUrl?: string;
  /** Environment variables to read `HF_ENDPOINT` from (pass `process.env` in Node). @default {} */
  env?: Readonly<Record<string, string | undefined>>;
}

/**
 * The Hub endpoint to use: `hubUrl`, else `HF_ENDPOINT`, else {@link DEFAULT_HUB_URL}; always an
 * http(s) URL without a trailing slash. Throws ARG_INVALID for anything else (credentials in the URL
 * included, so they cannot leak into messages).
 */
export function resolveHubUrl(params: ResolveHubUrlParams = {}): string {
  const fromEnv = params.env?.["HF_ENDPOINT"];
  const raw = params.hubUrl ?? (fromEnv !== undefined && fromEnv !== "" ? fromEnv : DEFAULT_HUB_URL);
  const where = params.hubUrl !== undefined ? "--hub-url" : fromEnv ? "HF_ENDPOINT" : "default";
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new VeraError(ErrorCode.ARG_INVALID, `${where}: not a URL`, {
      path: where,
      expected: "an http(s) URL such as https://huggingface.co",
    });
  }
  if (url.protocol !== "http:" && url.protocol !== "https:")
    throw new VeraError(ErrorCode.ARG_INVALID, `${where}: the Hub endpoint must be an http or https URL`, {
      path: where,
      expected: "http(s) URL",
      received: url.protocol,
    });
  if (url.username || url.password)
    throw new VeraError(
      ErrorCode.ARG_INVALID,
      `${where}: the Hub endpoint must not carry credentials; use a token instead`,
      { path: where },
    );
  if (url.search || url.hash)
    throw new VeraError(ErrorCode.ARG_INVALID, `${where}: the Hub endpoint must not have a query or fragment`, {
      path: where,
    });
  return (url.origin + url.pathname).replace(/\/+$/, "");
}

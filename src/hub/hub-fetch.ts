import { isAbort, safeUrl, stripQuery } from "./internal/util.js";

/** Retry settings shared by every Hub operation. */
export interface RetryOptions {
  /** Retries after the first attempt (so at most `maxRetries + 1` requests per call). @default 4 */
  maxRetries?: number;
  /** First backoff delay after a 5xx or a connection failure; doubled on each retry (with jitter). @default 1000 */
  baseDelayMs?: number;
  /**
   * Longest single wait, backoff and Retry-After alike. A 429 whose Retry-After asks for longer fails at
   * once with HUB_RATE_LIMITED (saying how long the Hub asked to wait) instead of hanging.
   * @default 60000
   */
  maxDelayMs?: number;
  /** Factor applied to every wait; 0 waits not at all (tests), 2 waits twice as long. @default 1 */
  delayScale?: number;
  /** How to wait. @default a setTimeout-based sleep that stops early when the signal aborts */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

/** A retry about to happen (reported through the operation's progress events). */
export interface RetryEvent {
  type: "retry";
  /** 1 for the first retry. */
  attempt: number;
  maxRetries: number;
  /** Wait before the retry, after scaling. */
  delayMs: number;
  /** Why: `HTTP 503`, `HTTP 429`, `connection failed`, `connection cut`, `digest mismatch`. */
  reason: string;
  method: string;
  /** The request URL (never carries the token). */
  url: string;
}

/** What the last error answer for a URL said, for precise error messages. */
export interface ErrorAnswerInfo {
  status: number;
  /** The Hub's `X-Error-Code` header (RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo). */
  errorCode?: string;
  /** The Hub's `X-Error-Message` header. */
  errorMessage?: string;
  /** Retry-After in milliseconds, when given. */
  retryAfterMs?: number;
}

/** Parameters of {@link createHubFetch}. */
export interface CreateHubFetchParams {
  /** The underlying fetch. @default globalThis.fetch */
  fetch?: typeof fetch;
  retry?: RetryOptions;
  /** Called before each retry. */
  onRetry?: (event: RetryEvent) => void;
  /** Stops waits (and is passed to requests that have no signal of their own). */
  signal?: AbortSignal;
}

/** A fetch with the retry policy, plus what it learned about error answers. */
export interface HubFetch {
  fetch: typeof fetch;
  /** The last error answer seen for this URL (matched on the URL without query). */
  errorInfo(url: string): ErrorAnswerInfo | undefined;
  /** The effective retry settings. */
  retry: Required<Omit<RetryOptions, "sleep">> & { sleep: NonNullable<RetryOptions["sleep"]> };
}

/**
 * Which requests may be sent again after a 5xx or a failed connection. Reads and content-addressed
 * writes are safe: GET/HEAD, LFS PUTs (same oid, same bytes), preupload, paths-info, the LFS batch call,
 * repo and branch creation (a repeat answers 409, which callers treat as "exists"). A commit is NOT
 * repeated blindly (the first one may have landed); a 429 is always safe to repeat, since the server
 * refused the request without acting on it.
 */
function isIdempotent(method: string, url: URL): boolean {
  if (method === "GET" || method === "HEAD" || method === "PUT") return true;
  if (method !== "POST") return false;
  const p = url.pathname;
  return (
    /\/preupload\/[^/]+$/.test(p) ||
    /\/paths-info\/[^/]+$/.test(p) ||
    /\.git\/info\/lfs\/objects\/batch$/.test(p) ||
    /\/api\/repos\/create$/.test(p) ||
    /\/branch\/[^/]+$/.test(p)
  );
}

/** Parse Retry-After (delta seconds or an HTTP date) into milliseconds. */
export function parseRetryAfter(value: string | null, now: number = Date.now()): number | undefined {
  if (value === null) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const t = Date.parse(v);
  if (Number.isNaN(t)) return undefined;
  return Math.max(0, t - now);
}

/** Default sleep: setTimeout, ended early (rejecting) when the signal aborts. */
function defaultSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason ?? new DOMException("Aborted", "AbortError"));
    const t = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(t);
      reject(signal?.reason ?? new DOMException("Aborted", "AbortError"));
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Backoff for retry number `attempt` (1-based): base * 2^(attempt-1), +-20% jitter, capped. */
export function backoffDelay(attempt: number, retry: { baseDelayMs: number; maxDelayMs: number }): number {
  const raw = retry.baseDelayMs * 2 ** (attempt - 1);
  const jitter = 0.8 + Math.random() * 0.4;
  return Math.min(retry.maxDelayMs, Math.round(raw * jitter));
}

/** Resolve retry settings to their defaults. */
export function retrySettings(retry: RetryOptions = {}): HubFetch["retry"] {
  const n = (v: number | undefined, d: number, min = 0): number =>
    typeof v === "number" && Number.isFinite(v) && v >= min ? v : d;
  return {
    maxRetries: Math.floor(n(retry.maxRetries, 4)),
    baseDelayMs: n(retry.baseDelayMs, 1000),
    maxDelayMs: n(retry.maxDelayMs, 60_000),
    delayScale: n(retry.delayScale, 1),
    sleep: retry.sleep ?? defaultSleep,
  };
}

/**
 * Wrap fetch with the Hub retry policy: a 429 is retried after its Retry-After (bounded by
 * `maxDelayMs`), 5xx answers and failed connections are retried with exponential backoff for
 * idempotent requests only, each at most `maxRetries` times. Error answers are returned (not thrown)
 * after the last attempt so @huggingface/hub builds its usual HubApiError; their X-Error-Code and
 * Retry-After are remembered for {@link HubFetch.errorInfo}.
 */
export function createHubFetch(params: CreateHubFetchParams = {}): HubFetch {
  const base = params.fetch ?? ((...a: Parameters<typeof fetch>) => globalThis.fetch(...a));
  const retry = retrySettings(params.retry);
  const infos = new Map<string, ErrorAnswerInfo>();

  const wrapped = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const urlText = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
    const url = new URL(urlText);
    const method = (
      init?.method ?? (typeof input === "object" && "method" in input ? input.method : "GET")
    ).toUpperCase();
    const body = init?.body;
    // A stream body cannot be sent twice; a Request object is sent as is.
    const replayable = !(body instanceof ReadableStream) && !(typeof input === "object" && !(input instanceof URL));
    const idempotent = replayable && isIdempotent(method, url);
    const signal = init?.signal ?? params.signal;
    const finalInit: RequestInit | undefined = signal && !init?.signal ? { ...init, signal } : init;
    for (let attempt = 0; ; attempt++) {
      let res: Response;
      try {
        res = await base(input, finalInit);
      } catch (e) {
        if (isAbort(e) || !idempotent || attempt >= retry.maxRetries) throw e;
        const delay = Math.min(retry.maxDelayMs, backoffDelay(attempt + 1, retry)) * retry.delayScale;
        params.onRetry?.({
          type: "retry",
          attempt: attempt + 1,
          maxRetries: retry.maxRetries,
          delayMs: delay,
          reason: "connection failed",
          method,
          url: safeUrl(urlText),
        });
        await retry.sleep(delay, signal ?? undefined);
        continue;
      }
      if (res.ok) return res;
      const retryAfterMs = parseRetryAfter(res.headers.get("Retry-After"));
      const info: ErrorAnswerInfo = { status: res.status };
      const code = res.headers.get("X-Error-Code");
      const msg = res.headers.get("X-Error-Message");
      if (code) info.errorCode = code;
      if (msg) info.errorMessage = msg;
      if (retryAfterMs !== undefined) info.retryAfterMs = retryAfterMs;
      infos.set(stripQuery(res.url || urlText), info);
      infos.set(stripQuery(urlText), info);
      const retriable = res.status === 429 ? replayable : res.status >= 500 && res.status <= 599 && idempotent;
      if (!retriable || attempt >= retry.maxRetries) return res;
      let delay: number;
      if (res.status === 429 && retryAfterMs !== undefined) {
        if (retryAfterMs > retry.maxDelayMs) return res; // asks for more than we wait: report it
        delay = retryAfterMs;
      } else delay = backoffDelay(attempt + 1, retry);
      delay *= retry.delayScale;
      await res.body?.cancel().catch(() => {});
      params.onRetry?.({
        type: "retry",
        attempt: attempt + 1,
        maxRetries: retry.maxRetries,
        delayMs: delay,
        reason: `HTTP ${res.status}`,
        method,
        url: safeUrl(urlText),
      });
      await retry.sleep(delay, signal ?? undefined);
    }
  };

  return {
    fetch: wrapped as typeof fetch,
    errorInfo: (u) => infos.get(stripQuery(u)),
    retry,
  };
}

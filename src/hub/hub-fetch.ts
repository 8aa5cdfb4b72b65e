import { VeraError } from "../errors.js";
import { checkInputSize } from "../util/input-limits.js";
import { HubErrorCode } from "./errors.js";
import { isAbort, safeUrl, stripQuery } from "./internal/util.js";

/** Defaults of the Hub client's timeouts and answer limit (overridable through {@link RetryOptions}). */
export const HUB_DEFAULTS = {
  /** From sending a request to its response headers. */
  connectTimeoutMs: 30_000,
  /** Longest wait for the next body bytes of a response being read. */
  idleTimeoutMs: 60_000,
  /**
   * The most bytes of a Hub API answer (`/api/...`: JSON the client parses with JSON.parse, whose memory
   * grows ~35x on hostile shapes; real answers are KBs).
   */
  maxAnswerBytes: 4 * 1024 * 1024,
} as const;

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
  /**
   * Longest wait from sending a request to its response headers (connect, TLS, server think time), plus
   * the time its body takes at 64 KiB/s (a streamed body of unknown size has no headers wait); a request
   * past it is retried like a failed connection, then ends in HUB_TIMEOUT. Not scaled by `delayScale`.
   * @default 30000
   */
  connectTimeoutMs?: number;
  /** Longest wait for the next bytes of a response body; past it the read ends in HUB_TIMEOUT. @default 60000 */
  idleTimeoutMs?: number;
  /** The most bytes of a Hub API answer (`/api/...`), by Content-Length and as read. @default 4 MiB (IO_TOO_LARGE) */
  maxAnswerBytes?: number;
}

/** A retry about to happen (reported through the operation's progress events). */
export interface RetryEvent {
  type: "retry";
  /** 1 for the first retry. */
  attempt: number;
  maxRetries: number;
  /** Wait before the retry, after scaling. */
  delayMs: number;
  /** Why: `HTTP 503`, `HTTP 429`, `connection failed`, `timed out`, `connection cut`, `digest mismatch`. */
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
    connectTimeoutMs: n(retry.connectTimeoutMs, HUB_DEFAULTS.connectTimeoutMs, 1),
    idleTimeoutMs: n(retry.idleTimeoutMs, HUB_DEFAULTS.idleTimeoutMs, 1),
    maxAnswerBytes: n(retry.maxAnswerBytes, HUB_DEFAULTS.maxAnswerBytes, 0),
  };
}

/** The slowest upload rate the headers wait allows for a request body (64 KiB/s). */
const MIN_UPLOAD_BYTES_PER_S = 64 * 1024;

/**
 * How long to wait for response headers: the connect timeout, plus the time a body of known size takes at
 * {@link MIN_UPLOAD_BYTES_PER_S} (the server answers only once the body is in); no limit for a streamed
 * body of unknown size (its answer is then bounded by the idle timeout only).
 */
function headersWait(body: BodyInit | null | undefined, connectMs: number): number | undefined {
  if (body === undefined || body === null) return connectMs;
  const size =
    typeof body === "string"
      ? body.length * 3
      : body instanceof Blob
        ? body.size
        : ArrayBuffer.isView(body) || body instanceof ArrayBuffer
          ? body.byteLength
          : undefined;
  return size === undefined ? undefined : connectMs + Math.ceil((size / MIN_UPLOAD_BYTES_PER_S) * 1000);
}

/** The typed error of a request that timed out (the URL without query or token). */
function timeoutError(kind: "connect" | "idle", ms: number, method: string, url: string, attempts: number): VeraError {
  const what =
    kind === "connect"
      ? `no answer within ${ms} ms (connect timeout)`
      : `the answer stalled: no bytes for ${ms} ms (idle timeout)`;
  return new VeraError(
    HubErrorCode.HUB_TIMEOUT,
    `${method} ${safeUrl(url)}: ${what}${attempts > 1 ? ` after ${attempts} attempt(s)` : ""}`,
    { path: safeUrl(url), expected: `an answer within ${ms} ms`, received: "nothing" },
  );
}

/**
 * The response with its body read through a guard: each read waits at most `idleMs` for bytes (then
 * the request is aborted and the read fails with HUB_TIMEOUT), and at most `maxBytes` are let through
 * (IO_TOO_LARGE, checked on Content-Length before anything is read, then as bytes arrive).
 */
function guardBody(
  res: Response,
  p: { idleMs: number; maxBytes?: number; abort: () => void; method: string; url: string },
): Response {
  const body = res.body;
  if (!body) return res;
  const tooLarge = (size: number): void =>
    checkInputSize({ size, limit: p.maxBytes!, path: safeUrl(p.url), what: "Hub answer" });
  const announced = Number(res.headers.get("Content-Length") ?? NaN);
  if (p.maxBytes !== undefined && Number.isFinite(announced)) {
    try {
      tooLarge(announced);
    } catch (e) {
      p.abort();
      throw e;
    }
  }
  const reader = body.getReader();
  let total = 0;
  const guarded = new ReadableStream<Uint8Array>({
    async pull(controller) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const stall = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(timeoutError("idle", p.idleMs, p.method, p.url, 1)), p.idleMs);
      });
      try {
        const r = await Promise.race([reader.read(), stall]);
        if (r.done) return controller.close();
        total += r.value.byteLength;
        if (p.maxBytes !== undefined) tooLarge(total);
        controller.enqueue(r.value);
      } catch (e) {
        p.abort();
        reader.cancel().catch(() => {});
        controller.error(e);
      } finally {
        clearTimeout(timer);
      }
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
  const out = new Response(guarded, { status: res.status, statusText: res.statusText, headers: res.headers });
  Object.defineProperty(out, "url", { value: res.url });
  Object.defineProperty(out, "redirected", { value: res.redirected });
  return out;
}

/**
 * Wrap fetch with the Hub retry policy: a 429 is retried after its Retry-After (bounded by
 * `maxDelayMs`), 5xx answers, failed connections and requests without response headers within
 * `connectTimeoutMs` are retried with exponential backoff and jitter for idempotent requests only,
 * each at most `maxRetries` times; a request still unanswered ends in HUB_TIMEOUT. Every body is read
 * with the idle timeout, and API answers (`/api/`) are capped at `maxAnswerBytes` (IO_TOO_LARGE). Error
 * answers are returned (not thrown) after the last attempt so @huggingface/hub builds its usual HubApiError; their X-Error-Code and
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
    const maxBytes = url.pathname.includes("/api/") ? retry.maxAnswerBytes : undefined;
    for (let attempt = 0; ; attempt++) {
      let res: Response;
      const ac = new AbortController();
      let timedOut = false;
      const waitMs = headersWait(body, retry.connectTimeoutMs);
      const timer =
        waitMs === undefined
          ? undefined
          : setTimeout(() => {
              timedOut = true;
              ac.abort();
            }, waitMs);
      try {
        res = await base(input, { ...init, signal: signal ? AbortSignal.any([signal, ac.signal]) : ac.signal });
      } catch (e) {
        if (timedOut && !signal?.aborted) {
          if (!idempotent || attempt >= retry.maxRetries)
            throw timeoutError("connect", waitMs ?? retry.connectTimeoutMs, method, urlText, attempt + 1);
        } else if (isAbort(e) || !idempotent || attempt >= retry.maxRetries) throw e;
        const delay = Math.min(retry.maxDelayMs, backoffDelay(attempt + 1, retry)) * retry.delayScale;
        params.onRetry?.({
          type: "retry",
          attempt: attempt + 1,
          maxRetries: retry.maxRetries,
          delayMs: delay,
          reason: timedOut ? "timed out" : "connection failed",
          method,
          url: safeUrl(urlText),
        });
        await retry.sleep(delay, signal ?? undefined);
        continue;
      } finally {
        clearTimeout(timer);
      }
      res = guardBody(res, {
        idleMs: retry.idleTimeoutMs,
        ...(maxBytes !== undefined ? { maxBytes } : {}),
        abort: () => ac.abort(),
        method,
        url: urlText,
      });
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
      } else if (retryAfterMs !== undefined) {
        // a 5xx with Retry-After (503 during maintenance): at least what it asks, within the cap
        delay = Math.min(retry.maxDelayMs, Math.max(retryAfterMs, backoffDelay(attempt + 1, retry)));
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

/** Internal: download one repository file into memory with resume, retries and digest verification. */
import { isVeraError, VeraError } from "../../errors.js";
import { HubErrorCode } from "../errors.js";
import { backoffDelay, type HubFetch, type RetryEvent } from "../hub-fetch.js";
import { isHubApiError, loadHubLib } from "./hub-lib.js";
import { isAbort, matchesEtag } from "./util.js";

/** Progress of one download. */
export interface DownloadProgressEvent {
  type: "download";
  path: string;
  /** Bytes received so far. */
  bytes: number;
  total: number;
}

export interface DownloadVerifiedParams {
  repo: string;
  path: string;
  /** A commit id, so every file comes from the same snapshot. */
  revision: string;
  hubUrl: string;
  accessToken?: string;
  hubFetch: HubFetch;
  /** What paths-info announced. */
  expected: { size: number; etag: string };
  /** Bytes per ranged request. @default 8388608 */
  chunkSize?: number;
  signal?: AbortSignal;
}

/**
 * Download a file in chunks of `chunkSize` bytes (Range requests when the file is larger than one chunk).
 * A connection cut or a short body resumes from the last complete chunk; the whole result must match
 * the announced size and etag (SHA-256 for LFS files, git SHA-1 otherwise), else it is fetched again,
 * at most `maxRetries` times in all. Yields progress and retry events, returns the bytes.
 */
export async function* downloadVerified(
  p: DownloadVerifiedParams,
): AsyncGenerator<DownloadProgressEvent | RetryEvent, Uint8Array> {
  const { hubFetch } = p;
  const retry = hubFetch.retry;
  const chunk = Math.max(1, Math.floor(p.chunkSize ?? 8 * 1024 * 1024));
  const total = p.expected.size;
  let failures = 0;
  const fail = async function* (reason: string, err?: unknown): AsyncGenerator<RetryEvent, void> {
    failures++;
    if (failures > retry.maxRetries) {
      if (reason === "digest mismatch" || reason === "size mismatch")
        throw new VeraError(
          HubErrorCode.HUB_INTEGRITY,
          `download of ${p.path} from ${p.repo} did not match its ${reason === "size mismatch" ? "announced size" : "digest"} after ${failures} attempt(s); nothing was stored`,
          {
            path: p.path,
            expected: reason === "size mismatch" ? total : p.expected.etag,
          },
        );
      if (err !== undefined && (reason !== "connection cut" || isVeraError(err))) throw err;
      throw new VeraError(
        HubErrorCode.HUB_NETWORK,
        `download of ${p.path} from ${p.repo} failed (${reason}) after ${failures} attempt(s); nothing was stored`,
        { path: p.path },
      );
    }
    const delay = backoffDelay(failures, retry) * retry.delayScale;
    yield {
      type: "retry",
      attempt: failures,
      maxRetries: retry.maxRetries,
      delayMs: delay,
      reason,
      method: "GET",
      url: `${p.hubUrl}/${p.repo}/resolve/${p.revision}/${p.path}`,
    };
    await retry.sleep(delay, p.signal);
  };

  const { downloadFile, fileDownloadInfo } = await loadHubLib();
  for (;;) {
    const info = await fileDownloadInfo({
      repo: p.repo,
      path: p.path,
      revision: p.revision,
      hubUrl: p.hubUrl,
      fetch: hubFetch.fetch,
      ...(p.accessToken ? { accessToken: p.accessToken } : {}),
    });
    if (!info)
      throw new VeraError(HubErrorCode.HUB_FILE_NOT_FOUND, `${p.repo}@${p.revision}/${p.path} does not exist`, {
        path: p.path,
      });
    if (info.size !== total) {
      yield* fail("size mismatch");
      continue;
    }
    const blob = await downloadFile({
      repo: p.repo,
      path: p.path,
      revision: p.revision,
      hubUrl: p.hubUrl,
      fetch: hubFetch.fetch,
      downloadInfo: { ...info, xet: undefined },
      xet: false,
      ...(p.accessToken ? { accessToken: p.accessToken } : {}),
    });
    if (!blob)
      throw new VeraError(HubErrorCode.HUB_FILE_NOT_FOUND, `${p.repo}@${p.revision}/${p.path} does not exist`, {
        path: p.path,
      });
    const out = new Uint8Array(total);
    let offset = 0;
    yield { type: "download", path: p.path, bytes: 0, total };
    while (offset < total) {
      const end = Math.min(total, offset + chunk);
      let part: Uint8Array;
      try {
        part = new Uint8Array(await blob.slice(offset, end).arrayBuffer());
      } catch (e) {
        if (isAbort(e) || isHubApiError(e)) throw e;
        yield* fail("connection cut", e);
        continue; // resume at `offset` with a Range request
      }
      if (part.length !== end - offset) {
        yield* fail("connection cut");
        continue;
      }
      out.set(part, offset);
      offset = end;
      yield { type: "download", path: p.path, bytes: offset, total };
    }
    const ok = await matchesEtag(out, p.expected.etag);
    if (ok === false) {
      yield* fail("digest mismatch");
      continue;
    }
    return out;
  }
}

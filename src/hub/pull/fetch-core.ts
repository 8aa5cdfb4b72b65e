/** Internal: the pull logic shared by fetchAdapter (memory) and pullAdapter (Node cache). */
import { INPUT_LIMITS } from "../../util/input-limits.js";
import { parseStrictJson } from "../../util/strict-json.js";
import { DEFAULT_FILE_NAME } from "../../format/types.js";
import type { FetchAdapterParams, FetchedAdapter, FetchedFile } from "./fetched-adapter.js";
import type { HubProgressEvent } from "../events.js";
import { createHubFetch, type HubFetch } from "../hub-fetch.js";
import { DEFAULT_HUB_URL, resolveHubUrl } from "../hub-url.js";
import { checkRepoId, checkRepoPath, checkRevision } from "../repo-names.js";
import { decodeAdapterFiles, resolveAdapterFiles, resolveRepoFile, type AdapterFileRef } from "./adapter-files.js";
import { drain } from "../../util/event-stream.js";
import { downloadVerified } from "../internal/download-verified.js";
import { toHubError } from "../internal/to-hub-error.js";
import { checkToken } from "../internal/token.js";

/** Internal hook: a local copy of a blob of a repo, by etag (the Node cache provides it). */
export type BlobLookup = (repo: string, ref: AdapterFileRef) => Promise<Uint8Array | undefined>;

/** Internal: the shared pull logic, with an optional local blob lookup. */
export async function fetchAdapterCore(
  params: FetchAdapterParams,
  emit: (e: HubProgressEvent) => void,
  lookup?: BlobLookup,
): Promise<FetchedAdapter> {
  const repo = checkRepoId(params.repo);
  const revision = checkRevision(params.revision ?? "main");
  const filename = checkRepoPath(params.filename ?? DEFAULT_FILE_NAME, "filename");
  const hubUrl = resolveHubUrl({ hubUrl: params.hubUrl ?? DEFAULT_HUB_URL });
  const token = checkToken(params.accessToken, false, `pulling ${repo}`);
  const maxBytes = params.maxBytes ?? 2 ** 31 - 1;
  const hubFetch: HubFetch = createHubFetch({
    ...(params.fetch ? { fetch: params.fetch } : {}),
    ...(params.retry ? { retry: params.retry } : {}),
    ...(params.signal ? { signal: params.signal } : {}),
    onRetry: emit,
  });
  const ctx = { action: `pulling ${repo}`, repo, revision, secrets: [token], hubFetch };

  const getFile = async (fromRepo: string, commit: string, ref: AdapterFileRef): Promise<FetchedFile> => {
    const local = await lookup?.(fromRepo, ref);
    if (local) {
      emit({ type: "cached", path: ref.path });
      return { ...ref, bytes: local };
    }
    const bytes = await drain(
      downloadVerified({
        repo: fromRepo,
        path: ref.path,
        revision: commit,
        hubUrl,
        hubFetch,
        expected: { size: ref.size, etag: ref.etag },
        ...(token ? { accessToken: token } : {}),
        ...(params.chunkSize !== undefined ? { chunkSize: params.chunkSize } : {}),
        ...(params.signal ? { signal: params.signal } : {}),
      }),
      emit,
    );
    return { ...ref, bytes };
  };

  try {
    emit({ type: "phase", phase: "resolving" });
    const resolved = await resolveAdapterFiles({
      repo,
      revision,
      filename,
      hubUrl,
      hubFetch,
      maxBytes,
      ...(token ? { accessToken: token } : {}),
    });
    emit({ type: "phase", phase: "downloading" });
    const files: FetchedFile[] = [];
    for (const ref of resolved.files) files.push(await getFile(repo, resolved.commit, ref));
    emit({ type: "phase", phase: "decoding" });
    let baseConfig: FetchedAdapter["baseConfig"];
    const decoded = await decodeAdapterFiles(
      resolved.format,
      new Map(files.map((f) => [f.path, f.bytes])),
      filename,
      repo,
      async (baseRepo, baseRevision) => {
        emit({
          type: "notice",
          message: `the PEFT adapter does not give its module sizes; reading ${baseRepo}/config.json`,
        });
        const r = await resolveRepoFile({
          repo: baseRepo,
          revision: baseRevision,
          path: "config.json",
          hubUrl,
          hubFetch,
          maxBytes: INPUT_LIMITS.jsonBytes,
          ...(token ? { accessToken: token } : {}),
        });
        if (!r) return undefined;
        const file = await getFile(baseRepo, r.commit, r.ref);
        baseConfig = { repo: baseRepo, revision: baseRevision, commit: r.commit, file };
        return parseStrictJson(new TextDecoder().decode(file.bytes)) as unknown;
      },
    );
    return {
      repo,
      revision,
      commit: resolved.commit,
      format: resolved.format,
      adapter: decoded.adapter,
      bytes: decoded.bytes,
      files,
      ...(baseConfig ? { baseConfig } : {}),
    };
  } catch (e) {
    throw toHubError(e, ctx);
  }
}

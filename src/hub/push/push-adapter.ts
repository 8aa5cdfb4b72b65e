import type { CommitOperation } from "@huggingface/hub";
import { VeraError } from "../../errors.js";
import { DEFAULT_FILE_NAME, type VeraAdapter } from "../../format/types.js";
import { validateVera } from "../../format/validate.js";
import { HubErrorCode } from "../errors.js";
import type { HubProgressEvent } from "../events.js";
import { backoffDelay, createHubFetch, type RetryOptions } from "../hub-fetch.js";
import { DEFAULT_HUB_URL, resolveHubUrl } from "../hub-url.js";
import { channel, drain } from "../internal/channel.js";
import { downloadVerified } from "../internal/download-verified.js";
import { isHubApiError, loadHubLib, statusOf } from "../internal/hub-lib.js";
import { exportPeftFiles } from "./export-peft-files.js";
import { toHubError } from "../internal/to-hub-error.js";
import { checkToken } from "../internal/token.js";
import { gitBlobSha1Of, isAbort, sha256Of } from "../internal/util.js";
import { isGeneratedModelCard, renderModelCard } from "./model-card.js";
import { checkRepoId, checkRepoPath, checkRevision } from "../repo-names.js";

/** Parameters of {@link pushAdapter}. */
export interface PushAdapterParams {
  /** Target model repository `namespace/name`. */
  repo: string;
  /** The verakit file's bytes. Validated before anything is sent; an invalid file sends nothing. */
  file: Uint8Array;
  /** Access token with the write role (`hf_...`). */
  accessToken: string;
  /** Hub endpoint without trailing slash. @default "https://huggingface.co" */
  hubUrl?: string;
  /** fetch to use (proxies, tests). @default globalThis.fetch */
  fetch?: typeof fetch;
  /** Branch to commit to. @default "main" */
  branch?: string;
  /** Create the repository (and the branch) when missing. Without it a missing repo is an error. @default false */
  create?: boolean;
  /** Visibility of a repository created by this call (an existing repo keeps its own). @default the namespace's default */
  private?: boolean;
  /** Also upload a PEFT copy (adapter_config.json + adapter_model.safetensors) so PeftModel.from_pretrained loads the repo. @default false */
  withPeft?: boolean;
  /** Commit title. @default "Upload VeRA adapter with verakit" */
  message?: string;
  /** Commit description. @default none */
  description?: string;
  /** Path of the verakit file in the repo. @default "adapter.vera.safetensors" */
  filename?: string;
  /**
   * README.md handling: `auto` writes a card when there is none and refreshes one verakit generated,
   * but keeps a card a person wrote; `overwrite` replaces any card; `skip` leaves README.md alone.
   * @default "auto"
   */
  modelCard?: "auto" | "overwrite" | "skip";
  /** Base model id for the card; overrides the adapter's. @default the adapter's baseModel.id */
  baseModel?: string;
  /** Retry policy for 429, 5xx and cut connections. @default see {@link RetryOptions} */
  retry?: RetryOptions;
  /** Aborts the push (a commit already sent may still land). */
  signal?: AbortSignal;
  /** Progress callback (for the promise form). */
  onProgress?: (event: HubProgressEvent) => void;
}

/** One uploaded file. */
export interface PushedFile {
  path: string;
  size: number;
  sha256: string;
}

/** Result of {@link pushAdapter}. */
export interface PushResult {
  repo: string;
  branch: string;
  /** Commit id now holding the files. */
  commit: string;
  commitUrl: string;
  /** Web address of the repository. */
  repoUrl: string;
  files: PushedFile[];
  /** What happened to README.md. */
  modelCard: "created" | "updated" | "overwritten" | "kept" | "skipped";
  repoCreated: boolean;
  branchCreated: boolean;
  /**
   * True when the commit request failed in transit (5xx, cut connection) and the files were then found
   * on the branch: the commit had landed. The commit is never sent twice on top of itself: each try
   * names its parent commit.
   */
  recoveredAfterFailure: boolean;
}

const README = "README.md";

async function pushCore(params: PushAdapterParams, emit: (e: HubProgressEvent) => void): Promise<PushResult> {
  const repo = checkRepoId(params.repo);
  const branch = checkRevision(params.branch ?? "main", "branch");
  const filename = checkRepoPath(params.filename ?? DEFAULT_FILE_NAME, "filename");
  if (filename === README || filename === "adapter_config.json" || filename === "adapter_model.safetensors")
    throw new VeraError("ARG_INVALID", `filename: "${filename}" is reserved for the model card or the PEFT copy`, {
      path: "filename",
    });
  const hubUrl = resolveHubUrl({ hubUrl: params.hubUrl ?? DEFAULT_HUB_URL });
  const token = checkToken(params.accessToken, true, `pushing to ${repo}`)!;
  const modelCard = params.modelCard ?? "auto";

  emit({ type: "phase", phase: "validating" });
  const v = validateVera(params.file);
  if (!v.ok || !v.adapter) {
    const first = v.issues[0];
    throw VeraError.fromIssues(
      v.issues,
      `not pushing: the file is not a valid verakit file: ${first?.message ?? "invalid"}${v.issues.length > 1 ? ` (and ${v.issues.length - 1} more issue(s))` : ""}`,
    );
  }
  const adapter: VeraAdapter = v.adapter;

  const hubFetch = createHubFetch({
    ...(params.fetch ? { fetch: params.fetch } : {}),
    ...(params.retry ? { retry: params.retry } : {}),
    ...(params.signal ? { signal: params.signal } : {}),
    onRetry: emit,
  });
  const cred = { accessToken: token, hubUrl, fetch: hubFetch.fetch };
  const ctx = {
    action: `pushing to ${repo}`,
    repo,
    revision: branch,
    secrets: [token],
    hubFetch,
    ...(params.create
      ? {}
      : {
          repoMissingHint: "pass create: true (vera push --create) to create it",
          revisionMissingHint: "pass create: true (vera push --create) to create the branch",
        }),
  };

  try {
    const { commitIter, createBranch, createRepo, modelInfo, pathsInfo } = await loadHubLib();
    // Files to upload, prepared before any network call.
    const files = new Map<string, Uint8Array>([[filename, params.file]]);
    if (params.withPeft) {
      const peft = await exportPeftFiles(adapter);
      for (const w of peft.warnings) emit({ type: "notice", message: `PEFT copy: ${w}` });
      files.set("adapter_config.json", peft.config);
      files.set("adapter_model.safetensors", peft.weights);
    }

    let repoCreated = false;
    let branchCreated = false;
    if (params.create) {
      emit({ type: "phase", phase: "creating-repo" });
      try {
        await createRepo({
          repo,
          ...cred,
          ...(params.private !== undefined ? { visibility: params.private ? "private" : "public" } : {}),
        });
        repoCreated = true;
      } catch (e) {
        if (statusOf(e) !== 409) throw e;
        emit({ type: "notice", message: `${repo} already exists; pushing to it` });
      }
    }

    const headOf = async (): Promise<{ sha: string; private: boolean }> => {
      const info = await modelInfo({ name: repo, revision: branch, additionalFields: ["sha"], ...cred });
      const sha = (info as { sha?: unknown }).sha;
      if (typeof sha !== "string" || !/^[0-9a-f]{40}$/.test(sha))
        throw new VeraError(
          HubErrorCode.HUB_BAD_RESPONSE,
          `the Hub did not give the head commit of ${repo}@${branch}`,
          { path: repo },
        );
      return { sha, private: info.private };
    };

    let head: { sha: string; private: boolean };
    try {
      head = await headOf();
    } catch (e) {
      if (
        !(
          params.create &&
          statusOf(e) === 404 &&
          isHubApiError(e) &&
          hubFetch.errorInfo(e.url)?.errorCode === "RevisionNotFound"
        )
      )
        throw e;
      emit({ type: "phase", phase: "creating-branch" });
      try {
        await createBranch({ repo, branch, ...cred });
        branchCreated = true;
      } catch (e2) {
        if (statusOf(e2) !== 409) throw e2;
      }
      head = await headOf();
    }
    if (params.private === true && !head.private && !repoCreated)
      emit({
        type: "notice",
        message: `${repo} exists and is public; private only applies to a repository this push creates`,
      });

    // Model card.
    let cardAction: PushResult["modelCard"] = "skipped";
    if (modelCard !== "skip") {
      emit({ type: "phase", phase: "checking-card" });
      const [existing] = await pathsInfo({ repo, paths: [README], revision: head.sha, ...cred });
      let existingText: string | undefined;
      if (existing && existing.path === README) {
        const etag = existing.lfs?.oid ?? existing.oid ?? "";
        const bytes = await drain(
          downloadVerified({
            repo,
            path: README,
            revision: head.sha,
            hubUrl,
            accessToken: token,
            hubFetch,
            expected: { size: existing.size, etag },
            ...(params.signal ? { signal: params.signal } : {}),
          }),
          emit,
        );
        existingText = new TextDecoder().decode(bytes);
      }
      const card = renderModelCard({
        adapter,
        repo,
        filename,
        withPeft: params.withPeft ?? false,
        ...(params.baseModel !== undefined ? { baseModel: params.baseModel } : {}),
      });
      if (existingText === undefined) cardAction = "created";
      else if (isGeneratedModelCard({ text: existingText })) cardAction = existingText === card ? "kept" : "updated";
      else if (modelCard === "overwrite") cardAction = "overwritten";
      else {
        cardAction = "kept";
        emit({
          type: "notice",
          message: `kept the existing ${README} (written by a person); use modelCard: "overwrite" (--overwrite-card) to replace it`,
        });
      }
      if (cardAction !== "kept") files.set(README, new TextEncoder().encode(card));
    }

    const pushed: PushedFile[] = [];
    const digests = new Map<string, { sha256: string; git: string }>();
    for (const [path, bytes] of files) {
      const sha256 = await sha256Of(bytes);
      digests.set(path, { sha256, git: await gitBlobSha1Of(bytes) });
      pushed.push({ path, size: bytes.length, sha256 });
    }
    const operations: CommitOperation[] = [...files].map(([path, bytes]) => ({
      operation: "addOrUpdate",
      path,
      content: new Blob([bytes as Uint8Array<ArrayBuffer>]),
    }));

    const filesAt = async (commit: string): Promise<boolean> => {
      const infos = await pathsInfo({ repo, paths: [...files.keys()], revision: commit, ...cred });
      if (infos.length !== files.size) return false;
      return infos.every((i) => {
        const d = digests.get(i.path);
        return d !== undefined && (i.lfs ? i.lfs.oid === d.sha256 : i.oid === d.git);
      });
    };

    const result = (commit: string, commitUrl: string, recovered: boolean): PushResult => ({
      repo,
      branch,
      commit,
      commitUrl,
      repoUrl: `${hubUrl}/${repo}`,
      files: pushed,
      modelCard: cardAction,
      repoCreated,
      branchCreated,
      recoveredAfterFailure: recovered,
    });

    const retry = hubFetch.retry;
    let recovering = false;
    for (let attempt = 0; ; attempt++) {
      const seen = { phase: "" };
      try {
        const out = await drain(
          commitIter({
            repo,
            operations,
            title: params.message ?? "Upload VeRA adapter with verakit",
            ...(params.description !== undefined ? { description: params.description } : {}),
            branch,
            parentCommit: head.sha,
            useXet: false,
            ...cred,
            ...(params.signal ? { abortSignal: params.signal } : {}),
          }),
          (e) => {
            if (e.event === "phase") {
              seen.phase = e.phase;
              emit({ type: "phase", phase: e.phase === "uploadingLargeFiles" ? "uploading" : e.phase });
            } else if (e.state !== "error")
              emit({ type: "upload", path: e.path, state: e.state, progress: e.progress });
          },
        );
        if (!out)
          throw new VeraError(HubErrorCode.HUB_BAD_RESPONSE, "the Hub did not answer the commit with a commit id");
        return result(out.commit.oid, out.commit.url, recovering);
      } catch (e) {
        const status = statusOf(e);
        const uncertain =
          seen.phase === "committing" &&
          !isAbort(e) &&
          (status === undefined ? e instanceof TypeError : status >= 500 || status === 409 || status === 412);
        if (!uncertain) throw e;
        recovering = true;
        emit({ type: "phase", phase: "verifying-commit" });
        const now = await headOf();
        if (now.sha !== head.sha && (await filesAt(now.sha)))
          return result(now.sha, `${hubUrl}/${repo}/commit/${now.sha}`, true);
        if (attempt >= retry.maxRetries) {
          if (status === 409 || status === 412)
            throw new VeraError(
              HubErrorCode.HUB_CONFLICT,
              `pushing to ${repo}: ${branch} kept moving during the push (${attempt + 1} tries); nothing of this push landed`,
              { path: repo },
            );
          throw e;
        }
        const delay = (status === 409 || status === 412 ? 0 : backoffDelay(attempt + 1, retry)) * retry.delayScale;
        emit({
          type: "retry",
          attempt: attempt + 1,
          maxRetries: retry.maxRetries,
          delayMs: delay,
          reason: status ? `commit HTTP ${status}` : "commit connection failed",
          method: "POST",
          url: `${hubUrl}/api/models/${repo}/commit/${branch}`,
        });
        await retry.sleep(delay, params.signal);
        head = now;
      }
    }
  } catch (e) {
    throw toHubError(e, ctx);
  }
}

/**
 * Push a verakit adapter to a Hub model repository in one commit: the verakit file, a model card
 * (README.md; a card a person wrote is kept unless `modelCard: "overwrite"`), and with `withPeft` a
 * PEFT copy. The file is validated first; a missing repo is created only with `create`. Transient
 * failures are retried within bounds (see {@link RetryOptions}); the commit names its parent, so a
 * retried commit can never land twice. Yields progress events; returns where the files landed.
 */
export function pushAdapterIter(params: PushAdapterParams): AsyncGenerator<HubProgressEvent, PushResult> {
  return channel((emit) => pushCore(params, emit));
}

/** Promise form of {@link pushAdapterIter}; progress goes to `params.onProgress`. */
export function pushAdapter(params: PushAdapterParams): Promise<PushResult> {
  return drain(pushAdapterIter(params), params.onProgress);
}

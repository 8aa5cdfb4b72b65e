import type { CommitOperation } from "@huggingface/hub";
import { VeraError } from "../../errors.js";
import { DEFAULT_FILE_NAME, type VeraAdapter } from "../../format/types.js";
import { validateVera } from "../../format/validate.js";
import { HubErrorCode } from "../errors.js";
import type { HubProgressEvent } from "../events.js";
import { backoffDelay, createHubFetch, type RetryOptions } from "../hub-fetch.js";
import { DEFAULT_HUB_URL, resolveHubUrl } from "../hub-url.js";
import { drain, operationStream } from "../../util/event-stream.js";
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

/** What every stage of a push shares: the checked parameters, the transport and the progress callback. */
interface PushContext {
  params: PushAdapterParams;
  repo: string;
  branch: string;
  filename: string;
  hubUrl: string;
  token: string;
  hubFetch: ReturnType<typeof createHubFetch>;
  cred: { accessToken: string; hubUrl: string; fetch: typeof fetch };
  lib: Awaited<ReturnType<typeof loadHubLib>>;
  emit: (e: HubProgressEvent) => void;
}

/** A branch head: its commit and whether the repository is private. */
interface Head {
  sha: string;
  private: boolean;
}

/** The checked names of a push (repo, branch, file name), before anything is sent. */
function checkNames(params: PushAdapterParams): { repo: string; branch: string; filename: string } {
  const repo = checkRepoId(params.repo);
  const branch = checkRevision(params.branch ?? "main", "branch");
  const filename = checkRepoPath(params.filename ?? DEFAULT_FILE_NAME, "filename");
  if (filename === README || filename === "adapter_config.json" || filename === "adapter_model.safetensors")
    throw new VeraError("ARG_INVALID", `filename: "${filename}" is reserved for the model card or the PEFT copy`, {
      path: "filename",
    });
  return { repo, branch, filename };
}

/** The adapter in the file, or a VeraError carrying every issue: an invalid file sends nothing. */
function validateForPush(file: Uint8Array): VeraAdapter {
  const v = validateVera(file);
  if (!v.ok || !v.adapter) {
    const first = v.issues[0];
    throw VeraError.fromIssues(
      v.issues,
      `not pushing: the file is not a valid verakit file: ${first?.message ?? "invalid"}${v.issues.length > 1 ? ` (and ${v.issues.length - 1} more issue(s))` : ""}`,
    );
  }
  return v.adapter;
}

/** The files to upload (the verakit file, with `withPeft` the PEFT copy), prepared before any network call. */
async function filesToUpload(c: PushContext, adapter: VeraAdapter): Promise<Map<string, Uint8Array>> {
  const files = new Map<string, Uint8Array>([[c.filename, c.params.file]]);
  if (c.params.withPeft) {
    const peft = await exportPeftFiles(adapter);
    for (const w of peft.warnings) c.emit({ type: "notice", message: `PEFT copy: ${w}` });
    files.set("adapter_config.json", peft.config);
    files.set("adapter_model.safetensors", peft.weights);
  }
  return files;
}

/** The head commit of the branch. */
async function headOf(c: PushContext): Promise<Head> {
  const info = await c.lib.modelInfo({ name: c.repo, revision: c.branch, additionalFields: ["sha"], ...c.cred });
  const sha = (info as { sha?: unknown }).sha;
  if (typeof sha !== "string" || !/^[0-9a-f]{40}$/.test(sha))
    throw new VeraError(
      HubErrorCode.HUB_BAD_RESPONSE,
      `the Hub did not give the head commit of ${c.repo}@${c.branch}`,
      {
        path: c.repo,
      },
    );
  return { sha, private: info.private };
}

/** Create the repository (with `create`), then the branch when it is missing; returns the branch head. */
async function openBranch(c: PushContext): Promise<{ head: Head; repoCreated: boolean; branchCreated: boolean }> {
  const { params, repo, branch, cred, emit } = c;
  let repoCreated = false;
  let branchCreated = false;
  if (params.create) {
    emit({ type: "phase", phase: "creating-repo" });
    try {
      await c.lib.createRepo({
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
  let head: Head;
  try {
    head = await headOf(c);
  } catch (e) {
    if (
      !(
        params.create &&
        statusOf(e) === 404 &&
        isHubApiError(e) &&
        c.hubFetch.errorInfo(e.url)?.errorCode === "RevisionNotFound"
      )
    )
      throw e;
    emit({ type: "phase", phase: "creating-branch" });
    try {
      await c.lib.createBranch({ repo, branch, ...cred });
      branchCreated = true;
    } catch (e2) {
      if (statusOf(e2) !== 409) throw e2;
    }
    head = await headOf(c);
  }
  if (params.private === true && !head.private && !repoCreated)
    emit({
      type: "notice",
      message: `${repo} exists and is public; private only applies to a repository this push creates`,
    });
  return { head, repoCreated, branchCreated };
}

/** Decide what happens to README.md (adding the card to `files` when it is to be written). */
async function planModelCard(
  c: PushContext,
  adapter: VeraAdapter,
  head: Head,
  files: Map<string, Uint8Array>,
): Promise<PushResult["modelCard"]> {
  const { params, repo, emit } = c;
  const modelCard = params.modelCard ?? "auto";
  if (modelCard === "skip") return "skipped";
  emit({ type: "phase", phase: "checking-card" });
  const [existing] = await c.lib.pathsInfo({ repo, paths: [README], revision: head.sha, ...c.cred });
  let existingText: string | undefined;
  if (existing && existing.path === README) {
    const etag = existing.lfs?.oid ?? existing.oid ?? "";
    const bytes = await drain(
      downloadVerified({
        repo,
        path: README,
        revision: head.sha,
        hubUrl: c.hubUrl,
        accessToken: c.token,
        hubFetch: c.hubFetch,
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
    filename: c.filename,
    withPeft: params.withPeft ?? false,
    ...(params.baseModel !== undefined ? { baseModel: params.baseModel } : {}),
  });
  let cardAction: PushResult["modelCard"];
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
  return cardAction;
}

/** The uploaded files' records, and each file's digests as the Hub reports them (LFS SHA-256, git SHA-1). */
async function digestFiles(
  files: Map<string, Uint8Array>,
): Promise<{ pushed: PushedFile[]; digests: Map<string, { sha256: string; git: string }> }> {
  const pushed: PushedFile[] = [];
  const digests = new Map<string, { sha256: string; git: string }>();
  for (const [path, bytes] of files) {
    const sha256 = await sha256Of(bytes);
    digests.set(path, { sha256, git: await gitBlobSha1Of(bytes) });
    pushed.push({ path, size: bytes.length, sha256 });
  }
  return { pushed, digests };
}

/**
 * Send the commit on top of `head`, retrying within bounds. A commit that failed in transit is checked
 * first: when the branch moved and holds exactly these files, the commit landed. Returns the commit and
 * whether it was found that way.
 */
async function commitWithRecovery(
  c: PushContext,
  files: Map<string, Uint8Array>,
  digests: Map<string, { sha256: string; git: string }>,
  head: Head,
): Promise<{ commit: string; commitUrl: string; recovered: boolean }> {
  const { params, repo, branch, hubUrl, emit } = c;
  const operations: CommitOperation[] = [...files].map(([path, bytes]) => ({
    operation: "addOrUpdate",
    path,
    content: new Blob([bytes as Uint8Array<ArrayBuffer>]),
  }));
  const filesAt = async (commit: string): Promise<boolean> => {
    const infos = await c.lib.pathsInfo({ repo, paths: [...files.keys()], revision: commit, ...c.cred });
    if (infos.length !== files.size) return false;
    return infos.every((i) => {
      const d = digests.get(i.path);
      return d !== undefined && (i.lfs ? i.lfs.oid === d.sha256 : i.oid === d.git);
    });
  };
  const retry = c.hubFetch.retry;
  let recovering = false;
  for (let attempt = 0; ; attempt++) {
    const seen = { phase: "" };
    try {
      const out = await drain(
        c.lib.commitIter({
          repo,
          operations,
          title: params.message ?? "Upload VeRA adapter with verakit",
          ...(params.description !== undefined ? { description: params.description } : {}),
          branch,
          parentCommit: head.sha,
          useXet: false,
          ...c.cred,
          ...(params.signal ? { abortSignal: params.signal } : {}),
        }),
        (e) => {
          if (e.event === "phase") {
            seen.phase = e.phase;
            emit({ type: "phase", phase: e.phase === "uploadingLargeFiles" ? "uploading" : e.phase });
          } else if (e.state !== "error") emit({ type: "upload", path: e.path, state: e.state, progress: e.progress });
        },
      );
      if (!out)
        throw new VeraError(HubErrorCode.HUB_BAD_RESPONSE, "the Hub did not answer the commit with a commit id");
      return { commit: out.commit.oid, commitUrl: out.commit.url, recovered: recovering };
    } catch (e) {
      const status = statusOf(e);
      const uncertain =
        seen.phase === "committing" &&
        !isAbort(e) &&
        (status === undefined ? e instanceof TypeError : status >= 500 || status === 409 || status === 412);
      if (!uncertain) throw e;
      recovering = true;
      emit({ type: "phase", phase: "verifying-commit" });
      const now = await headOf(c);
      if (now.sha !== head.sha && (await filesAt(now.sha)))
        return { commit: now.sha, commitUrl: `${hubUrl}/${repo}/commit/${now.sha}`, recovered: true };
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
}

async function pushCore(params: PushAdapterParams, emit: (e: HubProgressEvent) => void): Promise<PushResult> {
  const { repo, branch, filename } = checkNames(params);
  const hubUrl = resolveHubUrl({ hubUrl: params.hubUrl ?? DEFAULT_HUB_URL });
  const token = checkToken(params.accessToken, true, `pushing to ${repo}`)!;
  emit({ type: "phase", phase: "validating" });
  const adapter = validateForPush(params.file);
  const hubFetch = createHubFetch({
    ...(params.fetch ? { fetch: params.fetch } : {}),
    ...(params.retry ? { retry: params.retry } : {}),
    ...(params.signal ? { signal: params.signal } : {}),
    onRetry: emit,
  });
  const cred = { accessToken: token, hubUrl, fetch: hubFetch.fetch };
  const errorContext = {
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
    const lib = await loadHubLib();
    const c: PushContext = { params, repo, branch, filename, hubUrl, token, hubFetch, cred, lib, emit };
    const files = await filesToUpload(c, adapter);
    const { head, repoCreated, branchCreated } = await openBranch(c);
    const modelCard = await planModelCard(c, adapter, head, files);
    const { pushed, digests } = await digestFiles(files);
    const { commit, commitUrl, recovered } = await commitWithRecovery(c, files, digests, head);
    return {
      repo,
      branch,
      commit,
      commitUrl,
      repoUrl: `${hubUrl}/${repo}`,
      files: pushed,
      modelCard,
      repoCreated,
      branchCreated,
      recoveredAfterFailure: recovered,
    };
  } catch (e) {
    throw toHubError(e, errorContext);
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
  return operationStream(params, pushCore);
}

/** Promise form of {@link pushAdapterIter}; progress goes to `params.onProgress`. */
export function pushAdapter(params: PushAdapterParams): Promise<PushResult> {
  return drain(pushAdapterIter(params), params.onProgress);
}

import { VeraError } from "../../errors.js";
import type { RetryOptions } from "../hub-fetch.js";
import { resolveHubUrl } from "../hub-url.js";
import { checkToken } from "../internal/token.js";
import { resolveHubToken } from "./resolve-hub-token.js";

/** Parameters of {@link resolveHubSettings}. */
export interface ResolveHubSettingsParams {
  /** Explicit endpoint (`--hub-url`). @default HF_ENDPOINT, else the public Hub */
  hubUrl?: string;
  /** Explicit token (`--token`). @default HF_TOKEN, else the token file */
  token?: string;
  /** Fail with HUB_TOKEN_MISSING when no token is found. @default false */
  requireToken?: boolean;
  /** Environment. @default process.env */
  env?: Readonly<Record<string, string | undefined>>;
}

/** Endpoint, token and retry settings for a Hub call. */
export interface HubSettings {
  hubUrl: string;
  accessToken?: string;
  /** Where the token came from (never the token). */
  tokenSource?: string;
  retry: RetryOptions;
}

/**
 * Resolve what a Hub command needs from options and the environment, as Python's huggingface_hub does
 * (HF_ENDPOINT, HF_TOKEN, HF_HOME/token), plus verakit knobs: VERAKIT_HUB_MAX_RETRIES (retries per
 * request, default 4), VERAKIT_HUB_RETRY_SCALE (factor on every retry wait, default 1; 0 = no waits),
 * VERAKIT_HUB_CONNECT_TIMEOUT_MS (until response headers, default 30000) and VERAKIT_HUB_IDLE_TIMEOUT_MS
 * (longest wait for body bytes, default 60000).
 * The token's shape is checked (HUB_TOKEN_INVALID, without echoing it).
 */
export async function resolveHubSettings(params: ResolveHubSettingsParams = {}): Promise<HubSettings> {
  const env = params.env ?? process.env;
  const hubUrl = resolveHubUrl({ ...(params.hubUrl !== undefined ? { hubUrl: params.hubUrl } : {}), env });
  const found = await resolveHubToken({ ...(params.token !== undefined ? { token: params.token } : {}), env });
  const accessToken = checkToken(found?.token, params.requireToken ?? false, "the Hub");
  const retry: RetryOptions = {};
  const num = (name: string): number | undefined => {
    const v = env[name];
    if (v === undefined || v === "") return undefined;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0)
      throw new VeraError("ARG_INVALID", `${name} must be a non-negative number`, { path: name, received: v });
    return n;
  };
  const maxRetries = num("VERAKIT_HUB_MAX_RETRIES");
  const scale = num("VERAKIT_HUB_RETRY_SCALE");
  if (maxRetries !== undefined) retry.maxRetries = Math.floor(Math.min(maxRetries, 20));
  if (scale !== undefined) retry.delayScale = scale;
  const connect = num("VERAKIT_HUB_CONNECT_TIMEOUT_MS");
  const idle = num("VERAKIT_HUB_IDLE_TIMEOUT_MS");
  if (connect !== undefined && connect > 0) retry.connectTimeoutMs = connect;
  if (idle !== undefined && idle > 0) retry.idleTimeoutMs = idle;
  return { hubUrl, retry, ...(accessToken ? { accessToken, tokenSource: found!.source } : {}) };
}

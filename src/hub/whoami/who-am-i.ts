import { createHubFetch, type RetryOptions } from "../hub-fetch.js";
import { DEFAULT_HUB_URL, resolveHubUrl } from "../hub-url.js";
import { loadHubLib } from "../internal/hub-lib.js";
import { toHubError } from "../internal/to-hub-error.js";
import { checkToken } from "../internal/token.js";

/** Parameters of {@link hubWhoAmI}. */
export interface HubWhoAmIParams {
  /** Access token (`hf_...`). */
  accessToken: string;
  /** Hub endpoint without trailing slash. @default "https://huggingface.co" */
  hubUrl?: string;
  /** fetch to use. @default globalThis.fetch */
  fetch?: typeof fetch;
  /** Retry policy. @default see {@link RetryOptions} */
  retry?: RetryOptions;
}

/** Who a token belongs to (never the token itself). */
export interface HubIdentity {
  name: string;
  type: "user" | "org" | "app";
  fullname?: string;
  /** Organizations the account belongs to. */
  orgs: string[];
  /** `read`, `write` or `fineGrained`, when the Hub says. */
  tokenRole?: string;
  /** The token's display name on the Hub, when it has one. */
  tokenName?: string;
}

/** Ask the Hub who the token belongs to (GET /api/whoami-v2). */
export async function hubWhoAmI(params: HubWhoAmIParams): Promise<HubIdentity> {
  const hubUrl = resolveHubUrl({ hubUrl: params.hubUrl ?? DEFAULT_HUB_URL });
  const token = checkToken(params.accessToken, true, "whoami")!;
  const hubFetch = createHubFetch({
    ...(params.fetch ? { fetch: params.fetch } : {}),
    ...(params.retry ? { retry: params.retry } : {}),
  });
  try {
    const { whoAmI } = await loadHubLib();
    const me = await whoAmI({ accessToken: token, hubUrl, fetch: hubFetch.fetch });
    const orgs = "orgs" in me && Array.isArray(me.orgs) ? me.orgs.map((o) => String(o.name)) : [];
    const id: HubIdentity = { name: String(me.name), type: me.type, orgs };
    if ("fullname" in me && typeof me.fullname === "string") id.fullname = me.fullname;
    if (me.auth?.accessToken?.role) id.tokenRole = String(me.auth.accessToken.role);
    if (me.auth?.accessToken?.displayName) id.tokenName = String(me.auth.accessToken.displayName);
    return id;
  } catch (e) {
    throw toHubError(e, { action: "whoami", secrets: [token], hubFetch });
  }
}

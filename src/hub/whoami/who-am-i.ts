import { VeraError } from "../../errors.js";
import { HubErrorCode } from "../errors.js";
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

/**
 * Who a token belongs to: only fields that cannot carry token material. Free-text fields of the answer
 * (the account's full name, the token's display name) are not reported, since a server (or a careless
 * display name) can put a token there; names are kept only when they follow the Hub's name rules.
 */
export interface HubIdentity {
  /** The account's name (Hub name rules: letters, digits, `_ - .`, at most 96; never token-shaped). */
  name: string;
  type: "user" | "org" | "app";
  /** Organizations the account belongs to (names that break the Hub's rules are left out). */
  orgs: string[];
  /** Organizations left out of `orgs` because their names break the rules (or look like a token). */
  orgsOmitted?: number;
  /** `read`, `write` or `fineGrained`, when the Hub says. */
  tokenRole?: "read" | "write" | "fineGrained";
}

const HUB_NAME = /^[A-Za-z0-9_.-]{1,96}$/;
/** Anything shaped like a Hugging Face token (`hf_` + 8 or more letters and digits) or an old `api_` key. */
const TOKEN_LIKE = /(hf|api)_[A-Za-z0-9]{8,}/i;

/** A name that follows the Hub's rules and cannot be token material (not the token, not token-shaped). */
function isSafeName(v: unknown, token: string): v is string {
  return (
    typeof v === "string" &&
    HUB_NAME.test(v) &&
    !/^[-.]|[-.]$/.test(v) &&
    !v.includes("--") &&
    !v.includes("..") &&
    !TOKEN_LIKE.test(v) &&
    !v.includes(token) &&
    !(v.length >= 8 && token.includes(v))
  );
}

/** The identity of a whoami-v2 answer, keeping only what cannot carry token material. */
export function identityFromAnswer(me: unknown, token: string): HubIdentity {
  const o = (typeof me === "object" && me !== null ? me : {}) as Record<string, unknown>;
  if (!isSafeName(o["name"], token))
    throw new VeraError(
      HubErrorCode.HUB_BAD_RESPONSE,
      "whoami: the Hub's answer names the account with something that is not a Hub name (or looks like a token); not shown",
      { path: "name", expected: "a Hub name: 1-96 letters, digits, _ - ." },
    );
  const type = o["type"] === "org" || o["type"] === "app" ? o["type"] : "user";
  const all = Array.isArray(o["orgs"]) ? (o["orgs"] as unknown[]) : [];
  const orgs = all
    .map((g) => (typeof g === "object" && g !== null ? (g as Record<string, unknown>)["name"] : undefined))
    .filter((n): n is string => isSafeName(n, token));
  const id: HubIdentity = { name: o["name"], type, orgs };
  if (orgs.length < all.length) id.orgsOmitted = all.length - orgs.length;
  const auth = o["auth"] as { accessToken?: { role?: unknown } } | undefined;
  const role = typeof auth === "object" && auth !== null ? auth.accessToken?.role : undefined;
  if (role === "read" || role === "write" || role === "fineGrained") id.tokenRole = role;
  return id;
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
    return identityFromAnswer(await whoAmI({ accessToken: token, hubUrl, fetch: hubFetch.fetch }), token);
  } catch (e) {
    throw toHubError(e, { action: "whoami", secrets: [token], hubFetch });
  }
}

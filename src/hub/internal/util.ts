/** Internal helpers of the Hub client; not part of the public API. */
import { redactSecrets } from "../redact.js";

/** True for an AbortError / TimeoutError. */
export function isAbort(e: unknown): boolean {
  const name = typeof e === "object" && e !== null ? (e as { name?: unknown }).name : undefined;
  return name === "AbortError" || name === "TimeoutError";
}

/** A URL without its query. */
export const stripQuery = (u: string): string => u.split("?")[0] ?? u;

/** A URL safe to show: query dropped, credentials and token-like parts removed. */
export function safeUrl(u: string): string {
  return redactSecrets({ text: stripQuery(u) });
}

/** Lowercase hex of bytes. */
export function hex(bytes: ArrayBuffer | Uint8Array): string {
  const b = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  let s = "";
  for (let i = 0; i < b.length; i++) s += b[i]!.toString(16).padStart(2, "0");
  return s;
}

/** SHA-256 of bytes, hex (WebCrypto: Node 20 and browsers). */
export async function sha256Of(bytes: Uint8Array): Promise<string> {
  return hex(await globalThis.crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
}

/** Git blob SHA-1 (`blob <size>\0<content>`), the oid the Hub reports for files not stored with LFS. */
export async function gitBlobSha1Of(bytes: Uint8Array): Promise<string> {
  const head = new TextEncoder().encode(`blob ${bytes.length}\0`);
  const all = new Uint8Array(head.length + bytes.length);
  all.set(head, 0);
  all.set(bytes, head.length);
  return hex(await globalThis.crypto.subtle.digest("SHA-1", all));
}

/** Check bytes against a Hub etag: 64 hex digits = SHA-256 (LFS), 40 = git blob SHA-1. Unknown shapes give undefined. */
export async function matchesEtag(bytes: Uint8Array, etag: string): Promise<boolean | undefined> {
  if (/^[0-9a-f]{64}$/.test(etag)) return (await sha256Of(bytes)) === etag;
  if (/^[0-9a-f]{40}$/.test(etag)) return (await gitBlobSha1Of(bytes)) === etag;
  return undefined;
}

/**
 * Internal: @huggingface/hub, loaded on first use, so importing verakit (or starting the CLI for a
 * command that never talks to the Hub) does not load it.
 */
type HubLib = typeof import("@huggingface/hub");

let lib: Promise<HubLib> | undefined;

/** The @huggingface/hub module. */
export function loadHubLib(): Promise<HubLib> {
  lib ??= import("@huggingface/hub");
  return lib;
}

/** True for an error @huggingface/hub threw for an HTTP error answer (HubApiError), by shape. */
export function isHubApiError(
  e: unknown,
): e is { statusCode: number; url: string; requestId?: string; message: string } {
  return (
    typeof e === "object" &&
    e !== null &&
    typeof (e as { statusCode?: unknown }).statusCode === "number" &&
    typeof (e as { url?: unknown }).url === "string"
  );
}

/** The HTTP status of a HubApiError, else undefined. */
export function statusOf(e: unknown): number | undefined {
  return isHubApiError(e) ? e.statusCode : undefined;
}

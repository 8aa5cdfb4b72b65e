import type { HubProgressEvent } from "../hub/events.js";

/** Parameters of {@link formatHubEvent}. */
export interface FormatHubEventParams {
  event: HubProgressEvent;
  /** Include per-chunk download/upload progress lines (a TTY display wants them; a log does not). @default false */
  verbose?: boolean;
}

const mib = (n: number): string => (n >= 1024 * 1024 ? `${(n / 1024 / 1024).toFixed(1)} MiB` : `${n} B`);

/** One human-readable line for a progress event, or undefined for events not worth a line. Never contains a token. */
export function formatHubEvent(params: FormatHubEventParams): string | undefined {
  const e = params.event;
  switch (e.type) {
    case "phase":
      return e.phase.replace(/-/g, " ") + "...";
    case "retry":
      return `${e.reason} from ${e.method} ${e.url}; retry ${e.attempt}/${e.maxRetries} in ${(e.delayMs / 1000).toFixed(1)} s`;
    case "notice":
      return e.message;
    case "cached":
      return `${e.path}: found in the cache`;
    case "download":
      if (e.bytes === e.total) return `${e.path}: ${mib(e.total)} downloaded`;
      return params.verbose ? `${e.path}: ${mib(e.bytes)} / ${mib(e.total)}` : undefined;
    case "upload":
      if (e.progress >= 1 && e.state === "uploading") return `${e.path}: uploaded`;
      return params.verbose ? `${e.path}: ${e.state} ${Math.round(e.progress * 100)}%` : undefined;
  }
}

/** The parameters and results of a pull: {@link fetchAdapter} in memory, pullAdapter through the Node cache. */
import type { VeraAdapter } from "../../format/types.js";
import type { HubProgressEvent } from "../events.js";
import type { RetryOptions } from "../hub-fetch.js";

/** Parameters of `fetchAdapter`. */
export interface FetchAdapterParams {
  /** Model repository `namespace/name`. */
  repo: string;
  /** Branch, tag or commit id. @default "main" */
  revision?: string;
  /** Access token (`hf_...`), needed for private and gated repos. @default none */
  accessToken?: string;
  /** Hub endpoint without trailing slash. @default "https://huggingface.co" */
  hubUrl?: string;
  /** fetch to use (proxies, tests). @default globalThis.fetch */
  fetch?: typeof fetch;
  /** Name of the verakit file in the repo. @default "adapter.vera.safetensors" */
  filename?: string;
  /** Retry policy for 429, 5xx and cut connections. @default see {@link RetryOptions} */
  retry?: RetryOptions;
  /** Bytes per ranged download request; a cut connection resumes from the last whole chunk. @default 8388608 */
  chunkSize?: number;
  /** Largest file accepted. @default 2147483647 */
  maxBytes?: number;
  /** Aborts the operation (waits included). */
  signal?: AbortSignal;
  /** Progress callback (for the promise form). */
  onProgress?: (event: HubProgressEvent) => void;
}

/** One downloaded file. */
export interface FetchedFile {
  path: string;
  size: number;
  /** SHA-256 (LFS) or git blob SHA-1 the bytes were checked against. */
  etag: string;
  bytes: Uint8Array;
}

/** Result of `fetchAdapter`. */
export interface FetchedAdapter {
  repo: string;
  revision: string;
  /** The commit the revision resolved to; every file comes from it. */
  commit: string;
  /** `vera`: the repo holds a verakit file; `peft`: a PEFT VeRA adapter, imported. */
  format: "vera" | "peft";
  adapter: VeraAdapter;
  /** The verakit file: the downloaded bytes, or the converted PEFT adapter. */
  bytes: Uint8Array;
  files: FetchedFile[];
  /** The base model's config.json, when it was needed to size the modules of a PEFT adapter. */
  baseConfig?: { repo: string; revision: string; commit: string; file: FetchedFile };
}

import type { RetryEvent } from "./hub-fetch.js";

/** A step of a push or pull. */
export interface PhaseEvent {
  type: "phase";
  phase:
    | "validating"
    | "resolving"
    | "downloading"
    | "decoding"
    | "caching"
    | "creating-repo"
    | "creating-branch"
    | "checking-card"
    | "preuploading"
    | "uploading"
    | "committing"
    | "verifying-commit";
}

/** Bytes received for one file. */
export interface DownloadEvent {
  type: "download";
  path: string;
  bytes: number;
  total: number;
}

/** Hashing or upload progress of one file, 0 to 1. */
export interface UploadEvent {
  type: "upload";
  path: string;
  state: "hashing" | "uploading";
  progress: number;
}

/** A file was taken from the local cache (its digest checked) instead of downloaded. */
export interface CachedEvent {
  type: "cached";
  path: string;
}

/** Something the user should know that is not an error (a kept model card, an existing repo). */
export interface NoticeEvent {
  type: "notice";
  message: string;
}

/** Every progress event of the Hub operations. */
export type HubProgressEvent = PhaseEvent | DownloadEvent | UploadEvent | CachedEvent | NoticeEvent | RetryEvent;

/** Internal: the messages between {@link createWorkerBackend} and its worker thread (src/compute/node/merge-worker.ts). */
import type { MergeTask, MergeTaskResult } from "../backend.js";

/** What the worker thread starts with (its `workerData`). */
export interface MergeWorkerInit {
  threads?: number;
  spinning?: boolean;
  blockBytes?: number;
}

/** A shared projection slice: its data the first time the worker sees it, afterwards only its id. */
export interface SharedArrayRef {
  id: number;
  data?: Float32Array;
}

/** One task as posted: the weight is a view of a SharedArrayBuffer the worker merges in place. */
export type PostedTask = Omit<MergeTask, "weight" | "a" | "b"> & {
  buffer: SharedArrayBuffer;
  byteOffset: number;
  byteLength: number;
  a: SharedArrayRef;
  b: SharedArrayRef;
};

/** A typed error as it crosses the thread boundary. */
export interface PostedError {
  veraCode?: string;
  message: string;
  path?: string;
  expected?: unknown;
  received?: unknown;
  issues?: unknown[];
}

/** Main thread to worker. */
export type ToWorker = { type: "merge"; id: number; tasks: PostedTask[] } | { type: "dispose" };

/** Worker to main thread. */
export type FromWorker =
  | { type: "ready"; device: string }
  | { type: "start-failed"; error: PostedError }
  | { type: "merged"; id: number; results?: MergeTaskResult[]; error?: PostedError }
  | { type: "disposed" };

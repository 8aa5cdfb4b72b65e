/**
 * Node-only: the worker thread of {@link createWorkerBackend}. It runs the onnxruntime CPU backend (its sessions, the
 * WebAssembly staging and the overflow pre-scan) on the weights the main thread shares with it, merging them in place.
 */
import { parentPort, workerData } from "node:worker_threads";
import { isVeraError } from "../../errors.js";
import type { ComputeBackend, MergeTask } from "../backend.js";
import type { FromWorker, MergeWorkerInit, PostedError, PostedTask, ToWorker } from "./merge-worker-protocol.js";
import { createOrtBackend } from "./ort-backend.js";

/** A thrown value as it crosses the thread boundary (a VeraError keeps its code, message and details). */
function postedError(e: unknown): PostedError {
  if (isVeraError(e))
    return {
      veraCode: e.code,
      message: e.message,
      issues: e.issues,
      ...(e.path !== undefined ? { path: e.path } : {}),
      ...(e.expected !== undefined ? { expected: e.expected } : {}),
      ...(e.received !== undefined ? { received: e.received } : {}),
    };
  return { message: e instanceof Error ? e.message : String(e) };
}

/** The shared projection slices by id, the same object every time (the sessions pre-pack A per object). */
const arrays = new Map<number, Float32Array>();

function sharedArray(ref: { id: number; data?: Float32Array }): Float32Array {
  if (ref.data) arrays.set(ref.id, ref.data);
  const a = arrays.get(ref.id);
  if (!a) throw new Error(`internal: projection slice ${ref.id} was never sent`);
  return a;
}

function toTask(t: PostedTask): MergeTask {
  const { buffer, byteOffset, byteLength, a, b, ...rest } = t;
  return { ...rest, weight: new Uint8Array(buffer, byteOffset, byteLength), a: sharedArray(a), b: sharedArray(b) };
}

async function main(): Promise<void> {
  const port = parentPort;
  if (!port) return;
  const post = (m: FromWorker): void => port.postMessage(m);
  const init = (workerData ?? {}) as MergeWorkerInit;
  let backend: ComputeBackend;
  try {
    backend = await createOrtBackend({
      executionProvider: "cpu",
      ...(init.threads !== undefined ? { threads: init.threads } : {}),
      ...(init.spinning !== undefined ? { spinning: init.spinning } : {}),
      ...(init.blockBytes !== undefined ? { blockBytes: init.blockBytes } : {}),
    });
  } catch (e) {
    post({ type: "start-failed", error: postedError(e) });
    return;
  }
  port.on("message", (m: ToWorker) => {
    if (m.type === "dispose") {
      void Promise.resolve(backend.dispose?.())
        .catch(() => {})
        .then(() => post({ type: "disposed" }));
      return;
    }
    let tasks: MergeTask[];
    try {
      tasks = m.tasks.map(toTask);
    } catch (e) {
      post({ type: "merged", id: m.id, error: postedError(e) });
      return;
    }
    backend.merge(tasks).then(
      (results) => post({ type: "merged", id: m.id, results }),
      (e: unknown) => post({ type: "merged", id: m.id, error: postedError(e) }),
    );
  });
  post({ type: "ready", device: backend.info?.device ?? "cpu (onnxruntime-node)" });
}

void main();

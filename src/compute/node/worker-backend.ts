/**
 * Node-only: the onnxruntime CPU backend on a worker thread.
 *
 * onnxruntime-node runs each session on the calling JavaScript thread (one of its intra-op threads): while that
 * thread reads, journals or writes, no GEMM runs. Here the onnxruntime backend (its sessions, the WebAssembly staging
 * and the overflow pre-scan) runs on a worker thread, so a merge pipeline's I/O overlaps the compute. Weights held in
 * a SharedArrayBuffer are merged in place by the worker without a copy; others are copied into one and back. The
 * projection slices cross once per array. Results and errors (a `MERGE_OVERFLOW` keeps its code, message and
 * details) are the onnxruntime backend's, byte for byte. The worker keeps the process alive only while a merge is in
 * flight; {@link ComputeBackend.dispose} ends it.
 */
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { VeraError, type ErrorCodeValue } from "../../errors.js";
import type { ComputeBackend, MergeTask, MergeTaskResult } from "../backend.js";
import { ComputeErrorCode } from "../error-codes.js";
import { validateMergeTasks } from "../validate-tasks.js";
import type { FromWorker, MergeWorkerInit, PostedError, PostedTask, ToWorker } from "./merge-worker-protocol.js";

/** Params of {@link createWorkerBackend}. */
export interface CreateWorkerBackendParams {
  /**
   * onnxruntime threads of all workers together.
   * @default the number of available cores
   */
  threads?: number;
  /** Whether onnxruntime's threads spin while waiting for work. @default onnxruntime's default */
  spinning?: boolean;
  /** Target bytes of float32 output per graph run (see `createOrtBackend`). */
  blockBytes?: number;
  /**
   * The worker's script (the built `compute/node/merge-worker.js`).
   * @default located next to the running build (dist/compute/node/merge-worker.js)
   */
  workerFile?: string;
  /**
   * Worker threads, each merging whole weights with `threads / workers` onnxruntime threads.
   * @default 2 (1 on one core)
   */
  workers?: number;
}

/** The built worker script: dist/compute/node/merge-worker.js, found from any file of the build. */
export function locateMergeWorker(): string | undefined {
  // import.meta.url in the ES module build (a global __filename may exist there: `node -e`), __filename in CommonJS
  const url = (import.meta as { url?: string }).url;
  const here = url ? fileURLToPath(url) : __filename;
  let dir = dirname(here);
  for (let up = 0; up < 4; up++) {
    for (const f of [join(dir, "compute", "node", "merge-worker.js"), join(dir, "merge-worker.js")])
      if (f.endsWith(join("dist", "compute", "node", "merge-worker.js")) && existsSync(f)) return f;
    dir = dirname(dir);
  }
  return undefined;
}

function unavailable(why: string, cause?: unknown): VeraError {
  return new VeraError(ComputeErrorCode.COMPUTE_UNAVAILABLE, `the merge worker thread cannot start: ${why}`, {
    expected: "a worker thread running onnxruntime-node",
    received: why,
    ...(cause !== undefined ? { cause } : {}),
  });
}

/** A worker's error as the main thread throws it: the same VeraError (code, message, details). */
function fromPosted(e: PostedError): VeraError {
  if (e.veraCode)
    return new VeraError(e.veraCode as ErrorCodeValue, e.message, {
      ...(e.path !== undefined ? { path: e.path } : {}),
      ...(e.expected !== undefined ? { expected: e.expected } : {}),
      ...(e.received !== undefined ? { received: e.received } : {}),
      ...(e.issues ? { issues: e.issues as VeraError["issues"] } : {}),
    });
  return new VeraError(ComputeErrorCode.COMPUTE_FAILED, `ort-cpu (worker thread) failed: ${e.message}`);
}

/** Start the worker and wait until its onnxruntime backend is up. */
async function startWorker(file: string, init: MergeWorkerInit): Promise<{ worker: Worker; device: string }> {
  let worker: Worker;
  try {
    // the worker inherits the process's Node options, less those a worker refuses (`node --input-type=module -e`)
    const execArgv = process.execArgv.filter((a) => !a.startsWith("--input-type"));
    worker = new Worker(file, { workerData: init, execArgv });
  } catch (e) {
    throw unavailable((e as Error).message, e);
  }
  const device = await new Promise<string>((resolve, reject) => {
    const onError = (e: Error): void => reject(unavailable(e.message, e));
    const onExit = (code: number): void => reject(unavailable(`it exited with code ${code}`));
    worker.once("error", onError);
    worker.once("exit", onExit);
    worker.once("message", (m: FromWorker) => {
      worker.off("error", onError);
      worker.off("exit", onExit);
      if (m.type === "ready") resolve(m.device);
      else if (m.type === "start-failed") reject(fromPosted(m.error));
      else reject(unavailable(`unexpected first message ${m.type}`));
    });
  }).catch(async (e: unknown) => {
    await worker.terminate().catch(() => {});
    throw e;
  });
  worker.unref();
  return { worker, device };
}

/** One started worker: merges posted tasks, counts what is in flight, ends. */
interface WorkerSlot {
  device: string;
  /** Merges in flight on it. */
  busy: () => number;
  /** Its own record of the projection slices it has been sent. */
  post: ReturnType<typeof postTasks>;
  merge: (posted: PostedTask[]) => Promise<MergeTaskResult[]>;
  dispose: () => Promise<void>;
}

/** Start one worker and wire its messages; it keeps the process alive only while a merge is in flight. */
async function startSlot(file: string, init: MergeWorkerInit): Promise<WorkerSlot> {
  const { worker, device } = await startWorker(file, init);
  const pending = new Map<number, { resolve: (r: MergeTaskResult[]) => void; reject: (e: Error) => void }>();
  let dead: VeraError | undefined;
  let disposed: (() => void) | undefined;
  const fail = (e: VeraError): void => {
    dead ??= e;
    for (const p of pending.values()) p.reject(dead);
    pending.clear();
    disposed?.();
  };
  worker.on("message", (m: FromWorker) => {
    if (m.type === "disposed") return disposed?.();
    if (m.type !== "merged") return;
    const p = pending.get(m.id);
    if (!p) return;
    pending.delete(m.id);
    if (pending.size === 0) worker.unref(); // an idle worker does not keep the process alive
    if (m.error) p.reject(fromPosted(m.error));
    else p.resolve(m.results!);
  });
  worker.on("error", (e) =>
    fail(new VeraError(ComputeErrorCode.COMPUTE_FAILED, `ort-cpu (worker thread) failed: ${e.message}`, { cause: e })),
  );
  worker.on("exit", (code) =>
    fail(new VeraError(ComputeErrorCode.COMPUTE_FAILED, `the merge worker thread stopped (exit code ${code})`)),
  );
  let nextId = 0;
  return {
    device,
    busy: () => pending.size,
    post: postTasks(),
    merge(posted) {
      if (dead) return Promise.reject(dead);
      const id = nextId++;
      const done = new Promise<MergeTaskResult[]>((resolve, reject) => pending.set(id, { resolve, reject }));
      if (pending.size === 1) worker.ref();
      worker.postMessage({ type: "merge", id, tasks: posted } satisfies ToWorker);
      return done;
    },
    async dispose() {
      if (!dead) {
        const gone = new Promise<void>((resolve) => {
          disposed = resolve;
          setTimeout(resolve, 5000).unref();
        });
        worker.ref(); // until it has released its sessions
        worker.postMessage({ type: "dispose" } satisfies ToWorker);
        await gone;
      }
      dead ??= new VeraError(ComputeErrorCode.COMPUTE_FAILED, "the merge backend was disposed");
      await worker.terminate().catch(() => {});
    },
  };
}

/**
 * Create the onnxruntime CPU backend on worker threads (name `ort-cpu`): `workers` of them, each with its share of
 * the threads, each merging whole weights, so a caller that keeps `concurrency` merges in flight keeps every core on
 * the merge (the 16-bit staging and pre-scan are single-threaded passes beside the GEMMs). Throws
 * `COMPUTE_UNAVAILABLE` when the worker script is not found (running from sources) or a worker or onnxruntime cannot
 * start.
 */
export async function createWorkerBackend(params: CreateWorkerBackendParams = {}): Promise<ComputeBackend> {
  const file = params.workerFile ?? locateMergeWorker();
  if (!file) throw unavailable("its script (dist/compute/node/merge-worker.js) is not part of this build");
  const total = params.threads ?? (await import("node:os")).availableParallelism();
  const count = Math.max(1, Math.min(params.workers ?? 2, total));
  const init: MergeWorkerInit = {
    threads: Math.max(1, Math.floor(total / count)),
    ...(params.spinning !== undefined ? { spinning: params.spinning } : {}),
    ...(params.blockBytes !== undefined ? { blockBytes: params.blockBytes } : {}),
  };
  const started = await Promise.allSettled(Array.from({ length: count }, () => startSlot(file, init)));
  const slots = started.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
  const failed = started.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) {
    await Promise.all(slots.map((s) => s.dispose()));
    throw failed.reason;
  }
  return {
    name: "ort-cpu",
    info: { name: "ort-cpu", device: `${slots[0]!.device}, on ${count} worker thread${count === 1 ? "" : "s"}` },
    sharedBuffers: true,
    concurrency: count,
    async merge(tasks: MergeTask[]): Promise<MergeTaskResult[]> {
      validateMergeTasks(tasks);
      const slot = slots.reduce((a, b) => (b.busy() < a.busy() ? b : a));
      const { posted, copyBack } = slot.post(tasks);
      try {
        return await slot.merge(posted);
      } finally {
        copyBack();
      }
    },
    async dispose(): Promise<void> {
      await Promise.all(slots.map((s) => s.dispose()));
    },
  };
}

/**
 * The tasks as posted, for one backend: projection slices by id (their data the first time), weights as views of a
 * SharedArrayBuffer (a copy into one, put back by `copyBack`, when the weight is not in one).
 */
function postTasks(): (tasks: MergeTask[]) => { posted: PostedTask[]; copyBack: () => void } {
  const ids = new WeakMap<Float32Array, number>();
  let nextArray = 1;
  const ref = (a: Float32Array): { id: number; data?: Float32Array } => {
    const id = ids.get(a);
    if (id !== undefined) return { id };
    ids.set(a, nextArray);
    return { id: nextArray++, data: a.slice() };
  };
  return (tasks) => {
    const copies: Array<() => void> = [];
    const posted = tasks.map((t): PostedTask => {
      let view = t.weight;
      if (!(view.buffer instanceof SharedArrayBuffer)) {
        const shared = new Uint8Array(new SharedArrayBuffer(view.byteLength));
        shared.set(view);
        copies.push(() => t.weight.set(shared));
        view = shared;
      }
      const { weight: _weight, a, b, lambdaD, lambdaB, ...rest } = t;
      return {
        ...rest,
        buffer: view.buffer as SharedArrayBuffer,
        byteOffset: view.byteOffset,
        byteLength: view.byteLength,
        a: ref(a),
        b: ref(b),
        lambdaD: lambdaD.slice(),
        lambdaB: lambdaB.slice(),
      };
    });
    return { posted, copyBack: () => copies.forEach((c) => c()) };
  };
}

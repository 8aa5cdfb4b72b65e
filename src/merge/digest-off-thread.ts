/**
 * Internal (Node): SHA-256 of a few byte arrays, computed off the JavaScript thread.
 *
 * The JavaScript thread launches every compute run of a merge: a weight's SHA-256 there (tens of
 * milliseconds for 32 MiB) stalls the GEMMs. Here the parts are copied into a reused
 * SharedArrayBuffer (a memcpy, about a tenth of the hash's time) and one worker thread hashes
 * them. Small inputs are hashed on the calling thread (a message costs more). The digest is the
 * same either way: SHA-256 of the parts back to back.
 */
import { createHash } from "node:crypto";
import { Worker } from "node:worker_threads";

/** Inputs smaller than this are hashed on the calling thread. */
const OFF_THREAD_MIN = 1 << 20;
/** Scratch buffers kept for the next inputs (released after a few idle seconds). */
const KEEP_SCRATCH = 2;
const IDLE_MS = 5000;

/** The worker's code: a constant of this module, run by `worker_threads` as a CommonJS script. */
const WORKER_SOURCE = `
const { parentPort } = require("node:worker_threads");
const { createHash } = require("node:crypto");
parentPort.on("message", (m) => {
  try {
    const d = createHash("sha256").update(new Uint8Array(m.buffer, 0, m.length)).digest();
    parentPort.postMessage({ id: m.id, digest: new Uint8Array(d.buffer, d.byteOffset, d.byteLength).slice() });
  } catch (e) {
    parentPort.postMessage({ id: m.id, error: String((e && e.message) || e) });
  }
});
`;

interface Pending {
  resolve: (d: Uint8Array) => void;
  reject: (e: Error) => void;
  scratch: SharedArrayBuffer;
}

let worker: Worker | undefined;
const pending = new Map<number, Pending>();
const scratch: SharedArrayBuffer[] = [];
let idle: ReturnType<typeof setTimeout> | undefined;
let nextId = 0;

function failAll(e: Error): void {
  for (const p of pending.values()) p.reject(e);
  pending.clear();
  worker = undefined;
}

function hashWorker(): Worker {
  if (worker) return worker;
  const w = new Worker(WORKER_SOURCE, { eval: true });
  w.on("message", (m: { id: number; digest?: Uint8Array; error?: string }) => {
    const p = pending.get(m.id);
    if (!p) return;
    pending.delete(m.id);
    giveBack(p.scratch);
    if (m.error !== undefined) p.reject(new Error(`hashing failed: ${m.error}`));
    else p.resolve(m.digest!);
    if (pending.size === 0) w.unref(); // an idle worker does not keep the process alive
  });
  w.on("error", (e) => failAll(e));
  w.on("exit", () => failAll(new Error("the hashing thread stopped")));
  w.unref();
  worker = w;
  return w;
}

/** A scratch buffer of at least `n` bytes (a kept one when one is large enough). */
function takeScratch(n: number): SharedArrayBuffer {
  const i = scratch.findIndex((b) => b.byteLength >= n);
  return i >= 0 ? scratch.splice(i, 1)[0]! : new SharedArrayBuffer(n);
}

function giveBack(b: SharedArrayBuffer): void {
  if (scratch.length < KEEP_SCRATCH) scratch.push(b);
  if (idle) clearTimeout(idle);
  idle = setTimeout(() => void (scratch.length = 0), IDLE_MS);
  idle.unref();
}

/**
 * SHA-256 of `parts` back to back. Inputs of 1 MiB or more are copied (synchronously: the parts
 * may change as soon as this returns) and hashed by a worker thread; smaller ones are hashed
 * before this returns.
 */
export function sha256OffThread(parts: readonly Uint8Array[]): Promise<Uint8Array> {
  const total = parts.reduce((n, p) => n + p.byteLength, 0);
  if (total < OFF_THREAD_MIN) {
    const h = createHash("sha256");
    for (const p of parts) h.update(p);
    return Promise.resolve(new Uint8Array(h.digest()));
  }
  const buf = takeScratch(total);
  const view = new Uint8Array(buf);
  let at = 0;
  for (const p of parts) {
    view.set(p, at);
    at += p.byteLength;
  }
  const w = hashWorker();
  const id = nextId++;
  return new Promise<Uint8Array>((resolve, reject) => {
    pending.set(id, { resolve, reject, scratch: buf });
    w.ref();
    w.postMessage({ id, buffer: buf, length: total });
  });
}

/**
 * The compute stage: each weight's stored bytes are read (the next one while the current one is
 * merged), merged by the backend in place, and handed on. Knows no container format and no file.
 */
import type { ComputeBackend, MergeTaskResult } from "../../compute/backend.js";
import type { VeraAdapter } from "../../format/types.js";
import { buildMergeTasks, projectionSlices, type SliceFor } from "../../compute/merge-tasks.js";
import type { ContainerWeight } from "./container.js";

/** Parameters of {@link computeWeights}. */
export interface ComputeWeightsParams<W extends ContainerWeight> {
  adapter: VeraAdapter;
  /** The weights, in the order they are merged. */
  order: readonly W[];
  /** Read a weight's stored bytes (a fresh buffer the merge modifies). */
  read: (weight: W) => Promise<Uint8Array>;
  /** The merge kernel. */
  backend: ComputeBackend;
  /** Receives each merged weight (awaited before the next one is merged). */
  merged: (weight: W, values: Uint8Array, maxAbsDelta: ReadonlyMap<string, number>) => Promise<void>;
  /** Called when a weight comes up, before its bytes are awaited. */
  before?: (weight: W) => void;
  /** Called after each read and each merge: throws to stop (cancellation). */
  check?: () => void;
  /** Projection slices. @default computed from the adapter */
  sliceFor?: SliceFor;
  /** Adds busy time, milliseconds, to `compute`. */
  timed?: (phase: "compute", ms: number) => void;
  /**
   * Weights read ahead of the one being merged: reads (and, in place, journal appends and their
   * digests) that take longer for one weight than its merge do not stall the GEMMs.
   * @default 2
   */
  readAhead?: number;
}

/**
 * Merge every weight in order. The reads of the next weights (up to `readAhead`, in order) overlap
 * the merge of weight i; a failed read surfaces when its weight comes up. A backend with a `concurrency` above 1
 * gets that many weights at once; `merged` still receives them one at a time, in order.
 */
export async function computeWeights<W extends ContainerWeight>(params: ComputeWeightsParams<W>): Promise<void> {
  const { order, adapter } = params;
  const sliceFor = params.sliceFor ?? projectionSlices(adapter);
  const modules = new Map(adapter.modules.map((m) => [m.name, m]));
  const prefetch = (w: W): Promise<Uint8Array> => {
    const p = params.read(w);
    p.catch(() => {});
    return p;
  };
  const ahead = Math.max(1, params.readAhead ?? 2);
  const reads: Array<Promise<Uint8Array>> = [];
  // started in order, one after the other (each once the one before it has been read; none after a failed one)
  let last: Promise<unknown> = Promise.resolve();
  const readNext = (): void => {
    const k = reads.length;
    if (k >= order.length) return;
    const p = last.then(() => prefetch(order[k]!));
    p.catch(() => {});
    reads.push(p);
    last = p;
  };
  for (let k = 0; k < Math.min(ahead, order.length); k++) readNext();
  // merges in flight (the backend's concurrency); each weight is handed on in order once its merge is done
  const inFlight = Math.max(1, params.backend.concurrency ?? 1);
  const running: Array<{ w: W; values: Uint8Array; done: Promise<MergeTaskResult[]>; finish: () => void }> = [];
  const handOn = async (): Promise<void> => {
    const r = running.shift()!;
    const t = performance.now();
    const results = await r.done;
    r.finish();
    params.timed?.("compute", performance.now() - t);
    params.check?.();
    await params.merged(r.w, r.values, new Map(results.map((x) => [x.name, x.maxAbsDelta])));
  };
  try {
    for (let i = 0; i < order.length; i++) {
      const w = order[i]!;
      params.before?.(w);
      const values = await reads[i]!;
      params.check?.();
      readNext();
      const t = performance.now();
      const { tasks, finish } = buildMergeTasks({ weight: w, values, modules, rank: adapter.rank, sliceFor });
      const done = params.backend.merge(tasks);
      done.catch(() => {});
      params.timed?.("compute", performance.now() - t);
      running.push({ w, values, done, finish });
      if (running.length >= inFlight) await handOn();
    }
    while (running.length > 0) await handOn();
  } finally {
    // nothing keeps merging after a failure: the merges still in flight end before it is reported
    await Promise.allSettled(running.map((r) => r.done));
  }
}

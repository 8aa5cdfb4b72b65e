/**
 * The compute stage: each weight's stored bytes are read (the next one while the current one is
 * merged), merged by the backend in place, and handed on. Knows no container format and no file.
 */
import type { ComputeBackend } from "../compute/backend.js";
import type { VeraAdapter } from "../format/types.js";
import { buildMergeTasks, projectionSlices, type SliceFor } from "../compute/merge-tasks.js";
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
}

/**
 * Merge every weight in order. The read of weight i+1 overlaps the merge of weight i; a failed
 * read surfaces when its weight comes up.
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
  let next = order.length > 0 ? prefetch(order[0]!) : undefined;
  for (let i = 0; i < order.length; i++) {
    const w = order[i]!;
    params.before?.(w);
    const values = await next!;
    params.check?.();
    if (i + 1 < order.length) next = prefetch(order[i + 1]!);
    const t = performance.now();
    const { tasks, finish } = buildMergeTasks({ weight: w, values, modules, rank: adapter.rank, sliceFor });
    const results = await params.backend.merge(tasks);
    finish();
    params.timed?.("compute", performance.now() - t);
    params.check?.();
    await params.merged(w, values, new Map(results.map((r) => [r.name, r.maxAbsDelta])));
  }
}

/** The run context every merge stage shares: cancellation, progress events, timings, start time. */
import { mergeAborted } from "./merge-aborted.js";
import { emptyTimings, type MergeEvent, type MergeTimings } from "./merge-report.js";

/** One merge as it runs, passed through its stages (whatever the container, on disk or in a page). */
export interface MergeRun {
  /** Throws `MERGE_ABORTED` once the merge is cancelled; stages call it between steps. */
  check: () => void;
  /** Sends a progress event. */
  emit: (e: MergeEvent) => void;
  /** Busy time per phase, filled in by the stages (the report's `timings`). */
  timings: MergeTimings;
  /** When the merge started (performance.now()). */
  started: number;
}

/** Start a merge's run context: cancelled by `signal`, events to `emit`. */
export function startMergeRun(params: { signal?: AbortSignal; emit?: (e: MergeEvent) => void }): MergeRun {
  const { signal } = params;
  return {
    check: () => {
      if (signal?.aborted) throw mergeAborted();
    },
    emit: params.emit ?? (() => {}),
    timings: emptyTimings(),
    started: performance.now(),
  };
}

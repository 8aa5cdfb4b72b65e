import { VeraError } from "../errors.js";
import { MergeErrorCode } from "./error-codes.js";

/** The error of a cancelled merge (internal). */
export function mergeAborted(): VeraError {
  return new VeraError(
    MergeErrorCode.MERGE_ABORTED,
    "merge cancelled; no output was written and the input is unchanged",
  );
}

/** Drain a merge's events into `onProgress` and return its report; a throwing `onProgress` cancels the merge (internal). */
export async function drainMerge<E, R>(it: AsyncGenerator<E, R, void>, onProgress?: (e: E) => void): Promise<R> {
  try {
    for (;;) {
      const r = await it.next();
      if (r.done) return r.value;
      onProgress?.(r.value);
    }
  } catch (e) {
    await it.return(undefined as never).catch(() => {});
    throw e;
  }
}

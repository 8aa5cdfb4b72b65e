import { VeraError } from "../../errors.js";
import { MergeErrorCode } from "../error-codes.js";

/** The error of a cancelled merge (internal). */
export function mergeAborted(): VeraError {
  return new VeraError(
    MergeErrorCode.MERGE_ABORTED,
    "merge cancelled; no output was written and the input is unchanged",
  );
}

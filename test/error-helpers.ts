import { isVeraError, type VeraError } from "../src/errors.js";

/**
 * The code of the VeraError that `f` throws, or `ok` when it returns. Any other error is rethrown, so a test
 * expecting a code fails with the real error.
 */
export function errorCode(f: () => unknown, ok = "OK"): string {
  try {
    f();
  } catch (e) {
    if (isVeraError(e)) return e.code;
    throw e;
  }
  return ok;
}

/** The VeraError that `p` rejects with; throws when it resolves or rejects with another error. */
export async function veraError(p: Promise<unknown>): Promise<VeraError> {
  try {
    await p;
  } catch (e) {
    if (isVeraError(e)) return e;
    throw e;
  }
  throw new Error("expected a VeraError");
}

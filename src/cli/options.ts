import { ErrorCode, VeraError } from "../errors.js";
import { UsageError } from "./command.js";

/** Read a positive integer option; throws a usage error when required and missing, ARG_INVALID when malformed. */
export function intOption(values: Record<string, unknown>, name: string, required = false): number | undefined {
  const v = values[name];
  if (v === undefined) {
    if (required) throw new UsageError(`--${name} is required`);
    return undefined;
  }
  const s = String(v);
  if (!/^[1-9][0-9]*$/.test(s) || !Number.isSafeInteger(Number(s)))
    throw new VeraError(ErrorCode.ARG_INVALID, `--${name} must be a positive integer`, {
      path: `--${name}`,
      expected: "positive integer",
      received: s,
    });
  return Number(s);
}

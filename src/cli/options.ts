import type { ParseArgsConfig } from "node:util";
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

/** Option names of a command, by kind. */
export interface CliOptionNames {
  /** Options that take a value (`--output` is also `-o`). */
  strings?: readonly string[];
  /** Options that take no value. */
  flags?: readonly string[];
  /** Options that take a value and may be repeated. */
  lists?: readonly string[];
}

/** A command's `parseArgs` options from its option names, so each table stays a few lines. */
export function cliOptions(names: CliOptionNames): NonNullable<ParseArgsConfig["options"]> {
  const out: NonNullable<ParseArgsConfig["options"]> = {};
  for (const n of names.strings ?? []) out[n] = n === "output" ? { type: "string", short: "o" } : { type: "string" };
  for (const n of names.flags ?? []) out[n] = { type: "boolean" };
  for (const n of names.lists ?? []) out[n] = { type: "string", multiple: true };
  return out;
}

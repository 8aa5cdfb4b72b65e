import type { ParseArgsConfig } from "node:util";

/** Output helpers handed to every command. */
export interface CliContext {
  /** Write a line to stdout. */
  out(line: string): void;
  /** Write a line to stderr. */
  err(line: string): void;
  /** True when --json was given: print one JSON document on stdout and nothing else there. */
  json: boolean;
  /** True when --debug was given (stack traces on errors). Never prints secrets. */
  debug: boolean;
  /** Whether stderr is a TTY (progress bars). */
  isTTY: boolean;
  env: NodeJS.ProcessEnv;
}

/** One CLI command: argument parsing only, then calls into the public library. */
export interface Command {
  name: string;
  /** One line (under 80 characters) saying what the command does; `vera --help` lists it beside the name. */
  summary: string;
  /** The longer text `vera <command> --help` prints under the summary. */
  description?: string;
  usage: string;
  options: NonNullable<ParseArgsConfig["options"]>;
  /** Whether positional arguments are allowed. @default true */
  allowPositionals?: boolean;
  /** Returns the exit code (0 ok, 1 invalid input). Throw VeraError for failures. */
  run(args: { values: Record<string, unknown>; positionals: string[] }, ctx: CliContext): Promise<number>;
}

/** A usage error: exit code 2. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

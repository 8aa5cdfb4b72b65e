import { parseArgs, type ParseArgsConfig } from "node:util";
import { UsageError } from "./command.js";

type Options = NonNullable<ParseArgsConfig["options"]>;

/** A negative decimal number as a user writes it: -3, -0.5, -.5, -1e-3. */
const NEGATIVE_NUMBER = /^-(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$/;

/**
 * Attach a negative number to the value-taking option before it, so that `--seed -3` reads as `--seed=-3`.
 * node's parseArgs refuses `--seed -3` as ambiguous (the value starts with a dash). No option name is a
 * number, so a negative number after an option that takes a value can only be that value. Nothing after
 * `--` is touched, and boolean options are left alone (their next word stays a separate argument).
 */
export function joinNegativeValues(args: readonly string[], options: Options): string[] {
  const short = new Map<string, string>();
  for (const [name, o] of Object.entries(options)) if (o.short) short.set(o.short, name);
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--") {
      out.push(...args.slice(i));
      break;
    }
    const next = args[i + 1];
    const name = a.startsWith("--") ? a.slice(2) : /^-[^-]$/.test(a) ? short.get(a.slice(1)) : undefined;
    if (name !== undefined && !name.includes("=") && options[name]?.type === "string" && next !== undefined) {
      if (NEGATIVE_NUMBER.test(next)) {
        out.push(`--${name}=${next}`);
        i++;
        continue;
      }
    }
    out.push(a);
  }
  return out;
}

/** Parameters of {@link parseCommandArgs}. */
export interface ParseCommandArgsParams {
  /** The words after the command name. */
  args: readonly string[];
  /** The command's options (the global --json and --debug are added here). */
  options: Options;
  /** Whether positional arguments are allowed. @default true */
  allowPositionals?: boolean;
}

/**
 * Parse a command's arguments strictly (unknown options are usage errors). Every option that takes a value
 * accepts a negative number as its value in both spellings, `--seed -3` and `--seed=-3`.
 */
export function parseCommandArgs(params: ParseCommandArgsParams): {
  values: Record<string, unknown>;
  positionals: string[];
} {
  const options: Options = { ...params.options, json: { type: "boolean" }, debug: { type: "boolean" } };
  try {
    const parsed = parseArgs({
      args: joinNegativeValues(params.args, options),
      options,
      allowPositionals: params.allowPositionals ?? true,
      strict: true,
    });
    return { values: parsed.values as Record<string, unknown>, positionals: parsed.positionals };
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

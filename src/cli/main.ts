import { isVeraError } from "../errors.js";
import { errnoOf } from "../node/io-error.js";
import { commands } from "./commands/index.js";
import { UsageError, type CliContext } from "./command.js";
import { exitCodeOf } from "./exit-codes.js";
import { parseCommandArgs } from "./parse-command-args.js";

/** The top-level help: every command with its one-line summary. */
async function help(): Promise<string> {
  const names = Object.keys(commands);
  const summaries = await Promise.all(names.map(async (n) => (await commands[n]!()).default.summary));
  const width = Math.max(...names.map((n) => n.length)) + 2;
  return [
    "vera: VeRA adapters: inspect, validate, convert, merge, share",
    "",
    "usage: vera <command> [options]   (vera <command> --help for details)",
    "",
    "commands:",
    ...names.map((n, i) => `  ${n.padEnd(width)}${summaries[i]}`),
    "",
    "global options: --json (machine-readable output), --debug (stack traces), --help",
    "exit codes: 0 ok, 1 invalid input, 2 usage or I/O error",
  ].join("\n");
}

/** Where the CLI writes: the process's stdout and stderr, or a test's capture. */
export interface CliIo {
  out(line: string): void;
  err(line: string): void;
  isTTY: boolean;
}

const processIo: CliIo = {
  out: (l) => process.stdout.write(l + "\n"),
  err: (l) => process.stderr.write(l + "\n"),
  get isTTY() {
    return Boolean(process.stderr.isTTY);
  },
};

/** Run the CLI with `argv` (without node and script). Returns the exit code. */
export async function main(
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
  io: CliIo = processIo,
): Promise<number> {
  const json = argv.includes("--json");
  const debug = argv.includes("--debug");
  const ctx: CliContext = { out: io.out, err: io.err, json, debug, isTTY: io.isTTY, env };
  const [name, ...rest] = argv;
  if (!name || name === "--help" || name === "-h" || name === "help") {
    ctx.out(await help());
    return name ? 0 : 2;
  }
  if (name === "--version") {
    ctx.out(typeof __VERAKIT_VERSION__ === "string" ? __VERAKIT_VERSION__ : "0.0.0-dev");
    return 0;
  }
  const load = commands[name];
  if (!load) {
    ctx.err(`vera: unknown command "${name}"\n\n${await help()}`);
    return 2;
  }
  const cmd = (await load()).default;
  if (rest.includes("--help") || rest.includes("-h")) {
    ctx.out(`${cmd.summary}\n${cmd.description ? `\n${cmd.description}\n` : ""}\nusage: ${cmd.usage}`);
    return 0;
  }
  try {
    const parsed = parseCommandArgs({
      args: rest,
      options: cmd.options,
      ...(cmd.allowPositionals !== undefined ? { allowPositionals: cmd.allowPositionals } : {}),
    });
    return await cmd.run(parsed, ctx);
  } catch (e) {
    if (e instanceof UsageError) {
      report(ctx, { code: "USAGE", message: e.message }, e);
      ctx.err(`usage: ${cmd.usage}`);
      return 2;
    }
    if (isVeraError(e)) {
      report(ctx, e.toJSON(), e);
      return exitCodeOf(e.code);
    }
    if (errnoOf(e) !== undefined) {
      report(ctx, { code: "IO_ERROR", message: `${(e as Error).message}` }, e);
      return 2;
    }
    report(ctx, { code: "INTERNAL", message: `internal error: ${(e as Error)?.message ?? String(e)}` }, e);
    return 2;
  }
}

function report(ctx: CliContext, obj: { code: string; message: string; issues?: unknown[] }, e: unknown): void {
  if (ctx.json) ctx.out(JSON.stringify({ ok: false, error: obj }, null, 2));
  else {
    ctx.err(`vera: error ${obj.code}: ${obj.message}`);
    const issues = (obj.issues ?? []) as Array<{ code: string; message: string; path?: string }>;
    if (issues.length > 1) for (const i of issues) ctx.err(`  ${i.code}${i.path ? ` at ${i.path}` : ""}: ${i.message}`);
  }
  if (ctx.debug && e instanceof Error && e.stack) ctx.err(e.stack);
}

declare const __VERAKIT_VERSION__: string;

import { main } from "../src/cli/main.js";

/** What one CLI run gave. */
export interface CliRun {
  status: number;
  stdout: string;
  stderr: string;
}

/**
 * Run `vera` in this process: the same main() the executable calls, its output captured, so that a test's
 * time is the command's work and not a Node start-up per command. test/cli-core.test.ts runs the built
 * executable itself.
 */
export async function runCli(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<CliRun> {
  const out: string[] = [];
  const err: string[] = [];
  const status = await main(args, env, {
    out: (l) => out.push(l + "\n"),
    err: (l) => err.push(l + "\n"),
    isTTY: false,
  });
  return { status, stdout: out.join(""), stderr: err.join("") };
}

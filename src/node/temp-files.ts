/**
 * Internal (Node): the temporary files every output is written to before it is renamed into place.
 *
 * - Names: `.NAME.PID.TAG.tmp` beside the final path (same folder, so the rename is atomic), where
 *   TAG is 12 hex digits: 4 from the host name, 8 random.
 * - Tracked files are removed when the process exits (`exit`), and on SIGTERM, SIGHUP and SIGINT
 *   when nothing else handles that signal (the signal is then raised again, so the process ends as
 *   it would have).
 * - A temporary file left by a process killed outright (kill -9, power loss) is removed by the next
 *   run that writes into its folder: only a name of exactly this form, written on this host, whose
 *   pid no longer runs.
 */
import { createHash, randomBytes } from "node:crypto";
import { readdirSync, unlinkSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { currentProcess, pidRunning } from "./process-alive.js";

const SIGNALS = ["SIGTERM", "SIGHUP", "SIGINT"] as const;
const TEMP_NAME = /^\..+\.(\d+)\.([0-9a-f]{4})[0-9a-f]{8}\.tmp$/;

let hostTagValue: string | undefined;
function hostTag(): string {
  hostTagValue ??= createHash("sha256").update(currentProcess().host).digest("hex").slice(0, 4);
  return hostTagValue;
}

const swept = new Set<string>();

/**
 * Remove the temporary files in `dir` that a process of this host left when it died (its pid no
 * longer runs). Returns the names removed.
 */
export function sweepStaleTemps(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const m = TEMP_NAME.exec(name);
    if (!m || m[2] !== hostTag()) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || pidRunning(pid)) continue;
    try {
      unlinkSync(join(dir, name));
      removed.push(name);
    } catch {
      /* gone already, or not ours to remove */
    }
  }
  return removed;
}

/**
 * A temporary path next to `path` (same folder, so a rename is atomic). The first time a process
 * writes into a folder, the temporary files dead processes left there are removed.
 */
export function tempPathFor(path: string): string {
  const dir = dirname(path);
  if (!swept.has(dir)) {
    swept.add(dir);
    sweepStaleTemps(dir);
  }
  return join(dir, `.${basename(path)}.${process.pid}.${hostTag()}${randomBytes(4).toString("hex")}.tmp`);
}

const tracked = new Set<string>();

function removeTracked(): void {
  for (const p of tracked) {
    try {
      unlinkSync(p);
    } catch {
      /* already gone */
    }
  }
}

function onSignal(signal: NodeJS.Signals): void {
  if (process.listenerCount(signal) > 1) return; // another handler decides what this signal does
  removeTracked();
  tracked.clear();
  uninstall();
  process.kill(process.pid, signal);
}

let installed = false;
function install(): void {
  if (installed) return;
  installed = true;
  process.on("exit", removeTracked);
  for (const s of SIGNALS) process.on(s, onSignal);
}

function uninstall(): void {
  if (!installed) return;
  installed = false;
  process.off("exit", removeTracked);
  for (const s of SIGNALS) process.off(s, onSignal);
}

/** Remove `path` when the process exits or is ended by a signal, until {@link untrackTemp}. */
export function trackTemp(path: string): void {
  tracked.add(path);
  install();
}

/** Stop removing `path` at exit (it was renamed into place, or removed). */
export function untrackTemp(path: string): void {
  tracked.delete(path);
  if (tracked.size === 0) uninstall();
}

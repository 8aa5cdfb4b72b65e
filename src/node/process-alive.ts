/**
 * Internal (Node): who a process is and whether it still runs, for lock files and temporary files
 * that carry their owner's pid. A pid alone is not enough once the owner is gone (pids are reused),
 * so on Linux the owner's start time (`/proc/PID/stat`, field 22) and the boot id are recorded and
 * compared too; elsewhere a reused pid reads as alive (the lock or file is then kept, never taken).
 */
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import { errnoOf } from "./io-error.js";

/** A process, as recorded in a lock file. */
export interface ProcessIdentity {
  pid: number;
  /** `os.hostname()`: liveness can only be checked on the same host. */
  host: string;
  /** The kernel's boot id (Linux), null elsewhere. */
  boot: string | null;
  /** The process's start time in clock ticks since boot (Linux), null elsewhere. */
  start: string | null;
}

function readText(path: string): string | null {
  try {
    return readFileSync(path, "utf8").trim();
  } catch {
    return null;
  }
}

/** The start time of `pid` (Linux `/proc/PID/stat` field 22), null when it cannot be read. */
function startTimeOf(pid: number): string | null {
  const stat = readText(`/proc/${pid}/stat`);
  if (stat === null) return null;
  // the command name (field 2) is in parentheses and may hold spaces or parentheses itself
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return fields[19] ?? null;
}

let self: ProcessIdentity | undefined;

/** This process's identity. */
export function currentProcess(): ProcessIdentity {
  self ??= {
    pid: process.pid,
    host: hostname(),
    boot: readText("/proc/sys/kernel/random/boot_id"),
    start: startTimeOf(process.pid),
  };
  return self;
}

/** Whether a pid names a running process on this host (any user's: EPERM counts as running). */
export function pidRunning(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return errnoOf(e) === "EPERM";
  }
}

/**
 * Whether the process `owner` still runs: false when it is gone (no such pid, another boot, or
 * the pid now belongs to a process started at another time), true when it runs, undefined when
 * this host cannot tell (it ran on another host).
 */
export function processAlive(owner: ProcessIdentity): boolean | undefined {
  const me = currentProcess();
  if (owner.host !== me.host) return undefined;
  if (owner.boot !== null && me.boot !== null && owner.boot !== me.boot) return false;
  if (!pidRunning(owner.pid)) return false;
  if (owner.start !== null) {
    const now = startTimeOf(owner.pid);
    if (now !== null && now !== owner.start) return false;
  }
  return true;
}

/**
 * vitest global setup: every run gets a private temp dir (TMPDIR, TMP and TEMP point there for the test workers
 * and every CLI they spawn), and the run fails when a test left a vera-* entry in it. A private folder keeps the check
 * exact on a shared machine, where other runs create and remove their own vera-* folders at the same time.
 */
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const VARS = ["TMPDIR", "TMP", "TEMP"] as const;

export default function setup(): () => void {
  const saved = VARS.map((v) => process.env[v]);
  const dir = mkdtempSync(join(tmpdir(), "vera-test-run-"));
  for (const v of VARS) process.env[v] = dir;
  return () => {
    VARS.forEach((v, i) => {
      if (saved[i] === undefined) delete process.env[v];
      else process.env[v] = saved[i];
    });
    // only what verakit's tests and code create counts (vera-*); native libraries write their own files here
    // (onnxruntime-node's CPU session leaves `.ses` and `mat-debug-<pid>.log`), removed with the folder
    const left = readdirSync(dir).filter((n) => n.startsWith("vera-"));
    rmSync(dir, { recursive: true, force: true });
    if (left.length === 0) return;
    // vitest reports an error thrown here but keeps the exit status, so set the status too
    process.exitCode = 1;
    throw new Error(
      `tests left ${left.length} entr${left.length === 1 ? "y" : "ies"} in the temp dir: ${left.sort().join(", ")}; ` +
        "remove what a test creates (see test/temp-helpers.ts)",
    );
  };
}

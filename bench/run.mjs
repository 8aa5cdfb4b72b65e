// `npm run bench`: every bench/*.mjs script in turn (each prints a table and writes bench/results/<name>.json).
// Optional: `npm run bench -- projections merge` runs only those.
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { benchDir } from "./lib.mjs";

const only = process.argv.slice(2);
const scripts = readdirSync(benchDir)
  .filter((f) => f.endsWith(".mjs") && !["run.mjs", "lib.mjs"].includes(f))
  .filter((f) => only.length === 0 || only.includes(f.replace(/\.mjs$/, "")))
  .sort();
let failed = 0;
for (const s of scripts) {
  console.log(`\n=== bench/${s}\n`);
  const r = spawnSync(process.execPath, [join(benchDir, s)], { stdio: "inherit" });
  if (r.status !== 0) failed++;
}
process.exitCode = failed ? 1 : 0;

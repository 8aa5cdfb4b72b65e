// Shared helpers for bench/ scripts: baseline Python discovery, tables, results files.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const benchDir = dirname(fileURLToPath(import.meta.url));
export const root = join(benchDir, "..");

/** The Python that has torch for baselines: $VERAKIT_PYTHON, else ./.venv-ref/bin/python; null when neither works. */
export function findPython() {
  const candidates = [process.env.VERAKIT_PYTHON, join(root, ".venv-ref/bin/python")].filter(Boolean);
  for (const p of candidates) {
    if (!existsSync(p)) continue;
    const r = spawnSync(p, ["-c", "import torch; print(torch.__version__)"], { encoding: "utf8" });
    if (r.status === 0) return { python: p, torch: r.stdout.trim() };
  }
  return null;
}

/** Run a Python snippet, return its stdout parsed as JSON. */
export function runPython(py, code, env = {}) {
  const r = spawnSync(py, ["-c", code], { encoding: "utf8", env: { ...process.env, ...env }, maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`python failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").pop());
}

export function machine() {
  const c = cpus();
  return {
    cpu: c[0]?.model ?? "unknown",
    cores: c.length,
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
  };
}

/** Print an aligned table. */
export function table(rows, columns) {
  const w = columns.map((c) => Math.max(c.length, ...rows.map((r) => String(r[c] ?? "").length)));
  const line = (cells) => cells.map((s, i) => String(s).padEnd(w[i])).join("  ");
  console.log(line(columns));
  console.log(line(w.map((n) => "-".repeat(n))));
  for (const r of rows) console.log(line(columns.map((c) => r[c] ?? "")));
}

export function saveResults(name, data) {
  const dir = join(benchDir, "results");
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${name}.json`);
  writeFileSync(file, JSON.stringify({ date: new Date().toISOString(), machine: machine(), ...data }, null, 2) + "\n");
  console.log(`\nresults written to ${file}`);
}

/** Median of the times of `reps` calls of fn (ms). */
export function timeIt(fn, reps = 5) {
  const t = [];
  for (let i = 0; i < reps; i++) {
    const s = performance.now();
    fn();
    t.push(performance.now() - s);
  }
  t.sort((a, b) => a - b);
  return t[Math.floor(t.length / 2)];
}

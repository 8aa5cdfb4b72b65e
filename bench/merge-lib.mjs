// Shared parts of the merge benchmarks (merge.mjs, merge-safetensors.mjs, merge-gguf.mjs): the built CLI,
// the Llama-shaped adapter, timed child processes with peak RSS, and the `vera merge` vs `cp` loop.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { root } from "./lib.mjs";

/** The value after `--name` on the command line, else `dflt`. */
export function option(name, dflt) {
  const args = process.argv.slice(2);
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
}

/** The built CLI (dist/cli/index.js); throws when it is not built. */
export function builtCli() {
  const cli = join(root, "dist/cli/index.js");
  if (!existsSync(cli)) throw new Error("build first: npx tsup");
  return cli;
}

/** Write a VeRA adapter on q_proj + v_proj of `layers` Llama layers (hidden x hidden, rank r) with small fixed values. */
export async function writeBenchAdapter({ layers, path, hidden, rank }) {
  const { createAdapter, writeVera } = await import(join(root, "dist/format/index.js"));
  const { writeFileAtomic } = await import(join(root, "dist/node/index.js"));
  const modules = [];
  for (let l = 0; l < layers; l++)
    for (const m of ["q_proj", "v_proj"])
      modules.push({ name: `model.layers.${l}.self_attn.${m}`, inFeatures: hidden, outFeatures: hidden });
  const a = createAdapter({ modules, rank, seed: 1234 });
  let s = 7;
  const rnd = () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32 - 0.5) * 0.02;
  for (const m of a.modules) {
    m.lambdaB.forEach((_, i) => (m.lambdaB[i] = rnd()));
    m.lambdaD.forEach((_, i) => (m.lambdaD[i] = rnd() * 10));
  }
  return writeFileAtomic(path, writeVera({ adapter: a }));
}

const hasTime = existsSync("/usr/bin/time");

/** Run a command; its wall time (ms), peak RSS (MB, null without /usr/bin/time) and stdout. Throws on failure. */
export function timed(cmd, argv) {
  const full = hasTime ? ["/usr/bin/time", ["-f", "__RSS_KB=%M __CPU_S=%U+%S", cmd, ...argv]] : [cmd, argv];
  const t0 = performance.now();
  const r = spawnSync(full[0], full[1], { encoding: "utf8", maxBuffer: 256 << 20 });
  const ms = performance.now() - t0;
  if (r.status !== 0) throw new Error(`${cmd} ${argv.join(" ")} failed (${r.status}): ${r.stderr}`);
  const m = /__RSS_KB=(\d+)/.exec(r.stderr);
  const c = /__CPU_S=([\d.]+)\+([\d.]+)/.exec(r.stderr);
  // CPU seconds (user + system) of the process and its threads: less sensitive to other work than the wall time
  return { ms, rssMB: m ? Number(m[1]) / 1024 : null, cpuS: c ? Number(c[1]) + Number(c[2]) : null, stdout: r.stdout };
}

/** Time `vera merge INPUT ADAPTER -o OUTPUT --backend BACKEND ...extra` run by the built CLI. */
export function timedMerge({ cli, input, adapter, output, backend, extra }) {
  return timed(process.execPath, [cli, "merge", input, adapter, "-o", output, "--backend", backend, ...extra]);
}

/** Flush the page cache's dirty pages (`sync`). */
export const sync = () => spawnSync("sync");

/** Median of numbers. */
export const median = (xs) => {
  const v = [...xs].sort((a, b) => a - b);
  const m = Math.floor(v.length / 2);
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
};

/**
 * Alternate `cp`, `vera merge --json` and, when given, a baseline merge (PEFT) `reps` times (a `sync` after
 * each). `cp()` returns the copy's time in ms, `merge()` and `baseline()` the {@link timed} result of their
 * process; each removes its own output.
 * Returns the merge report, the table columns "cp s" .. "copy s" (`columns`) and the results fields
 * cpMs .. timings (`result`), with the baseline's columns and fields when it ran.
 */
export function mergeVsCp({ reps, cp, merge, baseline }) {
  const cpMs = [];
  const mergeMs = [];
  const rss = [];
  const baseMs = [];
  const baseRss = [];
  const basePhases = [];
  let report = null;
  for (let rep = 0; rep < reps; rep++) {
    cpMs.push(cp());
    sync();
    const m = merge();
    mergeMs.push(m.ms);
    if (m.rssMB !== null) rss.push(m.rssMB);
    report = JSON.parse(m.stdout);
    sync();
    if (baseline) {
      const b = baseline();
      baseMs.push(b.ms);
      if (b.rssMB !== null) baseRss.push(b.rssMB);
      basePhases.push(JSON.parse(b.stdout.trim().split("\n").pop()));
      sync();
    }
  }
  const cpMedian = median(cpMs);
  const mg = median(mergeMs);
  const t = report.timings;
  const bm = baseline ? median(baseMs) : null;
  return {
    report,
    columns: {
      "cp s": (cpMedian / 1000).toFixed(2),
      "merge s": (mg / 1000).toFixed(2),
      ratio: (mg / cpMedian).toFixed(2),
      "peak RSS MB": rss.length ? Math.max(...rss).toFixed(0) : "n/a",
      "compute s": (t.compute / 1000).toFixed(2),
      "copy s": (t.copy / 1000).toFixed(2),
      ...(bm === null
        ? {}
        : {
            "PEFT s": (bm / 1000).toFixed(2),
            "PEFT / merge": (bm / mg).toFixed(2),
            "PEFT RSS MB": baseRss.length ? Math.max(...baseRss).toFixed(0) : "n/a",
          }),
    },
    result: {
      cpMs,
      mergeMs,
      ratio: mg / cpMedian,
      peakRssMB: rss.length ? Math.max(...rss) : null,
      timings: t,
      ...(bm === null
        ? {}
        : {
            peft: {
              ms: baseMs,
              speedup: bm / mg,
              peakRssMB: baseRss.length ? Math.max(...baseRss) : null,
              phases: basePhases,
            },
          }),
    },
  };
}

/**
 * The in-place floor's I/O, as a script for its own process (`node -e READ_WRITE_BACK JSON`, JSON `{ ranges, fsync }`):
 * read each adapted range whole and write the same bytes back at its offset (fsync each file when `fsync`).
 */
export const READ_WRITE_BACK = `
const fs = require("node:fs");
const { ranges, fsync } = JSON.parse(process.argv[1]);
const fds = new Map();
let buf = Buffer.alloc(0);
for (const r of ranges) {
  let fd = fds.get(r.file);
  if (fd === undefined) fds.set(r.file, (fd = fs.openSync(r.file, "r+")));
  if (buf.length < r.length) buf = Buffer.alloc(r.length);
  for (let d = 0; d < r.length; ) d += fs.readSync(fd, buf, d, r.length - d, r.offset + d);
  for (let d = 0; d < r.length; ) d += fs.writeSync(fd, buf, d, r.length - d, r.offset + d);
}
for (const fd of fds.values()) { if (fsync) fs.fsyncSync(fd); fs.closeSync(fd); }
`;

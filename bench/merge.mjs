// Merge a VeRA adapter (q_proj + v_proj, r = 256) into Llama-2-7B-shaped float16 ONNX models with
// external data, generated here (never committed): 8, 16 and 32 layers (32 = Llama-2-7B: hidden 4096,
// intermediate 11008, vocab 32000, 13.5 GB). For each size: wall time of `cp` of the same files and of
// `vera merge` (same run, alternating, median of --reps), the ratio, and the merge's peak RSS.
//
//   node bench/merge.mjs [--layers 8,16,32] [--reps 2] [--backend auto] [--dir DIR] [--fsync]
//
// --fsync compares `cp` + `sync` with a durable merge (fsync before rename); by default neither syncs.
// Needs about 3x the largest model's size in free disk space under --dir (default: the OS temp dir).
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { freemem, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { saveResults, table } from "./lib.mjs";
import { builtCli, mergeVsCp, option, sync, timed, timedMerge, writeBenchAdapter } from "./merge-lib.mjs";
import { generateOnnx as generate, H } from "./gen-models.mjs";

const LAYERS = option("layers", "8,16,32").split(",").map(Number);
const REPS = Number(option("reps", "2"));
const BACKEND = option("backend", "auto");
const THREADS = option("threads", "");
const FSYNC = process.argv.slice(2).includes("--fsync");
const BASE = option("dir", tmpdir());
const R = 256;
const cli = builtCli();

const work = mkdtempSync(join(BASE, "vera-bench-merge-"));
const rows = [];
const results = [];
let backendInfo = null;
try {
  for (const layers of LAYERS) {
    const dir = join(work, `l${layers}`);
    mkdirSync(dir);
    console.error(`generating a ${layers}-layer model...`);
    const bytes = generate(dir, layers);
    const adapter = join(work, `adapter-l${layers}.vera.safetensors`);
    await writeBenchAdapter({ layers, path: adapter, hidden: H, rank: R });
    sync();
    const cpOut = join(work, "cp-out");
    const mOut = join(work, "merge-out");
    const { report, columns, result } = mergeVsCp({
      reps: REPS,
      cp: () => {
        mkdirSync(cpOut);
        const c = FSYNC
          ? timed("sh", ["-c", `cp "${dir}/model.onnx" "${dir}/model.onnx_data" "${cpOut}/" && sync`])
          : timed("cp", [join(dir, "model.onnx"), join(dir, "model.onnx_data"), cpOut + "/"]);
        rmSync(cpOut, { recursive: true });
        return c.ms;
      },
      merge: () => {
        const m = timedMerge({
          cli,
          input: join(dir, "model.onnx"),
          adapter,
          output: join(mOut, "model.onnx"),
          backend: BACKEND,
          extra: [...(THREADS ? ["--threads", THREADS] : []), "--json", ...(FSYNC ? [] : ["--no-fsync"])],
        });
        rmSync(mOut, { recursive: true });
        return m;
      },
    });
    backendInfo = report.backendInfo;
    const t = report.timings;
    rows.push({
      layers,
      size: `${(bytes / 1e9).toFixed(2)} GB`,
      merged: `${report.weights} x 4096x4096`,
      ...columns,
      "read s": (t.read / 1000).toFixed(2),
      "write s": (t.write / 1000).toFixed(2),
    });
    results.push({ layers, bytes, mergedWeights: report.weights, ...result });
    rmSync(dir, { recursive: true });
    rmSync(adapter);
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
console.log(
  `\nvera merge vs cp, float16 Llama-2-7B-shaped models, q_proj+v_proj r=${R}, backend ${backendInfo?.name ?? BACKEND} (${backendInfo?.device ?? "?"}), ${FSYNC ? "durable (fsync) vs cp+sync" : "no fsync on either side"}, median of ${REPS}`,
);
table(rows, Object.keys(rows[0] ?? {}));
console.log(
  `\nnote: 2-core machine shared with other work; page cache ${((totalmem() - freemem()) / 1e9).toFixed(1)}/${(totalmem() / 1e9).toFixed(1)} GB in use at the end; files are re-read from cache when they fit`,
);
saveResults("merge", { backend: backendInfo, fsync: FSYNC, reps: REPS, rank: R, results });

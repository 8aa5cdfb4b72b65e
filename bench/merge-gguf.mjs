// Merge a VeRA adapter (q_proj + v_proj, r = 256) into a Llama-2-7B-shaped F16 GGUF generated here
// (never committed): hidden 4096, intermediate 11008, vocab 32000, N layers, llama.cpp's tensor
// names and metadata (32 layers = Llama-2-7B, 13.5 GB). Wall time of `cp` of the file and of
// `vera merge` (same run, alternating, median of --reps), the ratio, and the merge's peak RSS.
//
//   node bench/merge-gguf.mjs [--layers 2] [--reps 2] [--backend auto] [--dir DIR]
//
// Neither side syncs (--no-fsync). Needs about 3x the file's size in free disk space under --dir.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { saveResults, table } from "./lib.mjs";
import { builtCli, mergeVsCp, option, sync, timed, timedMerge, writeBenchAdapter } from "./merge-lib.mjs";
import { generateGguf as generate, H } from "./gen-models.mjs";

const LAYERS = Number(option("layers", "2"));
const REPS = Number(option("reps", "2"));
const BACKEND = option("backend", "auto");
const BASE = option("dir", tmpdir());
const R = 256;
const cli = builtCli();

const work = mkdtempSync(join(BASE, "vera-bench-merge-gguf-"));
let row;
let result;
try {
  const model = join(work, "model-f16.gguf");
  console.error(`generating a ${LAYERS}-layer GGUF...`);
  const bytes = await generate(model, LAYERS);
  const adapter = join(work, "adapter.vera.safetensors");
  await writeBenchAdapter({ layers: LAYERS, path: adapter, hidden: H, rank: R });
  sync();
  const cpOut = join(work, "cp-out.gguf");
  const mOut = join(work, "merge-out.gguf");
  const {
    report,
    columns,
    result: times,
  } = mergeVsCp({
    reps: REPS,
    cp: () => {
      const { ms } = timed("cp", [model, cpOut]);
      rmSync(cpOut);
      return ms;
    },
    merge: () => {
      const m = timedMerge({
        cli,
        input: model,
        adapter,
        output: mOut,
        backend: BACKEND,
        extra: ["--json", "--no-fsync"],
      });
      rmSync(mOut);
      return m;
    },
  });
  row = {
    layers: LAYERS,
    size: `${(bytes / 1e9).toFixed(2)} GB`,
    merged: `${report.weights} x 4096x4096 f16`,
    ...columns,
  };
  result = { layers: LAYERS, bytes, mergedWeights: report.weights, backend: report.backendInfo, ...times };
} finally {
  rmSync(work, { recursive: true, force: true });
}
console.log(
  `\nvera merge vs cp, F16 Llama-2-7B-shaped GGUF, attn_q (permuted) + attn_v r=${R}, backend ${result.backend?.name ?? BACKEND} (${result.backend?.device ?? "?"}), no fsync, median of ${REPS}`,
);
table([row], Object.keys(row));
saveResults("merge-gguf", { reps: REPS, rank: R, result });

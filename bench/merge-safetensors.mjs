// Merge a VeRA adapter (q_proj + v_proj, r = 256) into a Llama-2-7B-shaped bfloat16 safetensors
// checkpoint generated here (never committed): hidden 4096, intermediate 11008, vocab 32000, N
// layers split into 3 shards with model.safetensors.index.json, as transformers save_pretrained
// writes them (32 layers = Llama-2-7B, 13.5 GB). Wall time of `cp -r` of the folder and of
// `vera merge` (same run, alternating, median of --reps), the ratio, and the merge's peak RSS. With --python
// (a Python that has torch, transformers and peft), also PEFT's merge of the same adapter in the same run
// (bench/peft-merge.py: from_pretrained, PeftModel.from_pretrained, merge_and_unload, save_pretrained in as many
// shards), its wall time as a ratio to `vera merge`'s, and its peak RSS.
//
//   node bench/merge-safetensors.mjs [--layers 2] [--reps 2] [--backend auto] [--dir DIR] [--python PATH] [--keep DIR]
//     [--results NAME]   (bench/results/NAME.json; default merge-safetensors)
//
// None of them syncs (--no-fsync; save_pretrained does not fsync either); a `sync` runs between runs and is not
// timed. Needs about 3x the checkpoint's size in free disk space under --dir.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { saveResults, table } from "./lib.mjs";
import { builtCli, mergeVsCp, option, sync, timed, timedMerge, writeBenchAdapter } from "./merge-lib.mjs";
import { root } from "./lib.mjs";
import { generateCheckpoint as generate, H, SHARDS } from "./gen-models.mjs";

const LAYERS = Number(option("layers", "2"));
const REPS = Number(option("reps", "2"));
const BACKEND = option("backend", "auto");
const BASE = option("dir", tmpdir());
const PYTHON = option("python", null);
const KEEP = option("keep", null);
const R = 256;
const cli = builtCli();

const work = mkdtempSync(join(BASE, "vera-bench-merge-st-"));
let row;
let result;
try {
  // --keep DIR: generate the checkpoint there once and reuse it in later runs (same --layers).
  const dir = KEEP ?? join(work, "base");
  let bytes;
  if (KEEP && existsSync(join(KEEP, "model.safetensors.index.json")))
    bytes = readdirSync(KEEP)
      .filter((f) => f.endsWith(".safetensors"))
      .reduce((n, f) => n + statSync(join(KEEP, f)).size, 0);
  else {
    mkdirSync(dir, { recursive: true });
    console.error(`generating a ${LAYERS}-layer checkpoint...`);
    bytes = generate(dir, LAYERS);
  }
  const adapter = join(work, "adapter.vera.safetensors");
  await writeBenchAdapter({ layers: LAYERS, path: adapter, hidden: H, rank: R });
  sync();
  const cpOut = join(work, "cp-out");
  const mOut = join(work, "merge-out");
  const peftAdapter = join(work, "peft-adapter");
  const peftOut = join(work, "peft-out");
  if (PYTHON) timed(process.execPath, [cli, "export-peft", adapter, "-o", peftAdapter]);
  const maxShard = String(Math.ceil(bytes / SHARDS / 1e8) * 1e8 + 1e8);
  const {
    report,
    columns,
    result: times,
  } = mergeVsCp({
    reps: REPS,
    cp: () => {
      const { ms } = timed("cp", ["-r", dir, cpOut]);
      rmSync(cpOut, { recursive: true });
      return ms;
    },
    merge: () => {
      const m = timedMerge({
        cli,
        input: dir,
        adapter,
        output: mOut,
        backend: BACKEND,
        extra: ["--json", "--no-fsync"],
      });
      rmSync(mOut, { recursive: true });
      return m;
    },
    ...(PYTHON
      ? {
          baseline: () => {
            const b = timed(PYTHON, [join(root, "bench/peft-merge.py"), dir, peftAdapter, peftOut, maxShard]);
            rmSync(peftOut, { recursive: true });
            return b;
          },
        }
      : {}),
  });
  row = {
    layers: LAYERS,
    size: `${(bytes / 1e9).toFixed(2)} GB`,
    merged: `${report.weights} x 4096x4096 bf16`,
    ...columns,
  };
  result = { layers: LAYERS, bytes, mergedWeights: report.weights, backend: report.backendInfo, ...times };
} finally {
  rmSync(work, { recursive: true, force: true });
}
console.log(
  `\nvera merge vs cp -r, bfloat16 Llama-2-7B-shaped safetensors checkpoint (3 shards), q_proj+v_proj r=${R}, backend ${result.backend?.name ?? BACKEND} (${result.backend?.device ?? "?"}), no fsync, median of ${REPS}`,
);
table([row], Object.keys(row));
saveResults(option("results", "merge-safetensors"), { reps: REPS, rank: R, result });

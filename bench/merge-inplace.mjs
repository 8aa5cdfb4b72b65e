// `vera merge --in-place` against the least any in-place merge must do: read and write back only the adapted
// tensors' bytes. A VeRA adapter (q_proj + v_proj, r = 256) on a Llama-2-7B-shaped model generated here (never
// committed; bench/gen-models.mjs): an fp16 ONNX model with external data and a bf16 safetensors checkpoint in 3
// shards, N layers (32 = Llama-2-7B, 13.5 GB). For each: wall time of the baseline (a Node process that reads
// each adapted tensor's range whole and writes the same bytes back at the same offset) and of `vera merge
// --in-place` (same run, alternating, median of --reps), the ratio, the merge's peak RSS and its phases; and a
// check that no byte outside the adapted ranges changed (a digest of every other byte before and after).
//
//   node bench/merge-inplace.mjs [--layers 32] [--reps 3] [--backend auto] [--dir DIR] [--fsync] [--only onnx|safetensors]
//
// By default neither syncs (--no-fsync; the journal is still written); --fsync makes the baseline fsync each
// file at the end and runs the merge durable (journal synced before each overwrite, files before the commit).
// Needs the model's size in free disk space under --dir, plus the adapted tensors' size for the journal.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { closeSync, mkdirSync, mkdtempSync, openSync, readSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { saveResults, table } from "./lib.mjs";
import { builtCli, median, option, READ_WRITE_BACK, sync, timed, writeBenchAdapter } from "./merge-lib.mjs";
import { generateCheckpoint, generateOnnx, H } from "./gen-models.mjs";

const LAYERS = Number(option("layers", "32"));
const REPS = Number(option("reps", "3"));
const BACKEND = option("backend", "auto");
const BASE = option("dir", tmpdir());
const ONLY = option("only", null);
const FSYNC = process.argv.slice(2).includes("--fsync");
const R = 256;
const cli = builtCli();

/** The adapted ranges ({file, offset, length}) from a dry run's report. */
function adaptedRanges(dir, model, adapter) {
  const r = spawnSync(process.execPath, [cli, "merge", model, adapter, "--dry-run", "--json"], {
    encoding: "utf8",
    maxBuffer: 64 << 20,
  });
  if (r.status !== 0) throw new Error(`dry run failed: ${r.stderr}`);
  const report = JSON.parse(r.stdout);
  return report.modules.map((m) => {
    const s = /^(?:external:)?(.+)@(\d+)$/.exec(m.storage);
    if (!s) throw new Error(`unexpected storage ${m.storage}`);
    return { file: join(dir, s[1]), offset: Number(s[2]), length: m.inFeatures * m.outFeatures * 2 };
  });
}

/** SHA-256 of every byte of the model's files outside the adapted ranges. */
function digestOutside(files, ranges) {
  const h = createHash("sha256");
  const buf = Buffer.alloc(64 << 20);
  for (const f of files) {
    const skip = ranges.filter((r) => r.file === f).sort((a, b) => a.offset - b.offset);
    const fd = openSync(f, "r");
    let pos = 0;
    const readTo = (end) => {
      while (pos < end) {
        const n = readSync(fd, buf, 0, Math.min(buf.length, end - pos), pos);
        if (n === 0) return false;
        h.update(buf.subarray(0, n));
        pos += n;
      }
      return true;
    };
    for (const r of skip) {
      readTo(r.offset);
      pos = r.offset + r.length;
    }
    readTo(Number.MAX_SAFE_INTEGER);
    closeSync(fd);
  }
  return h.digest("hex");
}

function bench(kind, dir, model, files, adapter) {
  const ranges = adaptedRanges(dir, model, adapter);
  const bytes = ranges.reduce((n, r) => n + r.length, 0);
  const before = digestOutside(files, ranges);
  const baseMs = [];
  const mergeMs = [];
  const rss = [];
  let report;
  for (let rep = 0; rep < REPS; rep++) {
    baseMs.push(timed(process.execPath, ["-e", READ_WRITE_BACK, JSON.stringify({ ranges, fsync: FSYNC })]).ms);
    sync();
    const m = timed(process.execPath, [
      cli,
      "merge",
      model,
      adapter,
      "--in-place",
      "--backend",
      BACKEND,
      "--json",
      ...(FSYNC ? [] : ["--no-fsync"]),
    ]);
    mergeMs.push(m.ms);
    if (m.rssMB !== null) rss.push(m.rssMB);
    report = JSON.parse(m.stdout);
    sync();
  }
  const untouched = digestOutside(files, ranges) === before;
  if (!untouched) throw new Error(`${kind}: bytes outside the adapted ranges changed`);
  const b = median(baseMs);
  const mg = median(mergeMs);
  const t = report.timings;
  return {
    row: {
      model: kind,
      adapted: `${ranges.length} x 4096x4096 (${(bytes / 1e9).toFixed(2)} GB)`,
      "r+w s": (b / 1000).toFixed(2),
      "in-place s": (mg / 1000).toFixed(2),
      ratio: (mg / b).toFixed(2),
      "peak RSS MB": rss.length ? Math.max(...rss).toFixed(0) : "n/a",
      "read s": (t.read / 1000).toFixed(2),
      "compute s": (t.compute / 1000).toFixed(2),
      "write s": (t.write / 1000).toFixed(2),
      "other bytes": untouched ? "unchanged" : "CHANGED",
    },
    result: {
      model: kind,
      adaptedTensors: ranges.length,
      adaptedBytes: bytes,
      baselineMs: baseMs,
      mergeMs,
      ratio: mg / b,
      peakRssMB: rss.length ? Math.max(...rss) : null,
      otherBytesUnchanged: untouched,
      timings: t,
      backend: report.backendInfo ?? null,
    },
  };
}

const work = mkdtempSync(join(BASE, "vera-bench-inplace-"));
const rows = [];
const results = [];
try {
  const adapter = join(work, "adapter.vera.safetensors");
  await writeBenchAdapter({ layers: LAYERS, path: adapter, hidden: H, rank: R });
  for (const kind of ["onnx", "safetensors"]) {
    if (ONLY && ONLY !== kind) continue;
    const dir = join(work, kind);
    mkdirSync(dir);
    console.error(`generating a ${LAYERS}-layer ${kind} model...`);
    let model;
    let files;
    if (kind === "onnx") {
      generateOnnx(dir, LAYERS);
      model = join(dir, "model.onnx");
      files = [join(dir, "model.onnx"), join(dir, "model.onnx_data")];
    } else {
      generateCheckpoint(dir, LAYERS);
      model = dir;
      files = [1, 2, 3].map((k) => join(dir, `model-0000${k}-of-00003.safetensors`));
    }
    sync();
    const { row, result } = bench(kind, dir, model, files, adapter);
    rows.push(row);
    results.push(result);
    rmSync(dir, { recursive: true });
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
console.log(
  `\nvera merge --in-place vs reading and writing back only the adapted bytes, Llama-2-7B-shaped (${LAYERS} layers), q_proj+v_proj r=${R}, ${FSYNC ? "fsync" : "no fsync"}, median of ${REPS}`,
);
table(rows, Object.keys(rows[0]));
saveResults(FSYNC ? "merge-inplace-fsync" : "merge-inplace", {
  layers: LAYERS,
  reps: REPS,
  rank: R,
  fsync: FSYNC,
  results,
});

// Two builds of verakit (this one and --base, another checkout's built dist/) merging the same VeRA adapter
// (q_proj + v_proj, r = 256) into the same Llama-2-7B-shaped models (bench/gen-models.mjs, never committed): an fp16
// ONNX model with external data, a bf16 safetensors checkpoint in 3 shards and an F16 GGUF (attn_q permuted), N
// layers (32 = Llama-2-7B, 13.5 GB each). Both builds run in the same run, alternating rep by rep, with:
// - into new files: `cp` of the model's files, `vera merge -o` of each build, and with --python PEFT's
//   merge_and_unload + save_pretrained (bench/peft-merge.py, safetensors only);
// - in place: the floor, measured in the same rep = the kernel alone (bench/kernel-floor.mjs: the adapted weights
//   merged in memory by the onnxruntime CPU backend, every core) + reading and writing back the adapted bytes (a
//   Node process, as bench/merge-inplace.mjs), then `vera merge --in-place` of each build.
// Medians, ratios, each merge's phases and peak RSS, the load average before each container. Before each timed run
// the model's files are read (untimed), so each starts with them in the page cache. Checked in the first
// rep: both builds' new files are byte-identical, and this build's in-place result is byte-identical to them.
//
//   node bench/merge-ab.mjs --base DIR [--layers 8] [--reps 3] [--only onnx,safetensors,gguf]
//     [--modes newfile,inplace] [--python PATH] [--dir DIR] [--results NAME] [--floor-layout merge|out_in]
//
// The floor's GEMMs are in the layout the merge uses (the dry run's report: [in, out] for the ONNX model's MatMul
// weights, [out, in] for safetensors and GGUF); `--floor-layout out_in` times [out, in] GEMMs for every container,
// as runs before 2026-12-07 02:00 UTC did.
//
// Nothing syncs (--no-fsync; the undo journal is still written); a `sync` runs between runs, untimed. Needs about
// twice the model's size in free disk space under --dir (one container at a time).
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readSync,
  readdirSync,
  rmSync,
  statSync,
} from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { basename, join } from "node:path";
import { root, saveResults, table } from "./lib.mjs";
import { median, option, READ_WRITE_BACK, sync, timed, writeBenchAdapter } from "./merge-lib.mjs";
import { generateCheckpoint, generateGguf, generateOnnx, H, SHARDS } from "./gen-models.mjs";

const LAYERS = Number(option("layers", "8"));
const REPS = Number(option("reps", "3"));
const BASE = option("base", null);
const ONLY = (option("only", "onnx,safetensors,gguf") ?? "").split(",");
const MODES = (option("modes", "newfile,inplace") ?? "").split(",");
const PYTHON = option("python", null);
const DIR = option("dir", tmpdir());
const FLOOR_LAYOUT = option("floor-layout", "merge");
const R = 256;
if (!BASE || !existsSync(join(BASE, "dist/cli/index.js"))) throw new Error("--base DIR: a checkout with a built dist/");
// The results name the base build by its commit, not by where it lies on this machine.
const baseRev = spawnSync("git", ["-C", BASE, "rev-parse", "--short", "HEAD"], { encoding: "utf8" });
const BASE_LABEL = baseRev.status === 0 ? `a build of ${baseRev.stdout.trim()}` : "the --base build";
const builds = { base: join(BASE, "dist/cli/index.js"), new: join(root, "dist/cli/index.js") };

const s = (ms) => (ms / 1000).toFixed(2);
const fileDigest = (path) => {
  const h = createHash("sha256");
  const buf = Buffer.alloc(64 << 20);
  const fd = openSync(path, "r");
  for (let pos = 0; ; ) {
    const n = readSync(fd, buf, 0, buf.length, pos);
    if (n === 0) break;
    h.update(buf.subarray(0, n));
    pos += n;
  }
  closeSync(fd);
  return h.digest("hex");
};
/** Digest of every regular file in a folder (or of the given files), by base name. */
const digests = (paths) => Object.fromEntries(paths.map((p) => [basename(p), fileDigest(p)]));
const filesIn = (dir) =>
  readdirSync(dir)
    .filter((f) => !f.startsWith("."))
    .map((f) => join(dir, f))
    .filter((p) => statSync(p).isFile());

function merge(cli, input, adapter, extra) {
  const m = timed(process.execPath, [
    cli,
    "merge",
    input,
    adapter,
    "--backend",
    "auto",
    "--json",
    "--no-fsync",
    ...extra,
  ]);
  return { ...m, report: JSON.parse(m.stdout) };
}

/** The adapted ranges ({file, offset, length, layout}) from a dry run's report. */
function adaptedRanges(dir, model, adapter) {
  const r = spawnSync(process.execPath, [builds.new, "merge", model, adapter, "--dry-run", "--json"], {
    encoding: "utf8",
    maxBuffer: 64 << 20,
  });
  if (r.status !== 0) throw new Error(`dry run failed: ${r.stderr}`);
  return JSON.parse(r.stdout).modules.map((m) => {
    const x = /^(?:external:)?(.+)@(\d+)$/.exec(m.storage);
    if (!x) throw new Error(`unexpected storage ${m.storage}`);
    return { file: join(dir, x[1]), offset: Number(x[2]), length: m.inFeatures * m.outFeatures * 2, layout: m.layout };
  });
}

/**
 * Read the model's files (untimed) so every timed run starts with them in the page cache: a 13.5 GB output read
 * back for a digest evicts them, which would slow whichever run comes next.
 */
const warm = (files) => spawnSync("cat", files, { stdio: ["ignore", "ignore", "inherit"] });

/** Medians of CPU seconds (user + system, every thread), "a/b/c"; "n/a" without /usr/bin/time. */
const cpuCell = (...lists) =>
  lists.every((l) => l.every((x) => x !== null)) ? lists.map((l) => median(l).toFixed(1)).join("/") : "n/a";

const phases = (r) => {
  const t = r.timings;
  return `r ${s(t.read)} c ${s(t.compute)} w ${s(t.write)}${t.copy ? ` cp ${s(t.copy)}` : ""}`;
};

/** Into new files: cp, base, new (and PEFT) alternating; the first rep checks both builds' bytes. */
function newFiles({ kind, model, files, adapter, work, bytes }) {
  const t = { cp: [], base: [], new: [], peft: [] };
  const rss = { base: [], new: [], peft: [] };
  const cpu = { base: [], new: [] };
  const last = {};
  let identical = null;
  let newDigests = null;
  const out = join(work, "out");
  const outModel = kind === "onnx" ? join(out, "model.onnx") : kind === "gguf" ? join(work, "out.gguf") : out;
  const peftAdapter = join(work, "peft-adapter");
  if (PYTHON && kind === "safetensors")
    timed(process.execPath, [builds.new, "export-peft", adapter, "-o", peftAdapter]);
  for (let rep = 0; rep < REPS; rep++) {
    const cpOut = join(work, "cp-out");
    mkdirSync(cpOut);
    warm(files);
    t.cp.push(timed("cp", [...files, cpOut + "/"]).ms);
    rmSync(cpOut, { recursive: true });
    sync();
    const got = {};
    for (const b of rep % 2 ? ["new", "base"] : ["base", "new"]) {
      warm(files);
      const m = merge(builds[b], model, adapter, ["-o", outModel]);
      t[b].push(m.ms);
      rss[b].push(m.rssMB);
      cpu[b].push(m.cpuS);
      last[b] = m.report;
      if (rep === 0) got[b] = digests(kind === "gguf" ? [outModel] : filesIn(out));
      rmSync(kind === "gguf" ? outModel : out, { recursive: true, force: true });
      sync();
    }
    if (rep === 0) {
      identical = JSON.stringify(got.base) === JSON.stringify(got.new);
      newDigests = got.new;
      if (!identical) throw new Error(`${kind}: the two builds' merged files differ`);
    }
    if (PYTHON && kind === "safetensors") {
      warm(files);
      const maxShard = String(Math.ceil(bytes / SHARDS / 1e8) * 1e8 + 1e8);
      const p = timed(PYTHON, [
        join(root, "bench/peft-merge.py"),
        model,
        peftAdapter,
        join(work, "peft-out"),
        maxShard,
      ]);
      t.peft.push(p.ms);
      rss.peft.push(p.rssMB);
      rmSync(join(work, "peft-out"), { recursive: true, force: true });
      sync();
    }
  }
  const cp = median(t.cp);
  const row = {
    model: kind,
    "cp s": s(cp),
    "before s": s(median(t.base)),
    "after s": s(median(t.new)),
    "before/cp": (median(t.base) / cp).toFixed(2),
    "after/cp": (median(t.new) / cp).toFixed(2),
    "after/cp per rep": t.new.map((x, i) => (x / t.cp[i]).toFixed(2)).join(" "),
    "before/after": (median(t.base) / median(t.new)).toFixed(2),
    "RSS MB before/after": `${Math.max(...rss.base).toFixed(0)}/${Math.max(...rss.new).toFixed(0)}`,
    "CPU s before/after": cpuCell(cpu.base, cpu.new),
    "after phases s": phases(last.new),
    ...(t.peft.length
      ? { "PEFT s": s(median(t.peft)), "PEFT/after": (median(t.peft) / median(t.new)).toFixed(2) }
      : {}),
    identical: identical ? "yes" : "NO",
  };
  return {
    row,
    result: { kind, ms: t, rssMB: rss, cpuS: cpu, timings: { base: last.base.timings, new: last.new.timings } },
    newDigests,
  };
}

/** In place: the floor (kernel + adapted-bytes read/write), base, new alternating; the first rep checks new's bytes. */
function inPlace({ kind, dir, model, files, adapter, newDigests, dtype }) {
  const ranges = adaptedRanges(dir, model, adapter);
  const layouts = [...new Set(ranges.map((r) => r.layout))];
  if (layouts.length !== 1) throw new Error(`${kind}: weights in more than one layout (${layouts.join(", ")})`);
  const layout = FLOOR_LAYOUT === "merge" ? layouts[0] : FLOOR_LAYOUT;
  const t = { kernel: [], rw: [], floor: [], base: [], new: [] };
  const rss = { base: [], new: [] };
  const cpu = { kernel: [], base: [], new: [] };
  const last = {};
  let identical = null;
  for (let rep = 0; rep < REPS; rep++) {
    const kt = timed(process.execPath, [
      join(root, "bench/kernel-floor.mjs"),
      ...["--n", String(ranges.length), "--dtype", dtype, "--layout", layout],
    ]);
    const k = JSON.parse(kt.stdout);
    cpu.kernel.push(kt.cpuS);
    warm(files);
    const rw = timed(process.execPath, ["-e", READ_WRITE_BACK, JSON.stringify({ ranges, fsync: false })]).ms;
    sync();
    t.kernel.push(k.ms);
    t.rw.push(rw);
    t.floor.push(k.ms + rw);
    for (const b of rep % 2 ? ["base", "new"] : ["new", "base"]) {
      warm(files);
      const m = merge(builds[b], model, adapter, ["--in-place"]);
      t[b].push(m.ms);
      rss[b].push(m.rssMB);
      cpu[b].push(m.cpuS);
      last[b] = m.report;
      sync();
      if (rep === 0 && b === "new" && newDigests) {
        const got = digests(files);
        identical = Object.keys(got).every((f) => newDigests[f] === undefined || newDigests[f] === got[f]);
        if (!identical) throw new Error(`${kind}: the in-place result differs from the merge into new files`);
      }
    }
  }
  const floor = median(t.floor);
  const row = {
    model: kind,
    "floor layout": layout,
    "kernel s": s(median(t.kernel)),
    "r+w s": s(median(t.rw)),
    "floor s": s(floor),
    "before s": s(median(t.base)),
    "after s": s(median(t.new)),
    "before/floor": (median(t.base) / floor).toFixed(2),
    "after/floor": (median(t.new) / floor).toFixed(2),
    "before/after": (median(t.base) / median(t.new)).toFixed(2),
    "RSS MB before/after": `${Math.max(...rss.base).toFixed(0)}/${Math.max(...rss.new).toFixed(0)}`,
    "CPU s kernel/before/after": cpuCell(cpu.kernel, cpu.base, cpu.new),
    "after phases s": phases(last.new),
    "same bytes as new files": identical === null ? "not checked" : identical ? "yes" : "NO",
  };
  return {
    row,
    result: { kind, ms: t, rssMB: rss, cpuS: cpu, timings: { base: last.base.timings, new: last.new.timings } },
  };
}

const work = mkdtempSync(join(DIR, "vera-bench-ab-"));
const rows = { newfile: [], inplace: [] };
const results = [];
try {
  const adapter = join(work, "adapter.vera.safetensors");
  await writeBenchAdapter({ layers: LAYERS, path: adapter, hidden: H, rank: R });
  for (const kind of ["onnx", "safetensors", "gguf"]) {
    if (!ONLY.includes(kind)) continue;
    const dir = join(work, kind);
    mkdirSync(dir);
    console.error(`${new Date().toISOString()} generating a ${LAYERS}-layer ${kind} model...`);
    let model, files, bytes;
    if (kind === "onnx") {
      generateOnnx(dir, LAYERS);
      model = join(dir, "model.onnx");
      files = [model, join(dir, "model.onnx_data")];
    } else if (kind === "safetensors") {
      generateCheckpoint(dir, LAYERS);
      model = dir;
      files = filesIn(dir);
    } else {
      model = join(dir, "model.gguf");
      await generateGguf(model, LAYERS);
      files = [model];
    }
    bytes = files.reduce((n, f) => n + statSync(f).size, 0);
    sync();
    const load = loadavg()
      .map((x) => x.toFixed(1))
      .join(" ");
    const x = { kind, model, files, adapter, work, bytes, dir, dtype: kind === "safetensors" ? "BF16" : "F16" };
    let newDigests = null;
    if (MODES.includes("newfile")) {
      console.error(`${new Date().toISOString()} ${kind}: into new files...`);
      const n = newFiles(x);
      newDigests = n.newDigests;
      rows.newfile.push({ ...n.row, "load avg": load });
      results.push({ mode: "newfile", loadavg: load, ...n.result });
    }
    if (MODES.includes("inplace")) {
      console.error(`${new Date().toISOString()} ${kind}: in place...`);
      const p = inPlace({ ...x, newDigests });
      rows.inplace.push({ ...p.row, "load avg": load });
      results.push({ mode: "inplace", loadavg: load, ...p.result });
    }
    rmSync(dir, { recursive: true, force: true });
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
const head = `${LAYERS} layers (Llama-2-7B shape), q_proj+v_proj r=${R}, no fsync, median of ${REPS}, builds alternating`;
if (rows.newfile.length) {
  console.log(`\ninto new files: before (${BASE_LABEL}) and after (this build) vs cp, ${head}`);
  table(rows.newfile, [...new Set(rows.newfile.flatMap((r) => Object.keys(r)))]);
}
if (rows.inplace.length) {
  console.log(`\nin place: before and after vs the floor (kernel + adapted-bytes read/write), ${head}`);
  table(rows.inplace, [...new Set(rows.inplace.flatMap((r) => Object.keys(r)))]);
}
saveResults(option("results", "merge-ab"), { layers: LAYERS, reps: REPS, rank: R, base: BASE_LABEL, rows, results });

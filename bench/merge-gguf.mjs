// Merge a VeRA adapter (q_proj + v_proj, r = 256) into a Llama-2-7B-shaped F16 GGUF generated here
// (never committed): hidden 4096, intermediate 11008, vocab 32000, N layers, llama.cpp's tensor
// names and metadata (32 layers = Llama-2-7B, 13.5 GB). Wall time of `cp` of the file and of
// `vera merge` (same run, alternating, median of --reps), the ratio, and the merge's peak RSS.
//
//   node bench/merge-gguf.mjs [--layers 2] [--reps 2] [--backend auto] [--dir DIR]
//
// Neither side syncs (--no-fsync). Needs about 3x the file's size in free disk space under --dir.
import { spawnSync } from "node:child_process";
import { closeSync, existsSync, mkdtempSync, openSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { root, saveResults, table } from "./lib.mjs";

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const LAYERS = Number(opt("layers", "2"));
const REPS = Number(opt("reps", "2"));
const BACKEND = opt("backend", "auto");
const BASE = opt("dir", tmpdir());
const H = 4096,
  I = 11008,
  V = 32000,
  R = 256,
  HEADS = 32;
const cli = join(root, "dist/cli/index.js");
if (!existsSync(cli)) throw new Error("build first: npx tsup");
const { createAdapter, writeVera } = await import(join(root, "dist/format/index.js"));
const { planGguf, GgmlType, GgufValueType: T } = await import(join(root, "dist/gguf/index.js"));
const { writeFileAtomic } = await import(join(root, "dist/node/index.js"));

/** The file's tensors in llama.cpp's order: [name, ne, type]. */
function tensors(layers) {
  const out = [["token_embd.weight", [H, V], GgmlType.F16]];
  for (let l = 0; l < layers; l++) {
    const p = `blk.${l}`;
    out.push(
      [`${p}.attn_norm.weight`, [H], GgmlType.F32],
      [`${p}.ffn_down.weight`, [I, H], GgmlType.F16],
      [`${p}.ffn_gate.weight`, [H, I], GgmlType.F16],
      [`${p}.ffn_up.weight`, [H, I], GgmlType.F16],
      [`${p}.ffn_norm.weight`, [H], GgmlType.F32],
      [`${p}.attn_k.weight`, [H, H], GgmlType.F16],
      [`${p}.attn_output.weight`, [H, H], GgmlType.F16],
      [`${p}.attn_q.weight`, [H, H], GgmlType.F16],
      [`${p}.attn_v.weight`, [H, H], GgmlType.F16],
    );
  }
  out.push(["output_norm.weight", [H], GgmlType.F32], ["output.weight", [H, V], GgmlType.F16]);
  return out;
}

/** Write the GGUF (header by verakit's planner, data as small random f16 values); returns its size. */
function generate(path, layers) {
  const u32 = (value) => ({ type: T.UINT32, value });
  const plan = planGguf({
    metadata: [
      ["general.architecture", { type: T.STRING, value: "llama" }],
      ["general.name", { type: T.STRING, value: "bench" }],
      ["llama.block_count", u32(layers)],
      ["llama.context_length", u32(4096)],
      ["llama.embedding_length", u32(H)],
      ["llama.feed_forward_length", u32(I)],
      ["llama.attention.head_count", u32(HEADS)],
      ["llama.attention.head_count_kv", u32(HEADS)],
      ["general.file_type", u32(1)],
    ],
    tensors: tensors(layers).map(([name, ne, type]) => ({ name, ne, type })),
  });
  const chunk = Buffer.alloc(64 << 20);
  let s = 12345;
  for (let i = 0; i < chunk.length; i += 2) {
    s = (s * 1103515245 + 12345) >>> 0;
    chunk.writeUInt16LE(0x2000 | (s >>> 23) | ((s & 1) << 15), i); // small f16 values of both signs
  }
  const fd = openSync(path, "w");
  writeSync(fd, plan.header, 0, plan.header.length, 0);
  for (const t of plan.tensors)
    for (let done = 0; done < t.byteLength + t.padding; ) {
      const n = Math.min(chunk.length, t.byteLength + t.padding - done);
      writeSync(fd, chunk, 0, n, t.position + done);
      done += n;
    }
  closeSync(fd);
  return plan.size;
}

function adapterFor(layers, path) {
  const modules = [];
  for (let l = 0; l < layers; l++)
    for (const m of ["q_proj", "v_proj"])
      modules.push({ name: `model.layers.${l}.self_attn.${m}`, inFeatures: H, outFeatures: H });
  const a = createAdapter({ modules, rank: R, seed: 1234 });
  let s = 7;
  const rnd = () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32 - 0.5) * 0.02;
  for (const m of a.modules) {
    m.lambdaB.forEach((_, i) => (m.lambdaB[i] = rnd()));
    m.lambdaD.forEach((_, i) => (m.lambdaD[i] = rnd() * 10));
  }
  return writeFileAtomic(path, writeVera({ adapter: a }));
}

const hasTime = existsSync("/usr/bin/time");
function timed(cmd, argv) {
  const full = hasTime ? ["/usr/bin/time", ["-f", "__RSS_KB=%M", cmd, ...argv]] : [cmd, argv];
  const t0 = performance.now();
  const r = spawnSync(full[0], full[1], { encoding: "utf8", maxBuffer: 256 << 20 });
  const ms = performance.now() - t0;
  if (r.status !== 0) throw new Error(`${cmd} ${argv.join(" ")} failed (${r.status}): ${r.stderr}`);
  const m = /__RSS_KB=(\d+)/.exec(r.stderr);
  return { ms, rssMB: m ? Number(m[1]) / 1024 : null, stdout: r.stdout };
}
const sync = () => spawnSync("sync");
const median = (xs) => {
  const v = [...xs].sort((a, b) => a - b);
  const m = Math.floor(v.length / 2);
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
};

const work = mkdtempSync(join(BASE, "vera-bench-merge-gguf-"));
let row;
let result;
try {
  const model = join(work, "model-f16.gguf");
  console.error(`generating a ${LAYERS}-layer GGUF...`);
  const bytes = generate(model, LAYERS);
  const adapter = join(work, "adapter.vera.safetensors");
  await adapterFor(LAYERS, adapter);
  sync();
  const cpMs = [];
  const mergeMs = [];
  const rss = [];
  let report = null;
  for (let rep = 0; rep < REPS; rep++) {
    const cpOut = join(work, "cp-out.gguf");
    cpMs.push(timed("cp", [model, cpOut]).ms);
    rmSync(cpOut);
    sync();
    const mOut = join(work, "merge-out.gguf");
    const m = timed(process.execPath, [
      cli,
      "merge",
      model,
      adapter,
      "-o",
      mOut,
      "--backend",
      BACKEND,
      "--json",
      "--no-fsync",
    ]);
    mergeMs.push(m.ms);
    if (m.rssMB !== null) rss.push(m.rssMB);
    report = JSON.parse(m.stdout);
    rmSync(mOut);
    sync();
  }
  const cp = median(cpMs);
  const mg = median(mergeMs);
  const t = report.timings;
  row = {
    layers: LAYERS,
    size: `${(bytes / 1e9).toFixed(2)} GB`,
    merged: `${report.weights} x 4096x4096 f16`,
    "cp s": (cp / 1000).toFixed(2),
    "merge s": (mg / 1000).toFixed(2),
    ratio: (mg / cp).toFixed(2),
    "peak RSS MB": rss.length ? Math.max(...rss).toFixed(0) : "n/a",
    "compute s": (t.compute / 1000).toFixed(2),
    "copy s": (t.copy / 1000).toFixed(2),
  };
  result = {
    layers: LAYERS,
    bytes,
    mergedWeights: report.weights,
    backend: report.backendInfo,
    cpMs,
    mergeMs,
    ratio: mg / cp,
    peakRssMB: rss.length ? Math.max(...rss) : null,
    timings: t,
  };
} finally {
  rmSync(work, { recursive: true, force: true });
}
console.log(
  `\nvera merge vs cp, F16 Llama-2-7B-shaped GGUF, attn_q (permuted) + attn_v r=${R}, backend ${result.backend?.name ?? BACKEND} (${result.backend?.device ?? "?"}), no fsync, median of ${REPS}`,
);
table([row], Object.keys(row));
saveResults("merge-gguf", { reps: REPS, rank: R, result });

// Merge-kernel benchmark: GFLOP/s of each compute backend next to PyTorch measured in the same run.
// Usage: npm run build && node bench/compute.mjs   (env: VERAKIT_PYTHON, VERAKIT_BENCH_REPS, VERAKIT_BENCH_QUICK=1)
// Writes bench/results/compute.json. A merge of an out x in weight at rank r costs 2*out*r*in flops.
import { spawn } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";
import { createReferenceBackend, createWasmBackend } from "../dist/compute/index.js";
import { buildOnnxModel, createDawnBackend, createOrtBackend } from "../dist/node/index.js";
import { findPython as findTorchPython } from "./lib.mjs";

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const REPS = Number(process.env.VERAKIT_BENCH_REPS ?? 5);
const QUICK = process.env.VERAKIT_BENCH_QUICK === "1";
const THREADS = typeof os.availableParallelism === "function" ? os.availableParallelism() : os.cpus().length;

// ---------- inputs ----------
function rand(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296 - 0.5;
  };
}
function f32(n, r, scale = 1) {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = r() * scale;
  return a;
}
const sharedA = new Map();
function makeTask({ out, inF, rank, dtype, layout = "out_in" }) {
  const r = rand(out * 31 + inF * 7 + rank);
  const key = `${rank}x${inF}`;
  if (!sharedA.has(key)) sharedA.set(key, f32(rank * inF, r));
  const n = out * inF;
  const weight = new Uint8Array(n * (dtype === "F32" ? 4 : 2));
  if (dtype === "F32") new Float32Array(weight.buffer).set(f32(n, r));
  else {
    const u = new Uint16Array(weight.buffer);
    // values in [-0.5, 0.5): f16 0x3800 = 0.5, bf16 0x3f00 = 0.5
    for (let i = 0; i < n; i++)
      u[i] = ((dtype === "F16" ? 0x3000 : 0x3e00) + ((i * 2654435761) >>> 24)) | (i & 1 ? 0x8000 : 0);
  }
  return {
    name: `bench.${out}x${inF}`,
    dtype,
    layout,
    outFeatures: out,
    inFeatures: inF,
    rank,
    weight,
    a: sharedA.get(key),
    b: f32(out * rank, r),
    lambdaD: f32(rank, r),
    lambdaB: f32(out, r, 0.1),
  };
}
const flopsOf = (c) => 2 * c.out * c.rank * c.inF;

async function timeBackend(be, task, reps) {
  const t0 = performance.now();
  await be.merge([task]); // warm-up: session creation / pre-packing / pipeline compilation
  const warm = performance.now() - t0;
  const ts = [];
  for (let i = 0; i < reps; i++) {
    const t = performance.now();
    await be.merge([task]);
    ts.push(performance.now() - t);
  }
  ts.sort((a, b) => a - b);
  return { best_ms: ts[0], median_ms: ts[ts.length >> 1], warmup_ms: warm };
}
const gflops = (flops, ms) => flops / ms / 1e6;

// ---------- torch baseline (subprocess, same run) ----------
function findPython() {
  return findTorchPython()?.python;
}
async function startTorch() {
  const py = findPython();
  if (!py) return { unavailable: "baseline unavailable: set VERAKIT_PYTHON or create .venv-ref with torch" };
  const child = spawn(py, [path.join(root, "bench", "compute-torch.py")], { stdio: ["pipe", "pipe", "inherit"] });
  const rl = readline.createInterface({ input: child.stdout });
  const lines = rl[Symbol.asyncIterator]();
  const first = await lines.next().catch(() => ({ done: true }));
  if (first.done) return { unavailable: `baseline unavailable: ${py} could not run torch` };
  const hello = JSON.parse(first.value);
  return {
    hello,
    async ask(req) {
      child.stdin.write(JSON.stringify(req) + "\n");
      const r = await lines.next();
      return JSON.parse(r.value);
    },
    close() {
      child.stdin.end();
    },
  };
}

// ---------- data-path study (onnxruntime-node, 4096x4096 r=256 f32) ----------
async function dataPathStudy(torch) {
  const ort = (await import("onnxruntime-node")).default;
  const o = 4096,
    n = 4096,
    r = 256,
    flops = 2 * o * r * n;
  const rr = rand(7);
  const A = f32(r * n, rr),
    Bp = f32(o * r, rr),
    W = f32(o * n, rr);
  const F = 1;
  const opts = { intraOpNumThreads: THREADS, executionMode: "sequential", graphOptimizationLevel: "all" };
  const rows = [];
  const time = async (label, fn, note) => {
    await fn();
    const ts = [];
    for (let i = 0; i < REPS + 2; i++) {
      const t = performance.now();
      await fn();
      ts.push(performance.now() - t);
    }
    ts.sort((a, b) => a - b);
    rows.push({
      variant: label,
      gflops_best: gflops(flops, ts[0]),
      gflops_median: gflops(flops, ts[ts.length >> 1]),
      note,
    });
  };
  const fed = await ort.InferenceSession.create(
    buildOnnxModel({
      nodes: [{ op: "Gemm", inputs: ["B", "A", "W"], outputs: ["Y"] }],
      inputs: [
        { name: "B", type: F, shape: [o, r] },
        { name: "A", type: F, shape: [r, n] },
        { name: "W", type: F, shape: [o, n] },
      ],
      outputs: [{ name: "Y", type: F, shape: [o, n] }],
    }),
    opts,
  );
  const tB = new ort.Tensor("float32", Bp, [o, r]),
    tA = new ort.Tensor("float32", A, [r, n]),
    tW = new ort.Tensor("float32", W, [o, n]);
  const ceiling = await ort.InferenceSession.create(
    buildOnnxModel({
      nodes: [
        { op: "MatMul", inputs: ["B", "A"], outputs: ["M"] },
        { op: "ReduceSum", inputs: ["M"], outputs: ["Y"], attrs: [{ name: "keepdims", i: 0 }] },
      ],
      inputs: [
        { name: "B", type: F, shape: [o, r] },
        { name: "A", type: F, shape: [r, n] },
      ],
      outputs: [{ name: "Y", type: F, shape: [] }],
    }),
    { ...opts, graphOptimizationLevel: "basic" },
  );
  await time(
    "kernel ceiling: MatMul + ReduceSum (4-byte output)",
    () => ceiling.run({ B: tB, A: tA }),
    "inputs fed each run, nothing large returned",
  );
  await time(
    "Gemm(B', A, W), 64 MB result returned to JS",
    () => fed.run({ B: tB, A: tA, W: tW }),
    "what a naive binding use gets",
  );
  const yBuf = new ort.Tensor("float32", new Float32Array(o * n), [o, n]);
  await time("  + preallocated output tensor (reused)", () => fed.run({ B: tB, A: tA, W: tW }, { Y: yBuf }), "");
  await time("  + output bound to W itself (in place)", () => fed.run({ B: tB, A: tA, W: tW }, { Y: tW }), "");
  // one merge task over the study's W, A and B' (a fresh copy of W each time), lambdas 1
  const studyTask = (layout) => ({
    name: "study",
    dtype: "F32",
    layout,
    outFeatures: o,
    inFeatures: n,
    rank: r,
    weight: new Uint8Array(W.slice().buffer),
    a: A,
    b: Bp,
    lambdaD: new Float32Array(r).fill(1),
    lambdaB: new Float32Array(o).fill(1),
  });
  for (const bb of [1 << 18, 1 << 20, 4 << 20, 16 << 20, 64 << 20]) {
    const be = await createOrtBackend({ blockBytes: bb });
    const task = studyTask("out_in");
    await time(
      `verakit ort-cpu: A constant (pre-packed), in place, ${bb >> 10} KiB row blocks`,
      () => be.merge([task]),
      "incl. overflow pre-scan and max|delta|",
    );
    await be.dispose();
  }
  for (const bb of [4 << 20, 16 << 20, 64 << 20]) {
    const be = await createOrtBackend({ blockBytes: bb });
    const task = studyTask("in_out");
    await time(
      `verakit ort-cpu, in_out layout (per-layer factor re-packed per run), ${bb >> 10} KiB blocks`,
      () => be.merge([task]),
      "",
    );
    await be.dispose();
  }
  await fed.release();
  await ceiling.release();
  let torchRow;
  if (torch.ask) {
    const t = await torch.ask({
      out: o,
      in: n,
      rank: r,
      dtype: "F32",
      threads: THREADS,
      reps: REPS + 2,
      what: ["addmm"],
    });
    torchRow = t.addmm;
    rows.push({
      variant: "torch.addmm (same run)",
      gflops_best: t.addmm.gflops_best,
      gflops_median: t.addmm.gflops_median,
      note: "",
    });
  }
  return { rows, torch: torchRow };
}

// ---------- main ----------
const configs = [];
const shapes = QUICK
  ? [[4096, 4096]]
  : [
      [4096, 4096],
      [11008, 4096],
    ];
const ranks = QUICK ? [256] : [256, 1024];
for (const [out, inF] of shapes)
  for (const rank of ranks)
    for (const dtype of ["F32", "F16"]) configs.push({ out, inF, rank, dtype, layout: "out_in" });
configs.push({ out: 4096, inF: 4096, rank: 256, dtype: "F32", layout: "in_out" });
configs.push({ out: 4096, inF: 4096, rank: 256, dtype: "F16", layout: "in_out" }); // ONNX MatMul weights
configs.push({ out: 4096, inF: 4096, rank: 256, dtype: "BF16", layout: "out_in" });

const torch = await startTorch();
const machine = {
  cpu: os.cpus()[0]?.model ?? "unknown",
  cores: THREADS,
  node: process.version,
  platform: `${process.platform}-${process.arch}`,
  torch: torch.hello ? `${torch.hello.torch}${torch.hello.mkl ? " (MKL)" : ""}` : torch.unavailable,
  load_average_at_start: os.loadavg(),
};
console.log(`machine: ${machine.cpu}, ${machine.cores} cores, node ${machine.node}, torch: ${machine.torch}`);
console.log(
  `reps: best and median of ${REPS} after a warm-up; torch and verakit alternate rep by rep (threads: ${THREADS} each)\n`,
);

const results = [];
const ortCpu = await createOrtBackend({});
const f = (x) => (x == null ? "  n/a" : x.toFixed(1).padStart(6));
const fr = (x) => (x == null ? " n/a" : `${x.toFixed(2)}x`);
for (const c of configs) {
  const flops = flopsOf(c);
  const label = `${c.out}x${c.inF} r=${c.rank} ${c.dtype} ${c.layout}`;
  const task = makeTask(c);
  const req = {
    out: c.out,
    in: c.inF,
    rank: c.rank,
    dtype: c.dtype,
    threads: THREADS,
    reps: 1,
    what: ["addmm", "merge"],
  };
  // warm-ups (session creation and pre-packing on our side, first-touch on torch's)
  const t0 = performance.now();
  await ortCpu.merge([task]);
  const warm = performance.now() - t0;
  if (torch.ask) await torch.ask({ ...req, warmup: true });
  // alternate torch and verakit rep by rep, so both see the same machine load
  const ours = [],
    addmm = [],
    merge = [];
  for (let i = 0; i < REPS; i++) {
    if (torch.ask) {
      const t = await torch.ask({ ...req, warmup: false });
      addmm.push(t.addmm.best_s * 1e3);
      merge.push(t.merge.best_s * 1e3);
    }
    const t = performance.now();
    await ortCpu.merge([task]);
    ours.push(performance.now() - t);
  }
  const best = (a) => (a.length ? Math.min(...a) : null);
  const med = (a) => (a.length ? [...a].sort((x, y) => x - y)[a.length >> 1] : null);
  const row = {
    config: label,
    ...c,
    gflop: flops / 1e9,
    backend: "ort-cpu",
    gflops_best: gflops(flops, best(ours)),
    gflops_median: gflops(flops, med(ours)),
    warmup_ms: warm,
    torch_addmm_gflops: addmm.length ? gflops(flops, best(addmm)) : null,
    torch_addmm_gflops_median: addmm.length ? gflops(flops, med(addmm)) : null,
    torch_merge_gflops: merge.length ? gflops(flops, best(merge)) : null,
  };
  row.ratio_vs_addmm = row.torch_addmm_gflops ? row.gflops_best / row.torch_addmm_gflops : null;
  row.ratio_vs_addmm_median = row.torch_addmm_gflops_median ? row.gflops_median / row.torch_addmm_gflops_median : null;
  row.ratio_vs_peft_merge = row.torch_merge_gflops ? row.gflops_best / row.torch_merge_gflops : null;
  results.push(row);
  console.log(
    `${label.padEnd(34)} ort-cpu ${f(row.gflops_best)} (median ${f(row.gflops_median)}) GFLOP/s | torch addmm ${f(row.torch_addmm_gflops)} -> ${fr(row.ratio_vs_addmm)} (medians ${fr(row.ratio_vs_addmm_median)}) | torch PEFT merge ${f(row.torch_merge_gflops)} -> ${fr(row.ratio_vs_peft_merge)}`,
  );
}
await ortCpu.dispose();

// Other backends: the reference (slow) and the WebGPU ones, on small shapes when the adapter is software.
const others = [];
{
  const c = { out: 512, inF: 512, rank: 32, dtype: "F32" };
  const m = await timeBackend(createReferenceBackend(), makeTask(c), 1);
  others.push({
    backend: "reference",
    config: `${c.out}x${c.inF} r=${c.rank} F32`,
    gflops_best: gflops(flopsOf(c), m.best_ms),
    note: "float64 TypeScript",
  });
}
{
  const be = await createWasmBackend({});
  for (const c of [
    { out: 4096, inF: 4096, rank: 256, dtype: "F32" },
    { out: 4096, inF: 4096, rank: 256, dtype: "BF16" },
  ]) {
    const m = await timeBackend(be, makeTask({ ...c, layout: "out_in" }), 2);
    others.push({
      backend: "wasm",
      device: be.info?.device,
      config: `${c.out}x${c.inF} r=${c.rank} ${c.dtype}`,
      gflops_best: gflops(flopsOf(c), m.best_ms),
      warmup_ms: m.warmup_ms,
    });
  }
}
for (const [name, make] of [
  ["webgpu", () => createDawnBackend({})],
  ["ort-webgpu", () => createOrtBackend({ executionProvider: "webgpu" })],
]) {
  let be;
  try {
    be = await make();
  } catch (e) {
    others.push({ backend: name, unavailable: e.message });
    continue;
  }
  const software = be.info?.software ?? false;
  const cs =
    software || name === "ort-webgpu"
      ? [
          { out: 1024, inF: 1024, rank: 64, dtype: "F32" },
          { out: 1024, inF: 1024, rank: 64, dtype: "F16" },
        ]
      : configs;
  for (const c of cs) {
    const m = await timeBackend(be, makeTask({ ...c, layout: "out_in" }), software ? 1 : REPS);
    others.push({
      backend: name,
      device: be.info?.device,
      software,
      config: `${c.out}x${c.inF} r=${c.rank} ${c.dtype}`,
      gflops_best: gflops(flopsOf(c), m.best_ms),
      warmup_ms: m.warmup_ms,
    });
  }
  await be.dispose?.();
}
console.log("\nother backends (software adapters prove correctness only, never speed):");
for (const o of others)
  console.log(
    `  ${o.backend.padEnd(11)} ${o.unavailable ? `unavailable: ${o.unavailable}` : `${o.config.padEnd(22)} ${o.gflops_best.toFixed(2).padStart(8)} GFLOP/s ${o.device ? `on ${o.device}` : ""}`}`,
  );

console.log("\ndata path study (onnxruntime-node, 4096x4096 r=256 f32):");
const study = await dataPathStudy(torch);
for (const r of study.rows)
  console.log(
    `  ${r.variant.padEnd(76)} ${r.gflops_best.toFixed(1).padStart(6)} (median ${r.gflops_median.toFixed(1).padStart(6)}) GFLOP/s ${r.note ? `  ${r.note}` : ""}`,
  );
torch.close?.();

const withRatio = results.filter((r) => r.ratio_vs_addmm != null);
const summary = withRatio.length
  ? {
      best_cpu_backend: "ort-cpu",
      ratio_vs_torch_addmm_min: Math.min(...withRatio.map((r) => r.ratio_vs_addmm)),
      ratio_vs_torch_addmm_geomean: Math.exp(
        withRatio.reduce((s, r) => s + Math.log(r.ratio_vs_addmm), 0) / withRatio.length,
      ),
      ratio_vs_peft_merge_geomean: Math.exp(
        withRatio.reduce((s, r) => s + Math.log(r.ratio_vs_peft_merge), 0) / withRatio.length,
      ),
    }
  : { baseline: torch.unavailable };
console.log(`\nsummary: ${JSON.stringify(summary)}`);
machine.load_average_at_end = os.loadavg();
mkdirSync(path.join(root, "bench", "results"), { recursive: true });
writeFileSync(
  path.join(root, "bench", "results", "compute.json"),
  JSON.stringify({ machine, reps: REPS, results, others, dataPathStudy: study.rows, summary }, null, 2) + "\n",
);
console.log("wrote bench/results/compute.json");

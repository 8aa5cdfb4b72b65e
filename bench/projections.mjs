// Projection generation throughput (elements/s) against torch's own uniform_, alternating rep by rep with one
// persistent torch process (same machine load for both), and the file size of a Llama-2-7B-shaped adapter against
// its raw vector bytes and PEFT's files. Both sides are timed two ways: filling arrays reused from the previous rep
// (verakit's `into`, torch's uniform_ on the same tensors) and allocating fresh ones each rep (a fresh array costs a
// page fault per 4 KiB on its first touch).
//
//   node bench/projections.mjs [--reps 9]   (torch: $VERAKIT_PYTHON or ./.venv-ref/bin/python)
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { createAdapter, generateProjections, writeVera, writeSafetensors, bytesOf } from "../dist/index.js";
import { findPython, saveResults, table } from "./lib.mjs";
import { median, option } from "./merge-lib.mjs";

const REPS = Number(option("reps", "9"));
const shapes = [
  { name: "q,v r=256 (4096)", rank: 256, maxIn: 4096, maxOut: 4096 },
  { name: "all-linear r=1024 (11008)", rank: 1024, maxIn: 11008, maxOut: 11008 },
];
const py = findPython();

/** A torch process answering one timing per request line: {rank, maxIn, maxOut, reuse} -> {ms}. */
function startTorch() {
  const code = `
import sys, json, math, time, torch
torch.set_num_threads(2)
kept = {}
for line in sys.stdin:
    q = json.loads(line); r, mi, mo = q["rank"], q["maxIn"], q["maxOut"]
    t = time.perf_counter()
    if q["reuse"] and (r, mi, mo) in kept: A, B = kept[(r, mi, mo)]
    else: A = torch.empty(r, mi); B = torch.empty(mo, r)
    g = torch.Generator(device="cpu").manual_seed(42)
    b = math.sqrt(3.0) * (math.sqrt(2) / math.sqrt(mi)); A.uniform_(-b, b, generator=g)
    b = math.sqrt(3.0) * (math.sqrt(2) / math.sqrt(r)); B.uniform_(-b, b, generator=g)
    ms = (time.perf_counter() - t) * 1000
    if q["reuse"]: kept[(r, mi, mo)] = (A, B)
    print(json.dumps({"ms": ms}), flush=True)
`;
  const child = spawn(py.python, ["-c", code], { stdio: ["pipe", "pipe", "inherit"] });
  const lines = createInterface({ input: child.stdout });
  const waiting = [];
  lines.on("line", (l) => waiting.shift()(JSON.parse(l)));
  return {
    ask: (q) =>
      new Promise((res) => {
        waiting.push(res);
        child.stdin.write(JSON.stringify(q) + "\n");
      }),
    close: () => child.stdin.end(),
  };
}

const torch = py ? startTorch() : null;
const rows = [];
const perRep = [];
for (const s of shapes) {
  const n = s.rank * s.maxIn + s.maxOut * s.rank;
  const into = { A: new Float32Array(s.rank * s.maxIn), B: new Float32Array(s.maxOut * s.rank) };
  const gen = (reuse, arithmetic = "fused") => {
    const t = performance.now();
    generateProjections({ seed: 42, ...s, arithmetic, ...(reuse ? { into } : {}) });
    return performance.now() - t;
  };
  const t = { ours: [], oursFresh: [], oursSeparate: [], torch: [], torchFresh: [] };
  gen(true); // warm-up: WebAssembly compilation, first touch of the kept arrays
  if (torch) await torch.ask({ ...s, reuse: true });
  for (let rep = 0; rep < REPS; rep++) {
    t.ours.push(gen(true));
    if (torch) t.torch.push((await torch.ask({ ...s, reuse: true })).ms);
    t.oursFresh.push(gen(false));
    if (torch) t.torchFresh.push((await torch.ask({ ...s, reuse: false })).ms);
    t.oursSeparate.push(gen(true, "separate"));
  }
  const rate = (ms) => n / ms / 1e3; // M elements/s
  const row = {
    shape: s.name,
    elements: n,
    "verakit reused Melem/s": rate(median(t.ours)).toFixed(0),
    "torch reused Melem/s": torch ? rate(median(t.torch)).toFixed(0) : "n/a",
    "reused: verakit/torch": torch ? (median(t.torch) / median(t.ours)).toFixed(2) : "n/a",
    "verakit fresh Melem/s": rate(median(t.oursFresh)).toFixed(0),
    "torch fresh Melem/s": torch ? rate(median(t.torchFresh)).toFixed(0) : "n/a",
    "fresh: verakit/torch": torch ? (median(t.torchFresh) / median(t.oursFresh)).toFixed(2) : "n/a",
    "verakit separate (reused) Melem/s": rate(median(t.oursSeparate)).toFixed(0),
  };
  rows.push(row);
  perRep.push({ shape: s.name, ms: t });
}
torch?.close();
console.log(
  `Projection generation (A then B, float32, fused unless said), median of ${REPS}, alternating with torch rep by rep${py ? `; torch ${py.torch}, 2 threads` : ""}\n`,
);
table(rows, Object.keys(rows[0]));

// File sizes: Llama-2-7B (hidden 4096, 32 layers), q_proj + v_proj at r = 256.
const layers = 32;
const modules = [];
for (let i = 0; i < layers; i++)
  for (const p of ["q_proj", "v_proj"])
    modules.push({ name: `model.layers.${i}.self_attn.${p}`, inFeatures: 4096, outFeatures: 4096 });
const adapter = createAdapter({ rank: 256, seed: 0, modules });
adapter.modules.forEach((m, k) => m.lambdaB.forEach((_, i) => (m.lambdaB[i] = Math.sin(i + k) * 0.01)));
const vera = writeVera({ adapter });
const vectorBytes = adapter.modules.reduce((s, m) => s + 4 * (m.lambdaD.length + m.lambdaB.length), 0);
const peftTensors = adapter.modules.flatMap((m) => [
  { name: `base_model.model.${m.name}.vera_lambda_b`, dtype: "F32", shape: [m.outFeatures], data: bytesOf(m.lambdaB) },
  { name: `base_model.model.${m.name}.vera_lambda_d`, dtype: "F32", shape: [256], data: bytesOf(m.lambdaD) },
]);
const peftNoProj = writeSafetensors({ tensors: peftTensors, metadata: { format: "pt" } }).length;
const peftProj = peftNoProj + 2 * 256 * 4096 * 4 + 200; // + vera_A (256x4096) and vera_B (4096x256) float32 and their header entries
const budget = 1.02 * vectorBytes + 16 * 1024;
const sizes = [
  {
    file: "verakit adapter.vera.safetensors",
    bytes: vera.length,
    "vs raw vectors": (vera.length / vectorBytes).toFixed(4) + "x",
  },
  { file: "raw vector bytes (f32)", bytes: vectorBytes, "vs raw vectors": "1x" },
  {
    file: "PEFT adapter_model.safetensors, save_projection=False",
    bytes: peftNoProj,
    "vs raw vectors": (peftNoProj / vectorBytes).toFixed(4) + "x",
  },
  {
    file: "PEFT adapter_model.safetensors, save_projection=True",
    bytes: peftProj,
    "vs raw vectors": (peftProj / vectorBytes).toFixed(2) + "x",
  },
];
console.log(
  `\nLlama-2-7B-shaped adapter (q_proj, v_proj, r=256, 32 layers): size goal <= 1.02x raw + 16 KiB = ${Math.round(budget)} bytes -> ${vera.length <= budget ? "met" : "NOT met"}\n`,
);
table(sizes, ["file", "bytes", "vs raw vectors"]);
saveResults("projections", {
  reps: REPS,
  throughput: rows,
  perRep,
  sizes,
  sizeGoalBytes: Math.round(budget),
  sizeGoalMet: vera.length <= budget,
});

// Projection generation throughput (elements/s) against torch's own uniform_ in the same run, and the
// file size of a Llama-2-7B-shaped adapter against its raw vector bytes and PEFT's files.
import { createAdapter, generateProjections, writeVera, writeSafetensors, bytesOf } from "../dist/index.js";
import { findPython, runPython, saveResults, table, timeIt } from "./lib.mjs";

const shapes = [
  { name: "q,v r=256 (4096)", rank: 256, maxIn: 4096, maxOut: 4096 },
  { name: "all-linear r=1024 (11008)", rank: 1024, maxIn: 11008, maxOut: 11008 },
];
const py = findPython();
const rows = [];
for (const s of shapes) {
  const n = s.rank * s.maxIn + s.maxOut * s.rank;
  const row = { shape: s.name, elements: n };
  for (const arithmetic of ["fused", "separate"]) {
    const ms = timeIt(
      () => generateProjections({ seed: 42, rank: s.rank, maxIn: s.maxIn, maxOut: s.maxOut, arithmetic }),
      5,
    );
    row[`verakit ${arithmetic} Melem/s`] = (n / ms / 1e3).toFixed(1);
    row[`_${arithmetic}`] = n / ms / 1e3;
  }
  if (py) {
    const r = runPython(
      py.python,
      `
import torch, math, time, json
torch.set_num_threads(2)
r, mi, mo = ${s.rank}, ${s.maxIn}, ${s.maxOut}
def gen():
    g = torch.Generator(device="cpu").manual_seed(42)
    A = torch.empty(r, mi); b = math.sqrt(3.0) * (math.sqrt(2) / math.sqrt(mi)); A.uniform_(-b, b, generator=g)
    B = torch.empty(mo, r); b = math.sqrt(3.0) * (math.sqrt(2) / math.sqrt(r)); B.uniform_(-b, b, generator=g)
    return A, B
ts = []
for _ in range(5):
    t = time.perf_counter(); gen(); ts.append(time.perf_counter() - t)
ts.sort()
print(json.dumps({"ms": ts[2] * 1000}))
`,
    );
    row["torch Melem/s"] = (n / r.ms / 1e3).toFixed(1);
    row["ratio fused/torch"] = (row._fused / (n / r.ms / 1e3)).toFixed(2);
  } else row["torch Melem/s"] = "baseline unavailable";
  rows.push(row);
}
console.log(`Projection generation (A then B, float32), median of 5${py ? `; torch ${py.torch}` : ""}\n`);
table(rows, [
  "shape",
  "elements",
  "verakit fused Melem/s",
  "verakit separate Melem/s",
  "torch Melem/s",
  "ratio fused/torch",
]);

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
  throughput: rows.map(({ _fused, _separate, ...r }) => r),
  sizes,
  sizeGoalBytes: Math.round(budget),
  sizeGoalMet: vera.length <= budget,
});

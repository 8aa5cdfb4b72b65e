// The compute floor of a merge: the project's own kernel (onnxruntime CPU backend, every core) merging N
// 4096x4096 r=256 weights held in memory, one after the other: no file, no journal, no pipeline. Run as its own
// process by bench/merge-ab.mjs (the floor of a whole-model merge = this + reading and writing back the adapted
// bytes); prints one JSON line {ms, perWeightMs}.
//
//   node bench/kernel-floor.mjs [--n 64] [--dtype F16|BF16] [--threads N] [--layout out_in|in_out]
// (in_out: the layout of ONNX MatMul weights, [in, out]; out_in: safetensors and GGUF, [out, in])
import { join } from "node:path";
import { root } from "./lib.mjs";
import { option } from "./merge-lib.mjs";

const N = Number(option("n", "64"));
const DTYPE = option("dtype", "F16");
const THREADS = option("threads", null);
const LAYOUT = option("layout", "out_in");
const H = 4096,
  R = 256;
const { createOrtBackend } = await import(join(root, "dist/node/index.js"));
let s = 99;
const rnd = () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32 - 0.5) * 0.02;
const f32 = (n, scale = 1) => Float32Array.from({ length: n }, () => rnd() * scale);
const weight = new Uint8Array(H * H * 2);
const u = new Uint16Array(weight.buffer);
for (let i = 0; i < u.length; i++)
  u[i] = ((DTYPE === "F16" ? 0x2000 : 0x3c00) + ((i * 2654435761) >>> 25)) | (i & 1 ? 0x8000 : 0);
const a = f32(R * H, 10);
const b = f32(H * R, 10);
const task = () => ({
  name: "floor",
  dtype: DTYPE,
  layout: LAYOUT,
  outFeatures: H,
  inFeatures: H,
  rank: R,
  weight,
  a,
  b,
  lambdaD: f32(R, 10),
  lambdaB: f32(H),
});
const be = await createOrtBackend(THREADS ? { threads: Number(THREADS) } : {});
await be.merge([task()]); // warm-up: session creation, pre-packing
const tasks = Array.from({ length: N }, task);
const t0 = performance.now();
for (const t of tasks) await be.merge([t]);
const ms = performance.now() - t0;
await be.dispose();
console.log(JSON.stringify({ ms, perWeightMs: ms / N, n: N, dtype: DTYPE, layout: LAYOUT, device: be.info?.device }));

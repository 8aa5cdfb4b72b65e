// Serving adapters unmerged (issue 10 item 7), in onnxruntime-node on a Llama-shaped stack of Linear layers:
//   - forward time of the grafted model (vectors fed per run) vs the merged model vs the base model, batch 1 and 8;
//   - adapter switch time: new feeds (adapterFeeds) vs a re-merge (mergeOnnx + a new session);
//   - bytes per extra adapter: its vectors (and its .onnx_adapter file) vs a merged copy of the model.
// The stack: per layer q, k, v, o projections (hidden x hidden), h' = h + (hq + hk + hv) Wo (no attention softmax or
// MLP: the Linear work the graft adds to is what is measured); VeRA on q and v, exported with the legacy folded
// naming (/model/layers.N/self_attn/q_proj/MatMul, W^T initializers).
// Options: --hidden H (default 1024; the shape is 4096) --layers L (4) --rank R (256) --seq S (128)
//          --batches 1,8 --reps N (5). `node bench/serve.mjs --hidden 4096` for the full shape (about 1 GB per model).
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { root, saveResults, table } from "./lib.mjs";

const { values: opt } = parseArgs({
  options: {
    hidden: { type: "string", default: "1024" },
    layers: { type: "string", default: "4" },
    rank: { type: "string", default: "256" },
    seq: { type: "string", default: "128" },
    batches: { type: "string", default: "1,8" },
    reps: { type: "string", default: "5" },
  },
});
const H = Number(opt.hidden);
const L = Number(opt.layers);
const R = Number(opt.rank);
const S = Number(opt.seq);
const BATCHES = opt.batches.split(",").map(Number);
const REPS = Number(opt.reps);

const ort = (await import("onnxruntime-node")).default;
const { createAdapter } = await import(join(root, "dist/format/index.js"));
const { readOnnxModel } = await import(join(root, "dist/onnx/index.js"));
const { graftOnnx, readGraftSpec, adapterFeeds, writeOnnxAdapter } = await import(join(root, "dist/serve/index.js"));
const { mergeOnnx } = await import(join(root, "dist/merge/index.js"));
const { createNodeBackend } = await import(join(root, "dist/node/index.js"));

// ---------- a minimal ONNX protobuf encoder (ModelProto, GraphProto, NodeProto, TensorProto, ValueInfoProto) ----------
const enc = new TextEncoder();
function varint(v) {
  const out = [];
  let x = BigInt(v);
  while (x >= 0x80n) {
    out.push(Number(x & 0x7fn) | 0x80);
    x >>= 7n;
  }
  out.push(Number(x));
  return out;
}
const cat = (parts) => {
  const n = parts.reduce((a, p) => a + p.length, 0);
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
};
const field = (num, payload) =>
  cat([Uint8Array.from(varint(num * 8 + 2)), Uint8Array.from(varint(payload.length)), payload]);
const vfield = (num, v) => Uint8Array.from([...varint(num * 8), ...varint(v)]);
const str = (num, s) => field(num, enc.encode(s));
const node = (op, inputs, outputs, name) =>
  cat([...inputs.map((i) => str(1, i)), ...outputs.map((o) => str(2, o)), str(3, name), str(4, op)]);
const tensor = (name, dims, data) =>
  cat([
    ...dims.map((d) => vfield(1, d)),
    vfield(2, 1),
    str(8, name),
    field(9, new Uint8Array(data.buffer, data.byteOffset, data.byteLength)),
  ]);
const valueInfo = (name, dims) =>
  cat([
    str(1, name),
    field(
      2,
      field(
        1,
        cat([vfield(1, 1), field(2, cat(dims.map((d) => field(1, typeof d === "number" ? vfield(1, d) : str(2, d)))))]),
      ),
    ),
  ]);

let seed = 12345;
const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32 - 0.5) * (2 / Math.sqrt(H));

function baseModel() {
  const nodes = [];
  const inits = [];
  let n = 0;
  let h = "x";
  for (let l = 0; l < L; l++) {
    const out = {};
    for (const p of ["q_proj", "k_proj", "v_proj", "o_proj"]) {
      const w = new Float32Array(H * H);
      for (let i = 0; i < w.length; i++) w[i] = rnd();
      const init = `onnx::MatMul_${n++}`;
      inits.push(tensor(init, [H, H], w));
      out[p] = init;
    }
    const pre = `/model/layers.${l}/self_attn`;
    nodes.push(node("MatMul", [h, out.q_proj], [`q${l}`], `${pre}/q_proj/MatMul`));
    nodes.push(node("MatMul", [h, out.k_proj], [`k${l}`], `${pre}/k_proj/MatMul`));
    nodes.push(node("MatMul", [h, out.v_proj], [`v${l}`], `${pre}/v_proj/MatMul`));
    nodes.push(node("Add", [`q${l}`, `k${l}`], [`qk${l}`], `${pre}/Add`));
    nodes.push(node("Add", [`qk${l}`, `v${l}`], [`qkv${l}`], `${pre}/Add_1`));
    nodes.push(node("MatMul", [`qkv${l}`, out.o_proj], [`o${l}`], `${pre}/o_proj/MatMul`));
    const next = l === L - 1 ? "y" : `h${l + 1}`;
    nodes.push(node("Add", [h, `o${l}`], [next], `/model/layers.${l}/Add`));
    h = next;
  }
  const graph = cat([
    ...nodes.map((x) => field(1, x)),
    str(2, "stack"),
    ...inits.map((x) => field(5, x)),
    field(11, valueInfo("x", ["batch", "seq", H])),
    field(12, valueInfo("y", ["batch", "seq", H])),
  ]);
  return cat([vfield(1, 8), str(2, "verakit-bench"), field(7, graph), field(8, cat([str(1, ""), vfield(2, 17)]))]);
}

function adapter(s) {
  const modules = [];
  for (let l = 0; l < L; l++)
    for (const m of ["q_proj", "v_proj"])
      modules.push({ name: `model.layers.${l}.self_attn.${m}`, inFeatures: H, outFeatures: H });
  const a = createAdapter({ modules, rank: R, seed: 2024 });
  let t = s;
  const r = () => ((t = (t * 1103515245 + 12345) >>> 0) / 2 ** 32 - 0.5) * 0.02;
  for (const m of a.modules) {
    m.lambdaB.forEach((_, i) => (m.lambdaB[i] = r()));
    m.lambdaD.forEach((_, i) => (m.lambdaD[i] = r() * 10));
  }
  return a;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
/** Median time of each [session, feeds] pair, the runs interleaved (a, b, c, b, c, a, ...) so that load on a shared
 * machine falls on all of them alike. */
async function timeInterleaved(pairs) {
  for (const [sess, feeds] of pairs) await sess.run(feeds); // warm-up
  const t = pairs.map(() => []);
  for (let i = 0; i < REPS; i++)
    for (let j = 0; j < pairs.length; j++) {
      const k = (i + j) % pairs.length;
      const s = performance.now();
      await pairs[k][0].run(pairs[k][1]);
      t[k].push(performance.now() - s);
    }
  return t.map(median);
}
const toOrt = (feeds) =>
  Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, new ort.Tensor("float32", v.data, v.dims)]));

// ---------- build ----------
const dir = mkdtempSync(join(tmpdir(), "vera-bench-serve-"));
try {
  const basePath = join(dir, "base.onnx");
  const baseBytes = baseModel();
  writeFileSync(basePath, baseBytes);
  const a1 = adapter(7);
  const a2 = adapter(99);
  const g = graftOnnx({ model: readOnnxModel({ bytes: baseBytes }), adapter: a1, defaults: false });
  const graftedPath = join(dir, "grafted.onnx");
  writeFileSync(graftedPath, g.bytes);
  const spec = readGraftSpec({ bytes: g.bytes });
  const backend = await createNodeBackend({ name: "ort-cpu" });
  const mergedPath = join(dir, "merged.onnx");
  let s = performance.now();
  await mergeOnnx({ model: basePath, adapter: a1, output: mergedPath, backend });
  const mergeMs = performance.now() - s;

  const opts = { executionProviders: ["cpu"], graphOptimizationLevel: "all" };
  const base = await ort.InferenceSession.create(basePath, opts);
  const grafted = await ort.InferenceSession.create(graftedPath, opts);
  const merged = await ort.InferenceSession.create(mergedPath, opts);

  const rows = [];
  const results = [];
  for (const B of BATCHES) {
    const x = new Float32Array(B * S * H);
    for (let i = 0; i < x.length; i++) x[i] = Math.sin(i * 0.37);
    const xs = { x: new ort.Tensor("float32", x, [B, S, H]) };
    const feeds = { ...xs, ...toOrt(adapterFeeds({ spec, adapter: a1, sessionInputs: grafted.inputNames }).feeds) };
    // correctness first: the grafted model with a1's vectors computes the merged model's outputs
    const yg = (await grafted.run(feeds)).y.data;
    const ym = (await merged.run(xs)).y.data;
    let diff = 0;
    let scale = 0;
    for (let i = 0; i < yg.length; i++) {
      diff = Math.max(diff, Math.abs(yg[i] - ym[i]));
      scale = Math.max(scale, Math.abs(ym[i]));
    }
    const [tb, tm, tg] = await timeInterleaved([
      [base, xs],
      [merged, xs],
      [grafted, feeds],
    ]);
    const r = {
      batch: B,
      base_ms: tb.toFixed(1),
      merged_ms: tm.toFixed(1),
      grafted_ms: tg.toFixed(1),
      "grafted/merged": (tg / tm).toFixed(3),
      "merged/base": (tm / tb).toFixed(3),
      "max|grafted-merged|": diff.toExponential(2),
    };
    rows.push(r);
    results.push({
      batch: B,
      baseMs: tb,
      mergedMs: tm,
      graftedMs: tg,
      graftedOverMerged: tg / tm,
      maxAbsDiff: diff,
      outputScale: scale,
    });
  }
  console.log(
    `Llama-shaped stack: ${L} layers, hidden ${H}, q/v VeRA r=${R}, sequence ${S}; median of ${REPS} interleaved runs, ` +
      "onnxruntime-node CPU\n",
  );
  table(rows, Object.keys(rows[0]));

  // ---------- switching to another adapter ----------
  const feedTimes = [];
  for (let i = 0; i < 5; i++) {
    s = performance.now();
    const f = adapterFeeds({ spec, adapter: i % 2 ? a1 : a2, sessionInputs: grafted.inputNames });
    toOrt(f.feeds);
    feedTimes.push(performance.now() - s);
  }
  const feedsMs = median(feedTimes);
  const merged2 = join(dir, "merged2.onnx");
  s = performance.now();
  await mergeOnnx({ model: basePath, adapter: a2, output: merged2, backend });
  const remergeMs = performance.now() - s;
  s = performance.now();
  await ort.InferenceSession.create(merged2, opts);
  const sessionMs = performance.now() - s;

  // ---------- bytes ----------
  const vectorBytes = a2.modules.reduce((n, m) => n + 4 * (m.lambdaD.length + m.lambdaB.length), 0);
  const fileBytes = writeOnnxAdapter({ adapter: a2 }).bytes.length;
  const mergedBytes = statSync(mergedPath).size;
  const switchRows = [
    {
      way: "feeds (adapterFeeds + tensors)",
      ms: feedsMs.toFixed(2),
      "bytes per adapter": vectorBytes,
      file: `${fileBytes} (.onnx_adapter)`,
    },
    {
      way: "re-merge + new session",
      ms: (remergeMs + sessionMs).toFixed(0),
      "bytes per adapter": mergedBytes,
      file: "merged copy",
    },
  ];
  console.log("\nswitching to another adapter:\n");
  table(switchRows, Object.keys(switchRows[0]));
  console.log(
    `\nre-merge / feeds: ${((remergeMs + sessionMs) / feedsMs).toFixed(0)}x time, ${(mergedBytes / vectorBytes).toFixed(0)}x bytes; ` +
      `graft added ${g.addedBytes} bytes to the model (projections stored once). First merge: ${mergeMs.toFixed(0)} ms.`,
  );
  saveResults("serve", {
    shape: { layers: L, hidden: H, rank: R, seq: S, targets: ["q_proj", "v_proj"], batches: BATCHES, reps: REPS },
    forward: results,
    goal: "grafted <= 1.10x merged",
    switch: { feedsMs, remergeMs, sessionCreateMs: sessionMs },
    bytes: {
      vectorsPerAdapter: vectorBytes,
      onnxAdapterFile: fileBytes,
      mergedCopy: mergedBytes,
      graftAdded: g.addedBytes,
    },
  });
} finally {
  rmSync(dir, { recursive: true, force: true });
}

// Serving adapters unmerged with a KV cache, in onnxruntime-node: greedy decoding on a Llama-shaped decoder
// (embedding, per layer q/k/v/o projections, single-head attention over past + new keys/values, an up/down MLP, a head),
// with past_key_values.<l>.key/value inputs and present.<l>.key/value outputs as Optimum and onnxruntime-genai lay them out.
//   - time per generated token of the grafted model (vectors fed per run; one --batched graft) against the merged
//     model, batch 1 and batch B (B different adapters in the grafted batch, one per row); the decode steps of the two
//     models alternate (A, B, A, B, ...) in the same run, so load on a shared machine falls on both alike;
//   - memory per resident adapter: its feeds (vectors) and its .onnx_adapter file, against a merged copy;
//   - the cost of switching: new feeds (adapterFeeds + tensors) against a re-merge and a new session.
// The model is built here (bench-sized random weights, the legacy exporter's naming: /model/layers.N/self_attn/q_proj/
// MatMul with W^T initializers), so the figures need no download. No causal mask: decode steps take one token.
// Options: --hidden H (1024) --ffn F (2816) --layers L (4) --vocab V (4096) --rank R (256) --targets q_proj,v_proj
//          --prompt P (64) --tokens T (32) --batch B (8) --reps N (3) --results NAME (serve: bench/results/NAME.json)
//          --threads N (1: intra-op threads per session)
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { root, saveResults, table } from "./lib.mjs";

const { values: opt } = parseArgs({
  options: {
    hidden: { type: "string", default: "1024" },
    ffn: { type: "string", default: "2816" },
    layers: { type: "string", default: "4" },
    vocab: { type: "string", default: "4096" },
    rank: { type: "string", default: "256" },
    targets: { type: "string", default: "q_proj,v_proj" },
    prompt: { type: "string", default: "64" },
    tokens: { type: "string", default: "32" },
    batch: { type: "string", default: "8" },
    reps: { type: "string", default: "3" },
    results: { type: "string", default: "serve" },
    threads: { type: "string", default: "1" },
  },
});
const H = Number(opt.hidden);
const F = Number(opt.ffn);
const L = Number(opt.layers);
const V = Number(opt.vocab);
const R = Number(opt.rank);
const TARGETS = opt.targets.split(",");
const P = Number(opt.prompt);
const T = Number(opt.tokens);
const BIG = Number(opt.batch);
const REPS = Number(opt.reps);

const ort = (await import("onnxruntime-node")).default;
const { createAdapter } = await import(join(root, "dist/format/index.js"));
const { readOnnxModel } = await import(join(root, "dist/onnx/index.js"));
const { graftOnnx, adapterFeeds, writeOnnxAdapter } = await import(join(root, "dist/serve/index.js"));
const { mergeOnnx } = await import(join(root, "dist/merge/node/index.js"));
const { createNodeBackend, buildOnnxModel } = await import(join(root, "dist/node/index.js"));

const FLOAT = 1;
const INT64 = 7;
let seed = 12345;
const rnd = (scale) => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32 - 0.5) * scale;
const f32 = (n, scale) => {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rnd(scale);
  return new Uint8Array(a.buffer);
};
const i64 = (vals) => new Uint8Array(BigInt64Array.from(vals, BigInt).buffer);

/** The decoder as an ONNX model (buildOnnxModel: the package's encoder). */
function decoder() {
  const nodes = [];
  const inits = [];
  let w = 0;
  const weight = (rows, cols) => {
    const name = `onnx::MatMul_${w++}`;
    inits.push({ name, type: FLOAT, dims: [rows, cols], raw: f32(rows * cols, 2 / Math.sqrt(rows)) });
    return name;
  };
  const mm = (x, rows, cols, path, out) =>
    nodes.push({ name: `${path}/MatMul`, op: "MatMul", inputs: [x, weight(rows, cols)], outputs: [out] });
  inits.push({ name: "embed", type: FLOAT, dims: [V, H], raw: f32(V * H, 1) });
  inits.push({ name: "axis1", type: INT64, dims: [1], raw: i64([1]) });
  inits.push({
    name: "scale",
    type: FLOAT,
    dims: [],
    raw: new Uint8Array(new Float32Array([1 / Math.sqrt(H)]).buffer),
  });
  nodes.push({ op: "Gather", inputs: ["embed", "input_ids"], outputs: ["h0"] });
  const inputs = [{ name: "input_ids", type: INT64, shape: ["batch", "seq"] }];
  const outputs = [{ name: "logits", type: FLOAT, shape: ["batch", "seq", V] }];
  let h = "h0";
  for (let l = 0; l < L; l++) {
    const pre = `/model/layers.${l}`;
    const a = `${pre}/self_attn`;
    for (const p of ["q_proj", "k_proj", "v_proj"]) mm(h, H, H, `${a}/${p}`, `${p}${l}`);
    for (const kv of ["key", "value"]) {
      const src = kv === "key" ? `k_proj${l}` : `v_proj${l}`;
      inputs.push({ name: `past_key_values.${l}.${kv}`, type: FLOAT, shape: ["batch", 1, "past", H] });
      outputs.push({ name: `present.${l}.${kv}`, type: FLOAT, shape: ["batch", 1, "total", H] });
      nodes.push({ op: "Unsqueeze", inputs: [src, "axis1"], outputs: [`${kv}4_${l}`] });
      nodes.push({
        op: "Concat",
        inputs: [`past_key_values.${l}.${kv}`, `${kv}4_${l}`],
        outputs: [`present.${l}.${kv}`],
        attrs: [{ name: "axis", i: 2 }],
      });
      nodes.push({ op: "Squeeze", inputs: [`present.${l}.${kv}`, "axis1"], outputs: [`${kv}3_${l}`] });
    }
    nodes.push({
      op: "Transpose",
      inputs: [`key3_${l}`],
      outputs: [`kt${l}`],
      attrs: [{ name: "perm", ints: [0, 2, 1] }],
    });
    nodes.push({ op: "MatMul", inputs: [`q_proj${l}`, `kt${l}`], outputs: [`s${l}`] });
    nodes.push({ op: "Mul", inputs: [`s${l}`, "scale"], outputs: [`ss${l}`] });
    nodes.push({ op: "Softmax", inputs: [`ss${l}`], outputs: [`p${l}`], attrs: [{ name: "axis", i: 2 }] });
    nodes.push({ op: "MatMul", inputs: [`p${l}`, `value3_${l}`], outputs: [`att${l}`] });
    mm(`att${l}`, H, H, `${a}/o_proj`, `o${l}`);
    nodes.push({ op: "Add", inputs: [h, `o${l}`], outputs: [`r${l}`] });
    mm(`r${l}`, H, F, `${pre}/mlp/up_proj`, `u${l}`);
    nodes.push({ op: "Relu", inputs: [`u${l}`], outputs: [`ur${l}`] });
    mm(`ur${l}`, F, H, `${pre}/mlp/down_proj`, `d${l}`);
    nodes.push({ op: "Add", inputs: [`r${l}`, `d${l}`], outputs: [`h${l + 1}`] });
    h = `h${l + 1}`;
  }
  nodes.push({ name: "/lm_head/MatMul", op: "MatMul", inputs: [h, weight(H, V)], outputs: ["logits"] });
  return buildOnnxModel({ nodes, inputs, outputs, initializers: inits });
}

function adapter(s) {
  const modules = [];
  for (let l = 0; l < L; l++)
    for (const m of TARGETS) {
      const mlp = m === "up_proj" || m === "down_proj";
      modules.push({
        name: `model.layers.${l}.${mlp ? "mlp" : "self_attn"}.${m}`,
        inFeatures: m === "down_proj" ? F : H,
        outFeatures: m === "up_proj" ? F : H,
      });
    }
  const a = createAdapter({ modules, rank: R, seed: 2024 });
  let t = s;
  const r = () => ((t = (t * 1103515245 + 12345) >>> 0) / 2 ** 32 - 0.5) * 0.02;
  for (const m of a.modules) {
    m.lambdaB.forEach((_, i) => (m.lambdaB[i] = r()));
    m.lambdaD.forEach((_, i) => (m.lambdaD[i] = r() * 10));
  }
  return a;
}

const toOrt = (feeds) =>
  Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, new ort.Tensor(v.type, v.data, v.dims)]));
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** A decoding state: one session, its constant feeds, the cache and the last tokens. */
function state(session, extra, prompts) {
  const B = prompts.length;
  const past = {};
  for (let l = 0; l < L; l++)
    for (const kv of ["key", "value"])
      past[`past_key_values.${l}.${kv}`] = new ort.Tensor("float32", new Float32Array(0), [B, 1, 0, H]);
  return { session, extra, past, cur: prompts, tokens: prompts.map(() => []), B };
}
async function step(s) {
  const seq = s.cur[0].length;
  const ids = new ort.Tensor("int64", BigInt64Array.from(s.cur.flat(), BigInt), [s.B, seq]);
  const t0 = performance.now();
  const out = await s.session.run({ input_ids: ids, ...s.extra, ...s.past });
  const ms = performance.now() - t0;
  const logits = out.logits.data;
  const next = [];
  for (let r = 0; r < s.B; r++) {
    const o = (r * seq + seq - 1) * V;
    let best = 0;
    for (let v = 1; v < V; v++) if (logits[o + v] > logits[o + best]) best = v;
    next.push(best);
  }
  next.forEach((t, r) => s.tokens[r].push(t));
  for (let l = 0; l < L; l++)
    for (const kv of ["key", "value"]) s.past[`past_key_values.${l}.${kv}`] = out[`present.${l}.${kv}`];
  s.cur = next.map((t) => [t]);
  s.last = out.logits.data;
  return ms;
}

/** Decode with the states taking turns step by step (the order rotating); the median ms per decode step of each. */
async function decodeTurns(states) {
  for (const st of states) await step(st); // prefill (not timed as a token)
  const t = states.map(() => []);
  for (let i = 0; i < T; i++)
    for (let j = 0; j < states.length; j++) {
      const k = (i + j) % states.length;
      t[k].push(await step(states[k]));
    }
  return t.map(median);
}

const dir = mkdtempSync(join(tmpdir(), "vera-bench-serve-"));
try {
  const basePath = join(dir, "base.onnx");
  const baseBytes = decoder();
  writeFileSync(basePath, baseBytes);
  const adapters = Array.from({ length: Math.max(BIG, 2) }, (_, i) => adapter(7 + 92 * i));
  const g = graftOnnx({ model: readOnnxModel({ bytes: baseBytes }), adapter: adapters[0], batched: true });
  const graftedPath = join(dir, "grafted.onnx");
  writeFileSync(graftedPath, g.bytes);
  const backend = await createNodeBackend({ name: "ort-cpu" });
  const mergedPath = join(dir, "merged.onnx");
  let s = performance.now();
  await mergeOnnx({ model: basePath, adapter: adapters[0], output: mergedPath, backend });
  const mergeMs = performance.now() - s;
  // One intra-op thread per session (--threads): with sessions taking turns, a session's thread pool spinning or waking
  // after its run steals the cores of the next session's run on a 2-core machine (measured on tiny models: 5-60x
  // slowdowns of whichever session ran next), which would bias the comparison.
  const opts = {
    executionProviders: ["cpu"],
    graphOptimizationLevel: "all",
    intraOpNumThreads: Number(opt.threads),
    interOpNumThreads: 1,
    extra: { session: { intra_op: { allow_spinning: "0" } } },
  };
  const grafted = await ort.InferenceSession.create(graftedPath, opts);
  const merged = await ort.InferenceSession.create(mergedPath, opts);
  const prompt = (r) => Array.from({ length: P }, (_, i) => (i * 31 + r * 17 + 1) % V);

  // batch 1 also on a graft without --batched (one adapter per run): the batched graph's per-row plumbing, measured
  const single = graftOnnx({ model: readOnnxModel({ bytes: baseBytes }), adapter: adapters[0] });
  const singlePath = join(dir, "grafted-single.onnx");
  writeFileSync(singlePath, single.bytes);
  const graftedSingle = await ort.InferenceSession.create(singlePath, opts);
  const rows = [];
  const results = [];
  for (const B of [1, BIG]) {
    const prompts = Array.from({ length: B }, (_, r) => prompt(r));
    const list = B === 1 ? [adapters[0]] : adapters.slice(0, B);
    const feeds = toOrt(adapterFeeds({ spec: g.spec, adapters: list, sessionInputs: grafted.inputNames }).feeds);
    const singleFeeds = toOrt(
      adapterFeeds({ spec: single.spec, adapter: adapters[0], sessionInputs: graftedSingle.inputNames }).feeds,
    );
    const perRep = [];
    let diff = 0;
    let sameTokens = true;
    for (let rep = 0; rep < REPS; rep++) {
      const states = [state(merged, {}, prompts), state(grafted, feeds, prompts)];
      if (B === 1) states.push(state(graftedSingle, singleFeeds, prompts));
      const times = await decodeTurns(rep % 2 === 0 ? states : [...states].reverse());
      if (rep % 2 === 1) times.reverse();
      perRep.push(times);
      // row 0 carries adapter 0 in all of them: the grafted rows must decode as the merged model
      for (const st of states.slice(1)) {
        sameTokens &&= JSON.stringify(states[0].tokens[0]) === JSON.stringify(st.tokens[0]);
        for (let i = 0; i < V; i++) diff = Math.max(diff, Math.abs(states[0].last[i] - st.last[i]));
      }
    }
    const tm = median(perRep.map((x) => x[0]));
    const tg = median(perRep.map((x) => x[1]));
    const ts = B === 1 ? median(perRep.map((x) => x[2])) : undefined;
    rows.push({
      batch: B,
      adapters: B === 1 ? "1" : `${B} (one per row; merged: 1)`,
      "merged ms/token step": tm.toFixed(2),
      "grafted ms": tg.toFixed(2),
      "grafted/merged": (tg / tm).toFixed(3),
      "unbatched graft/merged": ts === undefined ? "-" : (ts / tm).toFixed(3),
      "merged tok/s": ((1000 * B) / tm).toFixed(1),
      "grafted tok/s": ((1000 * B) / tg).toFixed(1),
      "row 0 tokens equal": sameTokens,
      "max|logits diff| row 0": diff.toExponential(2),
    });
    results.push({
      batch: B,
      mergedMsPerStep: tm,
      graftedMsPerStep: tg,
      graftedOverMerged: tg / tm,
      ...(ts === undefined ? {} : { unbatchedGraftMsPerStep: ts, unbatchedGraftOverMerged: ts / tm }),
      perRep,
      sameTokens,
      maxAbsDiffRow0: diff,
    });
  }
  console.log(
    `Llama-shaped decoder with a KV cache: ${L} layers, hidden ${H}, ffn ${F}, vocab ${V}; VeRA r=${R} on ${TARGETS.join(",")}; ` +
      `prompt ${P}, ${T} decode steps, median over steps and ${REPS} reps, the models' steps taking turns; onnxruntime-node CPU\n`,
  );
  table(rows, Object.keys(rows[0]));

  // ---------- switching to another adapter, memory per adapter ----------
  const feedTimes = [];
  for (let i = 0; i < 9; i++) {
    s = performance.now();
    toOrt(adapterFeeds({ spec: g.spec, adapters: [adapters[i % 2]], sessionInputs: grafted.inputNames }).feeds);
    feedTimes.push(performance.now() - s);
  }
  const feedsMs = median(feedTimes);
  const merged2 = join(dir, "merged2.onnx");
  s = performance.now();
  await mergeOnnx({ model: basePath, adapter: adapters[1], output: merged2, backend });
  const remergeMs = performance.now() - s;
  s = performance.now();
  await (await ort.InferenceSession.create(merged2, opts)).release();
  const sessionMs = performance.now() - s;
  const vectorBytes = adapters[1].modules.reduce((n, m) => n + 4 * (m.lambdaD.length + m.lambdaB.length), 0);
  const fileBytes = writeOnnxAdapter({ adapter: adapters[1] }).bytes.length;
  const mergedBytes = statSync(mergedPath).size;
  const switchRows = [
    {
      way: "feeds (adapterFeeds + tensors)",
      ms: feedsMs.toFixed(2),
      "bytes per resident adapter": vectorBytes,
      file: `${fileBytes} (.onnx_adapter)`,
    },
    {
      way: "re-merge + new session",
      ms: (remergeMs + sessionMs).toFixed(0),
      "bytes per resident adapter": mergedBytes,
      file: "merged copy",
    },
  ];
  console.log("\nswitching to another adapter, memory per resident adapter:\n");
  table(switchRows, Object.keys(switchRows[0]));
  console.log(
    `\ngraft added ${g.addedBytes} bytes to the model (A and B once). First merge: ${mergeMs.toFixed(0)} ms.`,
  );
  saveResults(opt.results, {
    workload: "greedy decoding with a KV cache (past_key_values / present), merged and grafted steps alternating",
    shape: {
      layers: L,
      hidden: H,
      ffn: F,
      vocab: V,
      rank: R,
      targets: TARGETS,
      prompt: P,
      tokens: T,
      batch: BIG,
      reps: REPS,
    },
    decode: results,
    goal: "grafted <= 1.10x merged time per token",
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

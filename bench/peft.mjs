// PEFT interop on a Llama-2-7B-shaped adapter: file sizes (verakit, PEFT with/without projections, expanded LoRA)
// and the time to import / export / expand, with the GEMM-free LoRA expansion next to the same row scaling in
// torch measured in the same run (baseline: $VERAKIT_PYTHON or .venv-ref/bin/python; else "unavailable").
// Usage: npx tsup && node bench/peft.mjs   (env: VERAKIT_BENCH_REPS, default 3)
import { createAdapter, writeVera, parseSafetensors } from "../dist/index.js";
import { baseShapesFromConfig, expandToLora, expandToLoraStream, exportPeft, importPeft } from "../dist/peft/index.js";
import { findPython, runPython, saveResults, table, timeIt } from "./lib.mjs";

const REPS = Number(process.env.VERAKIT_BENCH_REPS ?? 3);
const H = 4096;
const I = 11008;
const L = 32;
const llamaConfig = {
  model_type: "llama",
  architectures: ["LlamaForCausalLM"],
  hidden_size: H,
  intermediate_size: I,
  num_hidden_layers: L,
  num_attention_heads: 32,
  num_key_value_heads: 32,
  vocab_size: 32000,
};
const SHAPES = {
  q_proj: [H, H],
  k_proj: [H, H],
  v_proj: [H, H],
  o_proj: [H, H],
  gate_proj: [I, H],
  up_proj: [I, H],
  down_proj: [H, I],
};
const GROUP = {
  q_proj: "self_attn",
  k_proj: "self_attn",
  v_proj: "self_attn",
  o_proj: "self_attn",
  gate_proj: "mlp",
  up_proj: "mlp",
  down_proj: "mlp",
};

function makeAdapter(rank, targets, layers = L) {
  const modules = [];
  for (let i = 0; i < layers; i++)
    for (const t of targets)
      modules.push({ name: `model.layers.${i}.${GROUP[t]}.${t}`, outFeatures: SHAPES[t][0], inFeatures: SHAPES[t][1] });
  const a = createAdapter({ modules, rank, seed: 2n ** 40n + 9n });
  let s = 12345;
  const rnd = () => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32 - 0.5;
  for (const m of a.modules) {
    for (let k = 0; k < m.lambdaD.length; k++) m.lambdaD[k] = rnd();
    for (let k = 0; k < m.lambdaB.length; k++) m.lambdaB[k] = rnd() * 0.1;
  }
  return a;
}
const MB = (n) => (n / 2 ** 20).toFixed(1);
const loraBytes = (a) => a.modules.reduce((s, m) => s + 4 * a.rank * (m.inFeatures + m.outFeatures), 0);

const scenarios = [
  { name: "q,v r=256", rank: 256, targets: ["q_proj", "v_proj"], fullExpand: true },
  { name: "all-linear r=1024", rank: 1024, targets: Object.keys(SHAPES), fullExpand: false },
];
const base = baseShapesFromConfig({ config: llamaConfig });
const rows = [];
const results = [];
for (const sc of scenarios) {
  const adapter = makeAdapter(sc.rank, sc.targets);
  const veraBytes = writeVera({ adapter }).length;
  const peftNo = exportPeft({ adapter, saveProjection: false });
  const peftYes = exportPeft({ adapter, saveProjection: true });
  const fileNo = parseSafetensors(peftNo.safetensors);
  const fileYes = parseSafetensors(peftYes.safetensors);
  const reps = sc.rank >= 1024 ? Math.max(1, Math.min(REPS, 2)) : REPS;
  const t = {
    importNoProj: timeIt(() => importPeft({ config: peftNo.configJson, weights: fileNo, base }), reps),
    importWithProj: timeIt(() => importPeft({ config: peftYes.configJson, weights: fileYes, base }), reps),
    exportNoProj: timeIt(() => exportPeft({ adapter, saveProjection: false }), reps),
    exportWithProj: timeIt(() => exportPeft({ adapter, saveProjection: true }), reps),
  };
  // The expansion is a row scaling of the regenerated projections. Whole file in memory when it fits
  // (expandToLora), else streamed tensor by tensor into one scratch buffer (expandToLoraStream; what the CLI
  // does, minus the disk writes).
  const tExpand = sc.fullExpand
    ? timeIt(() => expandToLora({ adapter }), reps)
    : timeIt(() => {
        const st = expandToLoraStream({ adapter });
        const scratch = new Uint8Array(Math.max(...st.tensors.map((x) => x.byteLength)));
        st.tensors.forEach((x, i) => st.fill(i, scratch.subarray(0, x.byteLength)));
      }, 1);
  // the projections' share of it (regenerated once per expansion)
  const r = {
    scenario: sc.name,
    modules: adapter.modules.length,
    "verakit file MB": MB(veraBytes),
    "PEFT no proj MB": MB(peftNo.safetensors.length),
    "PEFT + proj MB": MB(peftYes.safetensors.length),
    "LoRA MB": MB(loraBytes(adapter)),
    "import ms (no proj / proj)": `${t.importNoProj.toFixed(0)} / ${t.importWithProj.toFixed(0)}`,
    "export ms (no proj / proj)": `${t.exportNoProj.toFixed(0)} / ${t.exportWithProj.toFixed(0)}`,
    "expand ms": `${tExpand.toFixed(0)}${sc.fullExpand ? "" : " (streamed)"}`,
  };
  rows.push(r);
  results.push({
    ...r,
    sizesBytes: {
      vera: veraBytes,
      peftNoProjection: peftNo.safetensors.length,
      peftWithProjection: peftYes.safetensors.length,
      lora: loraBytes(adapter),
    },
    timesMs: { ...t, expand: tExpand, expandStreamed: !sc.fullExpand },
  });
}
table(rows, Object.keys(rows[0]));

// Baseline: the same expansion (row scaling of regenerated projections) in torch, same run.
const py = findPython();
let baseline = { available: false, reason: "no Python with torch (set VERAKIT_PYTHON or create .venv-ref)" };
if (py) {
  const res = runPython(
    py.python,
    `
import torch, math, time, json
torch.set_num_threads(2)
def gen(r, mi, mo, seed):
    g = torch.Generator(device="cpu").manual_seed(seed)
    A = torch.empty(r, mi); b = math.sqrt(3.0) * (math.sqrt(2) / math.sqrt(mi)); A.uniform_(-b, b, generator=g)
    B = torch.empty(mo, r); b = math.sqrt(3.0) * (math.sqrt(2) / math.sqrt(r)); B.uniform_(-b, b, generator=g)
    return A, B
out = {}
for name, r, mods, keep, reps in (("q,v r=256", 256, [(${H}, ${H})] * 64, True, ${REPS}),
                        ("all-linear r=1024", 1024, ([(${H}, ${H})] * 4 + [(${I}, ${H})] * 2 + [(${H}, ${I})]) * 32, False, 1)):
    vecs = [(torch.randn(r), torch.randn(o)) for o, _ in mods]
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        mi = max(i for _, i in mods); mo = max(o for o, _ in mods)
        A, B = gen(r, mi, mo, 2**40 + 9)
        res = []
        for (o, i), (d, b) in zip(mods, vecs):
            pair = ((d[:, None] * A[:, :i]).contiguous(), (b[:, None] * B[:o, :]).contiguous())
            if keep:
                res.append(pair)
        ts.append(time.perf_counter() - t)
    ts.sort()
    out[name] = ts[len(ts) // 2] * 1000
print(json.dumps({"torch": torch.__version__, "ms": out}))
`,
  );
  baseline = { available: true, torch: res.torch, expandMs: res.ms };
  const brows = Object.entries(res.ms).map(([k, ms], i) => {
    const ours = results[i].timesMs.expand;
    return {
      scenario: k,
      "torch expand ms": ms.toFixed(0),
      "verakit expand ms": ours.toFixed(0),
      "verakit / torch time": (ours / ms).toFixed(2),
    };
  });
  console.log("");
  table(brows, Object.keys(brows[0]));
} else console.log(`\nbaseline unavailable: ${baseline.reason}`);
console.log("\nnote: 2-core machine shared with other work; timings are medians and noisy (+-20%).");
saveResults("peft", { scenarios: results, baseline, reps: REPS });

// Merge a VeRA adapter (q_proj + v_proj, r = 256) into Llama-2-7B-shaped float16 ONNX models with
// external data, generated here (never committed): 8, 16 and 32 layers (32 = Llama-2-7B: hidden 4096,
// intermediate 11008, vocab 32000, 13.5 GB). For each size: wall time of `cp` of the same files and of
// `vera merge` (same run, alternating, median of --reps), the ratio, and the merge's peak RSS.
//
//   node bench/merge.mjs [--layers 8,16,32] [--reps 2] [--backend auto] [--dir DIR] [--fsync]
//
// --fsync compares `cp` + `sync` with a durable merge (fsync before rename); by default neither syncs.
// Needs about 3x the largest model's size in free disk space under --dir (default: the OS temp dir).
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, writeSync } from "node:fs";
import { freemem, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { saveResults, table } from "./lib.mjs";
import { builtCli, mergeVsCp, option, sync, timed, timedMerge, writeBenchAdapter } from "./merge-lib.mjs";

const LAYERS = option("layers", "8,16,32").split(",").map(Number);
const REPS = Number(option("reps", "2"));
const BACKEND = option("backend", "auto");
const THREADS = option("threads", "");
const FSYNC = process.argv.slice(2).includes("--fsync");
const BASE = option("dir", tmpdir());
const H = 4096,
  I = 11008,
  V = 32000,
  R = 256;
const cli = builtCli();

// ---- a minimal protobuf writer for the generated model ----
const enc = new TextEncoder();
const varint = (v) => {
  const o = [];
  let x = BigInt(v);
  while (x >= 0x80n) {
    o.push(Number(x & 0x7fn) | 0x80);
    x >>= 7n;
  }
  o.push(Number(x));
  return o;
};
const len = (f, p) => [...varint(f * 8 + 2), ...varint(p.length), ...p];
const str = (f, s) => len(f, [...enc.encode(s)]);
const int = (f, v) => [...varint(f * 8), ...varint(v)];
const tensor = (name, dims, dt, loc, off, n) => [
  ...len(
    1,
    dims.flatMap((d) => varint(d)),
  ),
  ...int(2, dt),
  ...str(8, name),
  ...len(13, [...str(1, "location"), ...str(2, loc)]),
  ...len(13, [...str(1, "offset"), ...str(2, String(off))]),
  ...len(13, [...str(1, "length"), ...str(2, String(n))]),
  ...int(14, 1),
];
const node = (op, ins, outs, name) => [
  ...ins.flatMap((i) => str(1, i)),
  ...outs.flatMap((o) => str(2, o)),
  ...str(3, name),
  ...str(4, op),
];
const valueInfo = (name, elem, shape) => [
  ...str(1, name),
  ...len(
    2,
    len(1, [
      ...int(1, elem),
      ...len(
        2,
        shape.flatMap((d) => len(1, typeof d === "number" ? int(1, d) : str(2, d))),
      ),
    ]),
  ),
];

/** Write model.onnx + model.onnx_data (optimum's naming) for an n-layer Llama-2-7B-shaped fp16 model. */
function generate(dir, layers) {
  const data = join(dir, "model.onnx_data");
  const fd = openSync(data, "w");
  const chunk = Buffer.alloc(64 << 20);
  let s = 12345;
  for (let i = 0; i < chunk.length; i += 2) {
    s = (s * 1103515245 + 12345) >>> 0;
    chunk.writeUInt16LE(0x2000 | (s >>> 22) | ((s & 1) << 15), i); // small fp16 values of both signs
  }
  let offset = 0;
  const nodes = [];
  const inits = [];
  let n = 0;
  const add = (name, dims) => {
    const bytes = dims.reduce((a, b) => a * b, 1) * 2;
    inits.push(tensor(name, dims, 10, "model.onnx_data", offset, bytes));
    for (let done = 0; done < bytes; ) {
      const k = Math.min(chunk.length, bytes - done);
      writeSync(fd, chunk, 0, k, offset + done);
      done += k;
    }
    offset += bytes;
  };
  add("model.embed_tokens.weight", [V, H]);
  nodes.push(node("Gather", ["model.embed_tokens.weight", "input_ids"], ["h_0"], "/model/embed_tokens/Gather"));
  let h = "h_0";
  for (let l = 0; l < layers; l++) {
    for (const [mod, inF, outF] of [
      ["self_attn.q_proj", H, H],
      ["self_attn.k_proj", H, H],
      ["self_attn.v_proj", H, H],
      ["self_attn.o_proj", H, H],
      ["mlp.gate_proj", H, I],
      ["mlp.up_proj", H, I],
      ["mlp.down_proj", I, H],
    ]) {
      const w = `onnx::MatMul_${1000 + n++}`;
      add(w, [inF, outF]);
      const scope = `/model/layers.${l}/${mod.replace(".", "/")}/MatMul`;
      nodes.push(node("MatMul", [mod === "mlp.down_proj" ? `${h}_i` : h, w], [`${h}_${mod}`], scope));
      if (mod === "mlp.up_proj")
        nodes.push(node("Identity", [`${h}_${mod}`], [`${h}_i`], `/model/layers.${l}/mlp/Identity`));
    }
    const next = `h_${l + 1}`;
    nodes.push(node("Add", [h, `${h}_mlp.down_proj`], [next], `/model/layers.${l}/Add`));
    h = next;
  }
  add("onnx::MatMul_lm_head", [H, V]);
  nodes.push(node("MatMul", [h, "onnx::MatMul_lm_head"], ["logits"], "/lm_head/MatMul"));
  closeSync(fd);
  const graph = [
    ...nodes.flatMap((x) => len(1, x)),
    ...str(2, "llama2-7b-shaped"),
    ...inits.flatMap((t) => len(5, t)),
    ...len(11, valueInfo("input_ids", 7, ["batch", "seq"])),
    ...len(12, valueInfo("logits", 10, ["batch", "seq", V])),
  ];
  const model = Uint8Array.from([
    ...int(1, 8),
    ...str(2, "verakit bench"),
    ...len(7, graph),
    ...len(8, [...str(1, ""), ...int(2, 17)]),
  ]);
  const fm = openSync(join(dir, "model.onnx"), "w");
  writeSync(fm, model);
  closeSync(fm);
  return offset + model.length;
}

const work = mkdtempSync(join(BASE, "vera-bench-merge-"));
const rows = [];
const results = [];
let backendInfo = null;
try {
  for (const layers of LAYERS) {
    const dir = join(work, `l${layers}`);
    mkdirSync(dir);
    console.error(`generating a ${layers}-layer model...`);
    const bytes = generate(dir, layers);
    const adapter = join(work, `adapter-l${layers}.vera.safetensors`);
    await writeBenchAdapter({ layers, path: adapter, hidden: H, rank: R });
    sync();
    const cpOut = join(work, "cp-out");
    const mOut = join(work, "merge-out");
    const { report, columns, result } = mergeVsCp({
      reps: REPS,
      cp: () => {
        mkdirSync(cpOut);
        const c = FSYNC
          ? timed("sh", ["-c", `cp "${dir}/model.onnx" "${dir}/model.onnx_data" "${cpOut}/" && sync`])
          : timed("cp", [join(dir, "model.onnx"), join(dir, "model.onnx_data"), cpOut + "/"]);
        rmSync(cpOut, { recursive: true });
        return c.ms;
      },
      merge: () => {
        const m = timedMerge({
          cli,
          input: join(dir, "model.onnx"),
          adapter,
          output: join(mOut, "model.onnx"),
          backend: BACKEND,
          extra: [...(THREADS ? ["--threads", THREADS] : []), "--json", ...(FSYNC ? [] : ["--no-fsync"])],
        });
        rmSync(mOut, { recursive: true });
        return m;
      },
    });
    backendInfo = report.backendInfo;
    const t = report.timings;
    rows.push({
      layers,
      size: `${(bytes / 1e9).toFixed(2)} GB`,
      merged: `${report.weights} x 4096x4096`,
      ...columns,
      "read s": (t.read / 1000).toFixed(2),
      "write s": (t.write / 1000).toFixed(2),
    });
    results.push({ layers, bytes, mergedWeights: report.weights, ...result });
    rmSync(dir, { recursive: true });
    rmSync(adapter);
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
console.log(
  `\nvera merge vs cp, float16 Llama-2-7B-shaped models, q_proj+v_proj r=${R}, backend ${backendInfo?.name ?? BACKEND} (${backendInfo?.device ?? "?"}), ${FSYNC ? "durable (fsync) vs cp+sync" : "no fsync on either side"}, median of ${REPS}`,
);
table(rows, Object.keys(rows[0] ?? {}));
console.log(
  `\nnote: 2-core machine shared with other work; page cache ${((totalmem() - freemem()) / 1e9).toFixed(1)}/${(totalmem() / 1e9).toFixed(1)} GB in use at the end; files are re-read from cache when they fit`,
);
saveResults("merge", { backend: backendInfo, fsync: FSYNC, reps: REPS, rank: R, results });

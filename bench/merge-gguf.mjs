// Merge a VeRA adapter (q_proj + v_proj, r = 256) into a Llama-2-7B-shaped F16 GGUF generated here
// (never committed): hidden 4096, intermediate 11008, vocab 32000, N layers, llama.cpp's tensor
// names and metadata (32 layers = Llama-2-7B, 13.5 GB). Wall time of `cp` of the file and of
// `vera merge` (same run, alternating, median of --reps), the ratio, and the merge's peak RSS.
//
//   node bench/merge-gguf.mjs [--layers 2] [--reps 2] [--backend auto] [--dir DIR]
//
// Neither side syncs (--no-fsync). Needs about 3x the file's size in free disk space under --dir.
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { root, saveResults, table } from "./lib.mjs";
import { builtCli, mergeVsCp, option, sync, timed, timedMerge, writeBenchAdapter } from "./merge-lib.mjs";

const LAYERS = Number(option("layers", "2"));
const REPS = Number(option("reps", "2"));
const BACKEND = option("backend", "auto");
const BASE = option("dir", tmpdir());
const H = 4096,
  I = 11008,
  V = 32000,
  R = 256,
  HEADS = 32;
const cli = builtCli();
const { planGguf, GgmlType, GgufValueType: T } = await import(join(root, "dist/gguf/index.js"));

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

const work = mkdtempSync(join(BASE, "vera-bench-merge-gguf-"));
let row;
let result;
try {
  const model = join(work, "model-f16.gguf");
  console.error(`generating a ${LAYERS}-layer GGUF...`);
  const bytes = generate(model, LAYERS);
  const adapter = join(work, "adapter.vera.safetensors");
  await writeBenchAdapter({ layers: LAYERS, path: adapter, hidden: H, rank: R });
  sync();
  const cpOut = join(work, "cp-out.gguf");
  const mOut = join(work, "merge-out.gguf");
  const {
    report,
    columns,
    result: times,
  } = mergeVsCp({
    reps: REPS,
    cp: () => {
      const { ms } = timed("cp", [model, cpOut]);
      rmSync(cpOut);
      return ms;
    },
    merge: () => {
      const m = timedMerge({
        cli,
        input: model,
        adapter,
        output: mOut,
        backend: BACKEND,
        extra: ["--json", "--no-fsync"],
      });
      rmSync(mOut);
      return m;
    },
  });
  row = {
    layers: LAYERS,
    size: `${(bytes / 1e9).toFixed(2)} GB`,
    merged: `${report.weights} x 4096x4096 f16`,
    ...columns,
  };
  result = { layers: LAYERS, bytes, mergedWeights: report.weights, backend: report.backendInfo, ...times };
} finally {
  rmSync(work, { recursive: true, force: true });
}
console.log(
  `\nvera merge vs cp, F16 Llama-2-7B-shaped GGUF, attn_q (permuted) + attn_v r=${R}, backend ${result.backend?.name ?? BACKEND} (${result.backend?.device ?? "?"}), no fsync, median of ${REPS}`,
);
table([row], Object.keys(row));
saveResults("merge-gguf", { reps: REPS, rank: R, result });

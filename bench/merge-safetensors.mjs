// Merge a VeRA adapter (q_proj + v_proj, r = 256) into a Llama-2-7B-shaped bfloat16 safetensors
// checkpoint generated here (never committed): hidden 4096, intermediate 11008, vocab 32000, N
// layers split into 3 shards with model.safetensors.index.json, as transformers save_pretrained
// writes them (32 layers = Llama-2-7B, 13.5 GB). Wall time of `cp -r` of the folder and of
// `vera merge` (same run, alternating, median of --reps), the ratio, and the merge's peak RSS. With --python
// (a Python that has torch, transformers and peft), also PEFT's merge of the same adapter in the same run
// (bench/peft-merge.py: from_pretrained, PeftModel.from_pretrained, merge_and_unload, save_pretrained in as many
// shards), its wall time as a ratio to `vera merge`'s, and its peak RSS.
//
//   node bench/merge-safetensors.mjs [--layers 2] [--reps 2] [--backend auto] [--dir DIR] [--python PATH] [--keep DIR]
//
// None of them syncs (--no-fsync; save_pretrained does not fsync either); a `sync` runs between runs and is not
// timed. Needs about 3x the checkpoint's size in free disk space under --dir.
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { saveResults, table } from "./lib.mjs";
import { builtCli, mergeVsCp, option, sync, timed, timedMerge, writeBenchAdapter } from "./merge-lib.mjs";
import { root } from "./lib.mjs";

const LAYERS = Number(option("layers", "2"));
const REPS = Number(option("reps", "2"));
const BACKEND = option("backend", "auto");
const BASE = option("dir", tmpdir());
const PYTHON = option("python", null);
const KEEP = option("keep", null);
const H = 4096,
  I = 11008,
  V = 32000,
  R = 256,
  SHARDS = 3;
const cli = builtCli();

/** The checkpoint's tensors, in save order: [name, shape]. */
function tensors(layers) {
  const out = [["model.embed_tokens.weight", [V, H]]];
  for (let l = 0; l < layers; l++) {
    const p = `model.layers.${l}`;
    out.push(
      [`${p}.input_layernorm.weight`, [H]],
      [`${p}.mlp.down_proj.weight`, [H, I]],
      [`${p}.mlp.gate_proj.weight`, [I, H]],
      [`${p}.mlp.up_proj.weight`, [I, H]],
      [`${p}.post_attention_layernorm.weight`, [H]],
      [`${p}.self_attn.k_proj.weight`, [H, H]],
      [`${p}.self_attn.o_proj.weight`, [H, H]],
      [`${p}.self_attn.q_proj.weight`, [H, H]],
      [`${p}.self_attn.v_proj.weight`, [H, H]],
    );
  }
  out.push(["model.norm.weight", [H]], ["lm_head.weight", [V, H]]);
  return out;
}

/** Write the shards, the index and a config.json; returns the total bytes. */
function generate(dir, layers) {
  const all = tensors(layers);
  const bytesOf = ([, shape]) => shape.reduce((a, b) => a * b, 1) * 2;
  const total = all.reduce((n, t) => n + bytesOf(t), 0);
  const chunk = Buffer.alloc(64 << 20);
  let s = 12345;
  for (let i = 0; i < chunk.length; i += 2) {
    s = (s * 1103515245 + 12345) >>> 0;
    chunk.writeUInt16LE(0x3c00 | (s >>> 25) | ((s & 1) << 15), i); // small bf16 values of both signs
  }
  const shards = [];
  let cur = [];
  let size = 0;
  for (const t of all) {
    if (size > 0 && size + bytesOf(t) > total / SHARDS && shards.length < SHARDS - 1) {
      shards.push(cur);
      cur = [];
      size = 0;
    }
    cur.push(t);
    size += bytesOf(t);
  }
  shards.push(cur);
  const weightMap = {};
  let written = 0;
  shards.forEach((list, k) => {
    const name = `model-${String(k + 1).padStart(5, "0")}-of-${String(shards.length).padStart(5, "0")}.safetensors`;
    const header = { __metadata__: { format: "pt" } };
    let off = 0;
    for (const t of list) {
      header[t[0]] = { dtype: "BF16", shape: t[1], data_offsets: [off, off + bytesOf(t)] };
      off += bytesOf(t);
      weightMap[t[0]] = name;
    }
    let json = JSON.stringify(header);
    json += " ".repeat((8 - ((8 + json.length) % 8)) % 8);
    const fd = openSync(join(dir, name), "w");
    const head = Buffer.alloc(8 + json.length);
    head.writeBigUInt64LE(BigInt(json.length), 0);
    head.write(json, 8, "latin1");
    writeSync(fd, head, 0, head.length, 0);
    for (let done = 0; done < off; ) {
      const n = Math.min(chunk.length, off - done);
      writeSync(fd, chunk, 0, n, head.length + done);
      done += n;
    }
    closeSync(fd);
    written += head.length + off;
  });
  writeFileSync(
    join(dir, "model.safetensors.index.json"),
    JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2),
  );
  // Llama-2-7B's config (with `layers` layers), so transformers loads the checkpoint.
  writeFileSync(
    join(dir, "config.json"),
    JSON.stringify({
      architectures: ["LlamaForCausalLM"],
      model_type: "llama",
      hidden_size: H,
      intermediate_size: I,
      num_hidden_layers: layers,
      num_attention_heads: 32,
      num_key_value_heads: 32,
      vocab_size: V,
      max_position_embeddings: 4096,
      rms_norm_eps: 1e-5,
      hidden_act: "silu",
      tie_word_embeddings: false,
      dtype: "bfloat16",
    }),
  );
  return written;
}

const work = mkdtempSync(join(BASE, "vera-bench-merge-st-"));
let row;
let result;
try {
  // --keep DIR: generate the checkpoint there once and reuse it in later runs (same --layers).
  const dir = KEEP ?? join(work, "base");
  let bytes;
  if (KEEP && existsSync(join(KEEP, "model.safetensors.index.json")))
    bytes = readdirSync(KEEP)
      .filter((f) => f.endsWith(".safetensors"))
      .reduce((n, f) => n + statSync(join(KEEP, f)).size, 0);
  else {
    mkdirSync(dir, { recursive: true });
    console.error(`generating a ${LAYERS}-layer checkpoint...`);
    bytes = generate(dir, LAYERS);
  }
  const adapter = join(work, "adapter.vera.safetensors");
  await writeBenchAdapter({ layers: LAYERS, path: adapter, hidden: H, rank: R });
  sync();
  const cpOut = join(work, "cp-out");
  const mOut = join(work, "merge-out");
  const peftAdapter = join(work, "peft-adapter");
  const peftOut = join(work, "peft-out");
  if (PYTHON) timed(process.execPath, [cli, "export-peft", adapter, "-o", peftAdapter]);
  const maxShard = String(Math.ceil(bytes / SHARDS / 1e8) * 1e8 + 1e8);
  const {
    report,
    columns,
    result: times,
  } = mergeVsCp({
    reps: REPS,
    cp: () => {
      const { ms } = timed("cp", ["-r", dir, cpOut]);
      rmSync(cpOut, { recursive: true });
      return ms;
    },
    merge: () => {
      const m = timedMerge({
        cli,
        input: dir,
        adapter,
        output: mOut,
        backend: BACKEND,
        extra: ["--json", "--no-fsync"],
      });
      rmSync(mOut, { recursive: true });
      return m;
    },
    ...(PYTHON
      ? {
          baseline: () => {
            const b = timed(PYTHON, [join(root, "bench/peft-merge.py"), dir, peftAdapter, peftOut, maxShard]);
            rmSync(peftOut, { recursive: true });
            return b;
          },
        }
      : {}),
  });
  row = {
    layers: LAYERS,
    size: `${(bytes / 1e9).toFixed(2)} GB`,
    merged: `${report.weights} x 4096x4096 bf16`,
    ...columns,
  };
  result = { layers: LAYERS, bytes, mergedWeights: report.weights, backend: report.backendInfo, ...times };
} finally {
  rmSync(work, { recursive: true, force: true });
}
console.log(
  `\nvera merge vs cp -r, bfloat16 Llama-2-7B-shaped safetensors checkpoint (3 shards), q_proj+v_proj r=${R}, backend ${result.backend?.name ?? BACKEND} (${result.backend?.device ?? "?"}), no fsync, median of ${REPS}`,
);
table([row], Object.keys(row));
saveResults("merge-safetensors", { reps: REPS, rank: R, result });

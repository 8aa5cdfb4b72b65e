// Llama-2-7B-shaped models for the merge benches, generated (never committed): hidden 4096, intermediate 11008,
// vocab 32000, N layers (32 = Llama-2-7B, 13.5 GB). An fp16 ONNX model with one external data file (optimum's
// naming), and a bf16 safetensors checkpoint in 3 shards with model.safetensors.index.json and a config.json
// transformers loads.
import { closeSync, openSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";

export const H = 4096,
  I = 11008,
  V = 32000,
  SHARDS = 3;
const enc = new TextEncoder();

// ---- a minimal protobuf writer for the generated model ----
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
export function generateOnnx(dir, layers) {
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
export function generateCheckpoint(dir, layers) {
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

/** The GGUF's tensors in llama.cpp's order: [name, ne, type]. */
function ggufTensors(layers, GgmlType) {
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

/**
 * Write an F16 Llama-2-7B-shaped GGUF with llama.cpp's tensor names and metadata (header by verakit's planner,
 * data as small random f16 values) at `path`; returns its size. Needs the built package (dist/).
 */
export async function generateGguf(path, layers) {
  const { planGguf, GgmlType, GgufValueType: T } = await import(new URL("../dist/gguf/index.js", import.meta.url));
  const u32 = (value) => ({ type: T.UINT32, value });
  const plan = planGguf({
    metadata: [
      ["general.architecture", { type: T.STRING, value: "llama" }],
      ["general.name", { type: T.STRING, value: "bench" }],
      ["llama.block_count", u32(layers)],
      ["llama.context_length", u32(4096)],
      ["llama.embedding_length", u32(H)],
      ["llama.feed_forward_length", u32(I)],
      ["llama.attention.head_count", u32(32)],
      ["llama.attention.head_count_kv", u32(32)],
      ["general.file_type", u32(1)],
    ],
    tensors: ggufTensors(layers, GgmlType).map(([name, ne, type]) => ({ name, ne, type })),
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

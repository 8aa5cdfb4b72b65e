/**
 * Fused attn_qkv tensors of GPT-NeoX, Bloom and Falcon GGUF files hold their rows in the order llama.cpp's converter
 * gives them (fixtures/zoo/qkv-row-orders.json, made from convert_hf_to_gguf.py's transforms by
 * fixtures/zoo/generate.py, including Falcon-40B-style grouped kv heads no zoo model has). A merge whose head counts
 * do not split the rows is refused, never merged in another order. The q/k rows of the other architectures whose
 * converter permutes them get that permutation through a mapping file too.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { GgufValueType, type GgufFile, type GgufValue } from "../src/gguf/types.js";
import { qkPermutationHeads } from "../src/gguf/tensor-names.js";
import { loraBaseFromConfig } from "../src/gguf/lora-base.js";
import { locateGgufWeights } from "../src/gguf/locate-gguf-weights.js";
import { qkvRowOrder, reorderRows } from "../src/gguf/qkv-row-order.js";
import { permuteQkRows, qkRowOrder } from "../src/gguf/permute-qk.js";
import { readGgufFile } from "../src/node/gguf-file.js";
import { errorCode } from "./error-helpers.js";

const ZOO = join(__dirname, "../fixtures/zoo");
const table = JSON.parse(readFileSync(join(ZOO, "qkv-row-orders.json"), "utf8")) as {
  cases: Array<{ architecture: string; n_head: number; n_head_kv: number; rows: number; order: number[] }>;
};

describe("fused attn_qkv rows in llama.cpp's order", () => {
  it("qkvRowOrder is the converter's order for every layout of the table", () => {
    expect(table.cases.length).toBeGreaterThanOrEqual(6);
    for (const c of table.cases) {
      const got = qkvRowOrder({
        architecture: c.architecture,
        tensor: "blk.3.attn_qkv",
        rows: c.rows,
        nHead: c.n_head,
        nHeadKv: c.n_head_kv,
      });
      expect([c.architecture, c.n_head, c.n_head_kv, [...(got as Uint32Array)]]).toEqual([
        c.architecture,
        c.n_head,
        c.n_head_kv,
        c.order,
      ]);
    }
  });

  it("reorderRows moves whole rows there and back", () => {
    const c = table.cases.find((x) => x.architecture === "falcon" && x.n_head_kv === 2)!;
    const order = qkvRowOrder({ ...c, architecture: "falcon", tensor: "blk.0.attn_qkv", nHead: 4, nHeadKv: 2 });
    const data = Float32Array.from({ length: c.rows * 3 }, (_, i) => i);
    const gguf = reorderRows(data, order as Uint32Array, 3, true);
    expect(gguf[3]).toBe(c.order[1]! * 3);
    expect([...reorderRows(gguf, order as Uint32Array, 3, false)]).toEqual([...data]);
  });

  it("other tensors and architectures keep their order; head counts that do not split the rows are reasons", () => {
    const p = { rows: 48, nHead: 2, nHeadKv: 2 };
    expect(qkvRowOrder({ ...p, architecture: "gptneox", tensor: "blk.0.attn_output" })).toBeUndefined();
    expect(qkvRowOrder({ ...p, architecture: "phi3", tensor: "blk.0.attn_qkv" })).toBeUndefined();
    expect(qkvRowOrder({ ...p, architecture: "gpt2", tensor: "blk.0.attn_qkv" })).toBeUndefined();
    expect(typeof qkvRowOrder({ ...p, nHead: 5, architecture: "bloom", tensor: "blk.0.attn_qkv" })).toBe("string");
    expect(typeof qkvRowOrder({ ...p, nHead: 3, architecture: "falcon", tensor: "blk.0.attn_qkv" })).toBe("string");
    expect(typeof qkvRowOrder({ ...p, nHead: 0, architecture: "gptneox", tensor: "blk.0.attn_qkv" })).toBe("string");
  });

  it("a GPT-NeoX GGUF whose head count does not split attn_qkv is refused (GGUF_BASE_MISMATCH)", async () => {
    const file: GgufFile = await readGgufFile(join(ZOO, "gpt_neox", "base.gguf"));
    const modules = [{ name: "gpt_neox.layers.0.attention.query_key_value", inFeatures: 16, outFeatures: 48 }];
    expect(locateGgufWeights({ file, modules }).weights[0]!.rowOrder?.length).toBe(48);
    const bad = new Map(file.metadata);
    bad.set("gptneox.attention.head_count", { type: GgufValueType.UINT32, value: 5 });
    expect(errorCode(() => locateGgufWeights({ file: { ...file, metadata: bad }, modules }))).toBe(
      "GGUF_BASE_MISMATCH",
    );
  });
});

describe("q/k rows of the other architectures whose converter permutes them", () => {
  it("granite, olmo, minicpm, deci, deepseek permute as Llama; baichuan only without grouped kv heads; qwen2 never", () => {
    const at = (architecture: string, tensor: string, nHeadKv = 2) =>
      qkPermutationHeads({ architecture, tensor, nHead: 4, nHeadKv });
    for (const a of ["llama", "granite", "granitemoe", "olmo", "minicpm", "deci", "deepseek", "arctic", "chameleon"])
      expect([a, at(a, "blk.1.attn_q"), at(a, "blk.1.attn_k"), at(a, "blk.1.attn_v")]).toEqual([a, 4, 2, undefined]);
    expect([at("baichuan", "blk.0.attn_q", 4), at("baichuan", "blk.0.attn_k", 4)]).toEqual([4, 4]);
    expect(at("baichuan", "blk.0.attn_k")).toBe(0);
    expect([at("qwen2", "blk.0.attn_q"), at("phi3", "blk.0.attn_qkv")]).toEqual([undefined, undefined]);
  });

  it("a mapped Granite GGUF gets the q/k permutation (no silent merge in the checkpoint's order)", async () => {
    const file: GgufFile = await readGgufFile(join(ZOO, "llama", "base.gguf"));
    const meta = new Map<string, GgufValue>();
    for (const [k, v] of file.metadata) meta.set(k.replace(/^llama\./, "granite."), v);
    meta.set("general.architecture", { type: GgufValueType.STRING, value: "granite" });
    const modules = [
      { name: "model.layers.0.self_attn.q_proj", inFeatures: 16, outFeatures: 16 },
      { name: "model.layers.0.self_attn.k_proj", inFeatures: 16, outFeatures: 8 },
    ];
    const mapping = {
      "model.layers.{bid}.self_attn.q_proj": "blk.{bid}.attn_q",
      "model.layers.{bid}.self_attn.k_proj": "blk.{bid}.attn_k",
    };
    const plan = locateGgufWeights({ file: { ...file, metadata: meta }, modules, mapping });
    expect(plan.architecture).toBe("granite");
    expect(plan.weights.map((w) => w.permuteHeads)).toEqual([2, 1]);
  });
});

describe("a Falcon base described by its config.json", () => {
  it("has the kv heads its weights hold: one for the multi-query architecture, num_kv_heads for the new one", () => {
    const text = readFileSync(join(ZOO, "falcon", "base", "config.json"), "utf8");
    const cfg = JSON.parse(text) as Record<string, unknown>;
    expect([cfg["multi_query"], cfg["num_kv_heads"]]).toEqual([true, 2]);
    expect(loraBaseFromConfig(text)).toMatchObject({ architecture: "falcon", nHead: 2, nHeadKv: 1 });
    const grouped = JSON.stringify({ ...cfg, new_decoder_architecture: true, num_attention_heads: 4 });
    expect(loraBaseFromConfig(grouped)).toMatchObject({ nHead: 4, nHeadKv: 2 });
    const plain = JSON.stringify({ ...cfg, multi_query: false });
    expect(loraBaseFromConfig(plain)).toMatchObject({ nHead: 2, nHeadKv: 2 });
  });
});

describe("qkRowOrder", () => {
  it("is llama.cpp's q/k permutation as a row order: reorderRows with it equals permuteQkRows, both ways", () => {
    for (const [rows, nHead] of [
      [16, 2],
      [24, 3],
      [8, 4],
    ] as const) {
      const rowLength = 3;
      const data = Float32Array.from({ length: rows * rowLength }, (_, i) => i);
      const order = qkRowOrder({ rows, nHead });
      const gguf = permuteQkRows({ data, rows, rowLength, nHead });
      expect(reorderRows(data, order, rowLength, true)).toEqual(gguf);
      expect(reorderRows(gguf, order, rowLength, false)).toEqual(data);
    }
    expect(() => qkRowOrder({ rows: 10, nHead: 2 })).toThrow(RangeError);
  });
});

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { VeraError } from "../src/errors.js";
import {
  bytesSource,
  decodeTensor,
  encodeTensor,
  GgmlType,
  GgufErrorCode,
  ggufTensorName,
  parseGgufNameMapping,
  permuteQkRows,
  qkPermutationHeads,
  readGguf,
  writeGguf,
  type GgufFile,
} from "../src/gguf/index.js";
import { asFloat32, parseSafetensors, tensorBytes } from "../src/safetensors/parse.js";
import { bundleForBrowser } from "./bundle-helpers.js";
import { errorCode } from "./error-helpers.js";

const DIR = join(import.meta.dirname, "..", "fixtures", "gguf");
const parity = new Uint8Array(readFileSync(join(DIR, "writer-parity.gguf")));
const results = JSON.parse(readFileSync(join(DIR, "verify-results.json"), "utf8")) as {
  writer_parity: { values: number[] };
};

async function codeOf(bytes: Uint8Array): Promise<string> {
  try {
    await readGguf({ source: bytesSource(bytes) });
  } catch (e) {
    if (e instanceof VeraError) return e.code;
    throw e;
  }
  return "ok";
}

/** Hand-made GGUF bytes (independent of the writer under test). */
class B {
  parts: number[] = [];
  u8(v: number) {
    this.parts.push(v & 255);
    return this;
  }
  u32(v: number) {
    for (let i = 0; i < 4; i++) this.parts.push((v >>> (8 * i)) & 255);
    return this;
  }
  u64(v: bigint | number) {
    const b = BigInt(v);
    for (let i = 0n; i < 8n; i++) this.parts.push(Number((b >> (8n * i)) & 255n));
    return this;
  }
  str(s: string | number[]) {
    const b = typeof s === "string" ? [...new TextEncoder().encode(s)] : s;
    this.u64(b.length);
    this.parts.push(...b);
    return this;
  }
  pad(to: number) {
    while (this.parts.length % to) this.parts.push(0);
    return this;
  }
  zeros(n: number) {
    for (let i = 0; i < n; i++) this.parts.push(0);
    return this;
  }
  bytes() {
    return new Uint8Array(this.parts);
  }
}
const head = (nt: number | bigint, nkv: number | bigint) => new B().u32(0x46554747).u32(3).u64(nt).u64(nkv);
/** One f32 tensor info. */
const tinfo = (b: B, name: string, ne: number[], offset: number, type = 0) => {
  b.str(name).u32(ne.length);
  for (const d of ne) b.u64(d);
  return b.u32(type).u64(offset);
};

describe("GGUF reader and writer against llama.cpp's gguf-py", () => {
  it("reads every metadata type and tensor of a file gguf-py wrote, also through 7-byte range reads", async () => {
    const f = await readGguf({ source: bytesSource(parity) });
    const small = await readGguf({ source: bytesSource(parity), chunkSize: 7 });
    expect(small).toEqual(f);
    const v = (k: string) => f.metadata.get(k);
    expect(v("general.architecture")).toEqual({ type: 8, value: "llama" });
    expect(v("t.u8")).toEqual({ type: 0, value: 200 });
    expect(v("t.i8")).toEqual({ type: 1, value: -100 });
    expect(v("t.u16")).toEqual({ type: 2, value: 60000 });
    expect(v("t.i16")).toEqual({ type: 3, value: -30000 });
    expect(v("t.u32")).toEqual({ type: 4, value: 4000000000 });
    expect(v("t.i32")).toEqual({ type: 5, value: -2000000000 });
    expect(v("t.f32")).toEqual({ type: 6, value: Math.fround(0.1) });
    expect(v("t.bool")).toEqual({ type: 7, value: true });
    expect(v("t.str")).toEqual({ type: 8, value: "h\u00e9llo \u2581" });
    expect(v("t.u64")).toEqual({ type: 10, value: 2n ** 63n + 5n });
    expect(v("t.i64")).toEqual({ type: 11, value: -(2n ** 62n) - 3n });
    expect(v("t.f64")).toEqual({ type: 12, value: 1 / 3 });
    expect(v("t.arr_i32")).toEqual({ type: 9, itemType: 5, value: [1, -2, 3] });
    expect(v("t.arr_str")).toEqual({ type: 9, itemType: 8, value: ["a", "", "\u00fc"] });
    expect(v("t.arr_f32")).toEqual({ type: 9, itemType: 6, value: [0.5, -1.25] });
    expect(f.alignment).toBe(32);
    expect(f.tensors.map((t) => [t.name, t.ne, t.type])).toEqual([
      ["w.f32", [64, 2], GgmlType.F32],
      ["w.f16", [64, 2], GgmlType.F16],
      ["w.bf16", [64, 2], GgmlType.BF16],
      ["w.q8_0", [64, 2], GgmlType.Q8_0],
      ["w.odd", [5, 3], GgmlType.F32],
    ]);
  });

  it("writes the same bytes as gguf-py from the same metadata and tensors", async () => {
    const f = await readGguf({ source: bytesSource(parity) });
    const out = writeGguf({
      metadata: f.metadata,
      tensors: f.tensors.map((t) => ({
        name: t.name,
        type: t.type,
        ne: t.ne,
        data: parity.subarray(f.dataOffset + t.offset, f.dataOffset + t.offset + t.byteLength),
      })),
    });
    expect(Buffer.from(out).equals(Buffer.from(parity))).toBe(true);
  });

  it("encodes F32, F16, BF16 and Q8_0 exactly as gguf-py quantizes (an all-zero Q8_0 block included)", async () => {
    const f = await readGguf({ source: bytesSource(parity) });
    const values = Float32Array.from(results.writer_parity.values);
    const data = (name: string) => {
      const t = f.tensors.find((x) => x.name === name)!;
      return parity.subarray(f.dataOffset + t.offset, f.dataOffset + t.offset + t.byteLength);
    };
    for (const [type, name] of [
      ["f32", "w.f32"],
      ["f16", "w.f16"],
      ["bf16", "w.bf16"],
      ["q8_0", "w.q8_0"],
    ] as const)
      expect(Buffer.from(encodeTensor(values, 64, type, name)).equals(Buffer.from(data(name))), name).toBe(true);
    const q = decodeTensor(data("w.q8_0"), GgmlType.Q8_0);
    for (let i = 0; i < 128; i++) expect(Math.abs(q[i]! - values[i]!)).toBeLessThanOrEqual(0.05);
    expect(() => encodeTensor(new Float32Array(48), 48, "q8_0", "x")).toThrow(
      expect.objectContaining({ code: GgufErrorCode.GGUF_QUANT_BLOCK }),
    );
  });
});

describe("GGUF reader: every refusal on hand-made bytes", () => {
  const valid = () => {
    const b = head(2, 1).str("general.alignment").u32(4).u32(32);
    tinfo(b, "a", [4], 0);
    tinfo(b, "b", [2, 2], 32);
    return b.pad(32).zeros(48);
  };
  it("accepts the valid hand-made file", async () => {
    const f: GgufFile = await readGguf({ source: bytesSource(valid().bytes()) });
    expect(f.tensors.map((t) => [t.name, t.offset, t.byteLength])).toEqual([
      ["a", 0, 16],
      ["b", 32, 16],
    ]);
  });
  it("every truncation of it is GGUF_TRUNCATED, or GGUF_COUNT where a count no longer fits what is left", async () => {
    const bytes = valid().bytes();
    const seen = new Set<string>();
    for (let n = 0; n < bytes.length; n++) {
      const code = await codeOf(bytes.subarray(0, n));
      expect(["GGUF_TRUNCATED", "GGUF_COUNT"], `prefix ${n}`).toContain(code);
      seen.add(code);
    }
    expect(seen).toEqual(new Set(["GGUF_TRUNCATED", "GGUF_COUNT"]));
  });
  const cases: [string, () => Uint8Array, string][] = [
    ["bad magic", () => new B().u32(0x46554746).u32(3).u64(0).u64(0).bytes(), "GGUF_MAGIC"],
    ["version 2", () => new B().u32(0x46554747).u32(2).u64(0).u64(0).bytes(), "GGUF_VERSION"],
    ["big-endian version", () => new B().u32(0x46554747).u32(0x03000000).u64(0).u64(0).bytes(), "GGUF_VERSION"],
    ["absurd tensor count", () => head(2n ** 62n, 0).bytes(), "GGUF_COUNT"],
    ["absurd kv count", () => head(0, 2n ** 40n).bytes(), "GGUF_COUNT"],
    [
      "absurd key length",
      () =>
        head(0, 1)
          .u64(2n ** 60n)
          .bytes(),
      "GGUF_COUNT",
    ],
    [
      "absurd array length",
      () =>
        head(0, 1)
          .str("k")
          .u32(9)
          .u32(4)
          .u64(2n ** 50n)
          .bytes(),
      "GGUF_COUNT",
    ],
    ["unknown value type", () => head(0, 1).str("k").u32(13).u32(0).bytes(), "GGUF_VALUE_TYPE"],
    ["unknown array item type", () => head(0, 1).str("k").u32(9).u32(99).u64(0).bytes(), "GGUF_VALUE_TYPE"],
    ["bool 2", () => head(0, 1).str("k").u32(7).u8(2).bytes(), "GGUF_VALUE_TYPE"],
    ["key not UTF-8", () => head(0, 1).str([0xff, 0xfe]).u32(0).u8(1).bytes(), "GGUF_STRING"],
    ["duplicate key", () => head(0, 2).str("k").u32(0).u8(1).str("k").u32(0).u8(2).bytes(), "GGUF_DUPLICATE"],
    [
      "alignment not a power of two",
      () => head(0, 1).str("general.alignment").u32(4).u32(24).bytes(),
      "GGUF_ALIGNMENT",
    ],
    ["alignment of the wrong type", () => head(0, 1).str("general.alignment").u32(5).u32(32).bytes(), "GGUF_ALIGNMENT"],
    [
      "tensor name over 63 bytes",
      () => tinfo(head(1, 0), "x".repeat(64), [4], 0).pad(32).zeros(16).bytes(),
      "GGUF_STRING",
    ],
    [
      "duplicate tensor",
      () =>
        tinfo(tinfo(head(2, 0), "a", [4], 0), "a", [4], 32)
          .pad(32)
          .zeros(64)
          .bytes(),
      "GGUF_DUPLICATE",
    ],
    ["five dims", () => tinfo(head(1, 0), "a", [1, 1, 1, 1, 1], 0).pad(32).zeros(32).bytes(), "GGUF_TENSOR_SHAPE"],
    ["zero dims", () => tinfo(head(1, 0), "a", [], 0).pad(32).zeros(32).bytes(), "GGUF_TENSOR_SHAPE"],
    ["unknown tensor type", () => tinfo(head(1, 0), "a", [4], 0, 77).pad(32).zeros(32).bytes(), "GGUF_TENSOR_TYPE"],
    ["Q8_0 row of 40", () => tinfo(head(1, 0), "a", [40], 0, 8).pad(32).zeros(64).bytes(), "GGUF_TENSOR_SHAPE"],
    [
      "absurd dim",
      () =>
        tinfo(head(1, 0), "a", [2 ** 53 + 2], 0)
          .pad(32)
          .bytes(),
      "GGUF_COUNT",
    ],
    [
      "size overflow",
      () =>
        tinfo(head(1, 0), "a", [2 ** 30, 2 ** 30, 2 ** 30], 0)
          .pad(32)
          .bytes(),
      "GGUF_COUNT",
    ],
    ["misaligned offset", () => tinfo(head(1, 0), "a", [4], 8).pad(32).zeros(64).bytes(), "GGUF_TENSOR_RANGE"],
    [
      "overlap",
      () =>
        tinfo(tinfo(head(2, 0), "a", [16], 0), "b", [4], 32)
          .pad(32)
          .zeros(96)
          .bytes(),
      "GGUF_TENSOR_RANGE",
    ],
    ["data beyond the file", () => tinfo(head(1, 0), "a", [4], 0).pad(32).zeros(15).bytes(), "GGUF_TRUNCATED"],
    [
      "offset beyond the file",
      () =>
        tinfo(head(1, 0), "a", [4], 2 ** 40)
          .pad(32)
          .zeros(16)
          .bytes(),
      "GGUF_TRUNCATED",
    ],
  ];
  for (const [name, make, code] of cases) it(`${name}: ${code}`, async () => expect(await codeOf(make())).toBe(code));
});

describe("llama.cpp tensor names and q/k permutation", () => {
  it("maps the families' module paths to llama.cpp names", () => {
    const n = (architecture: string, module: string) => ggufTensorName({ architecture, module });
    expect(n("llama", "model.layers.0.self_attn.q_proj")).toBe("blk.0.attn_q");
    expect(n("llama", "model.layers.11.self_attn.o_proj")).toBe("blk.11.attn_output");
    expect(n("llama", "model.layers.2.mlp.gate_proj")).toBe("blk.2.ffn_gate");
    expect(n("qwen2", "model.layers.3.mlp.up_proj")).toBe("blk.3.ffn_up");
    expect(n("gemma2", "model.layers.1.mlp.down_proj")).toBe("blk.1.ffn_down");
    expect(n("phi3", "model.layers.0.self_attn.qkv_proj")).toBe("blk.0.attn_qkv");
    expect(n("phi3", "model.layers.0.mlp.gate_up_proj")).toBe("blk.0.ffn_up");
    expect(n("gpt2", "transformer.h.4.attn.c_attn")).toBe("blk.4.attn_qkv");
    expect(n("gpt2", "h.1.mlp.c_proj")).toBe("blk.1.ffn_down");
    expect(n("llama", "lm_head")).toBe("output");
    expect(n("llama", "model.layers.0.self_attn.rotary")).toBeUndefined();
    expect(n("mamba", "model.layers.0.self_attn.q_proj")).toBeUndefined();
    const mapping = parseGgufNameMapping('{"backbone.layers.{bid}.mixer.in_proj.weight": "blk.{bid}.ssm_in"}');
    expect(ggufTensorName({ architecture: "mamba", module: "backbone.layers.7.mixer.in_proj", mapping })).toBe(
      "blk.7.ssm_in",
    );
    expect(() => parseGgufNameMapping('{"a": 3}')).toThrow(expect.objectContaining({ code: "GGUF_MAPPING" }));
    expect(qkPermutationHeads({ architecture: "llama", tensor: "blk.0.attn_k", nHead: 4, nHeadKv: 2 })).toBe(2);
    expect(qkPermutationHeads({ architecture: "qwen2", tensor: "blk.0.attn_q", nHead: 4, nHeadKv: 2 })).toBeUndefined();
  });

  it("permuteQkRows reproduces convert_hf_to_gguf: the fixture GGUF's attn_q/attn_k are the permuted HF weights", async () => {
    const gg = new Uint8Array(readFileSync(join(DIR, "llama", "base-f32.gguf")));
    const f = await readGguf({ source: bytesSource(gg) });
    const st = parseSafetensors(new Uint8Array(readFileSync(join(DIR, "llama", "model.safetensors"))));
    for (const [hf, name, heads] of [
      ["model.layers.0.self_attn.q_proj.weight", "blk.0.attn_q.weight", 4],
      ["model.layers.1.self_attn.k_proj.weight", "blk.1.attn_k.weight", 2],
    ] as const) {
      const w = asFloat32(tensorBytes(st, hf));
      const t = f.tensors.find((x) => x.name === name)!;
      const got = decodeTensor(gg.subarray(f.dataOffset + t.offset, f.dataOffset + t.offset + t.byteLength), t.type);
      const rows = t.ne[1]!;
      const permuted = permuteQkRows({ data: w, rows, rowLength: t.ne[0]!, nHead: heads });
      expect(Buffer.from(permuted.buffer).equals(Buffer.from(got.buffer)), name).toBe(true);
      expect(Buffer.from(w.slice().buffer).equals(Buffer.from(got.buffer)), `${name} differs unpermuted`).toBe(false);
    }
  });
});

describe("GGUF writer refusals and alignment", () => {
  const t = (name: string, ne = [4]) => ({ name, type: GgmlType.F32, ne, data: new Uint8Array(ne[0]! * 4) });
  const code = (f: () => unknown) => errorCode(f, "ok");
  it("refuses duplicate names and keys, long names, bad dims, wrong value types, bad alignment", () => {
    expect(code(() => writeGguf({ metadata: [], tensors: [t("a"), t("a")] }))).toBe("GGUF_DUPLICATE");
    const s = { type: 8 as const, value: "x" };
    expect(
      code(() =>
        writeGguf({
          metadata: [
            ["k", s],
            ["k", s],
          ],
          tensors: [],
        }),
      ),
    ).toBe("GGUF_DUPLICATE");
    expect(code(() => writeGguf({ metadata: [], tensors: [t("x".repeat(64))] }))).toBe("GGUF_STRING");
    expect(code(() => writeGguf({ metadata: [], tensors: [t("a", [1, 1, 1, 1, 1])] }))).toBe("GGUF_TENSOR_SHAPE");
    expect(code(() => writeGguf({ metadata: [["k", { type: 4, value: -1 }]], tensors: [] }))).toBe("GGUF_VALUE_TYPE");
    expect(code(() => writeGguf({ metadata: [["k", { type: 7, value: 1 }]], tensors: [] }))).toBe("GGUF_VALUE_TYPE");
    expect(code(() => writeGguf({ metadata: [], tensors: [t("a")], alignment: 24 }))).toBe("GGUF_ALIGNMENT");
    expect(code(() => writeGguf({ metadata: [], tensors: [{ ...t("a"), data: new Uint8Array(3) }] }))).toBe(
      "GGUF_TENSOR_SHAPE",
    );
  });
  it("alignment 64 is written as general.alignment and read back", async () => {
    const bytes = writeGguf({ metadata: [], tensors: [t("a", [3]), t("b", [5])], alignment: 64 });
    const f = await readGguf({ source: bytesSource(bytes) });
    expect(f.alignment).toBe(64);
    expect(f.metadata.get("general.alignment")).toEqual({ type: 4, value: 64 });
    expect(f.tensors.map((x) => x.offset)).toEqual([0, 64]);
    expect(f.dataOffset % 64).toBe(0);
    expect(bytes.byteLength).toBe(f.dataOffset + 128);
  });
  it("src/gguf bundles for the browser without Node built-ins", async () => {
    const r = await bundleForBrowser("src/gguf/index.ts");
    expect(Object.keys(r.metafile.inputs).filter((i) => i.startsWith("node:"))).toEqual([]);
    expect(r.outputFiles[0]!.text).not.toMatch(/\bfrom\s+["']node:|require\(["']node:/);
  });
});

describe("GGUF reader fuzz: mutated and random bytes give a GGUF_* error or a checked file", () => {
  it("500 byte mutations and truncations of the gguf-py file", async () => {
    const fc = await import("fast-check");
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.nat(parity.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
        fc.nat(parity.length),
        async (edits, cut) => {
          const b = parity.slice(0, Math.max(cut, 24));
          for (const [i, v] of edits) if (i < b.length) b[i] = v;
          const c = await codeOf(b);
          expect(c === "ok" || c.startsWith("GGUF_")).toBe(true);
          if (c === "ok") {
            const f = await readGguf({ source: bytesSource(b) });
            for (const t of f.tensors) expect(f.dataOffset + t.offset + t.byteLength).toBeLessThanOrEqual(b.length);
          }
        },
      ),
      { numRuns: 500, seed: 42 },
    );
  });
});

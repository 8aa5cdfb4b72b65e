import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { VeraError } from "../src/errors.js";
import { createAdapter } from "../src/format/create.js";
import {
  bytesSource,
  decodeTensor,
  exportGgufLora,
  exportGgufLoraStream,
  GgmlType,
  GgufErrorCode,
  loraBaseFromConfig,
  loraBaseFromGguf,
  readGguf,
  type GgufFile,
  type GgufLoraBase,
} from "../src/gguf/index.js";
import { loadGgufLoraInputs, readGgufFile, writeGgufStreamFile } from "../src/node/gguf-file.js";
import { parseSafetensors, tensorBytes } from "../src/safetensors/parse.js";
import { errorCode } from "./error-helpers.js";

const DIR = join(import.meta.dirname, "..", "fixtures", "gguf");
const BASE = join(DIR, "llama", "base-f32.gguf");
const VERA = join(DIR, "vera");
const verify = JSON.parse(readFileSync(join(DIR, "verify-results.json"), "utf8")) as {
  files: Record<
    string,
    {
      fields: Record<string, { types: number[]; value: unknown }>;
      tensors: { name: string; ne: number[]; type: string; n_bytes: number; data_offset: number }[];
      alignment: number;
      data_offset: number;
      math: Record<string, { max_abs_error: number; max_abs_delta: number; fro_relative_error: number }>;
    }
  >;
};
const ref = parseSafetensors(new Uint8Array(readFileSync(join(DIR, "reference.safetensors"))));
const refDelta = (name: string) => new Float64Array(tensorBytes(ref, name).slice().buffer);
const RUNS = {
  "adapter-f32.gguf": { type: "f32" },
  "adapter-f16.gguf": { type: "f16" },
  "adapter-bf16.gguf": { type: "bf16" },
  "adapter-rank4.gguf": { rank: 4 },
} as const;
/** max |lora_b lora_a alpha/r - delta| / max |delta| allowed: float32 rounding, then the 16-bit types' rounding. */
const TOLERANCE: Record<string, number> = {
  "adapter-f32.gguf": 1e-6,
  "adapter-f16.gguf": 2e-3,
  "adapter-bf16.gguf": 1.6e-2,
};
const cli = join(import.meta.dirname, "..", "dist", "cli", "index.js");
const run = (args: string[]) => {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: "utf8" });
  return { code: r.status, stdout: r.stdout };
};
const tmp = mkdtempSync(join(tmpdir(), "vk-gguf-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function tensorValues(bytes: Uint8Array, f: GgufFile, name: string): { ne: number[]; v: Float32Array } {
  const t = f.tensors.find((x) => x.name === name);
  if (!t) throw new Error(`no tensor ${name}`);
  return {
    ne: t.ne,
    v: decodeTensor(bytes.subarray(f.dataOffset + t.offset, f.dataOffset + t.offset + t.byteLength), t.type),
  };
}

describe("vera export-gguf-lora on a real PEFT VeRA adapter and a gguf-py Llama (GQA) base", async () => {
  const inputs = await loadGgufLoraInputs({ adapter: VERA, base: BASE });
  for (const [file, opts] of Object.entries(RUNS)) {
    it(`${file}: the same bytes gguf-py checked (fixtures/gguf/verify-results.json)`, () => {
      const { bytes } = exportGgufLora({ adapter: inputs.adapter, base: inputs.base, ...opts });
      expect(Buffer.from(bytes).equals(readFileSync(join(DIR, "out", file)))).toBe(true);
    });
  }

  it("structure: llama.cpp's keys and names, read alike by our reader and gguf-py's GGUFReader", async () => {
    for (const file of Object.keys(RUNS)) {
      const bytes = new Uint8Array(readFileSync(join(DIR, "out", file)));
      const f = await readGguf({ source: bytesSource(bytes) });
      const py = verify.files[file]!;
      const ours: Record<string, { types: number[]; value: unknown }> = {};
      for (const [k, v] of f.metadata) ours[k] = { types: [v.type], value: v.value };
      expect(ours).toEqual(py.fields);
      expect(f.alignment).toBe(py.alignment);
      expect(f.dataOffset).toBe(py.data_offset);
      const names: Record<number, string> = { 0: "F32", 1: "F16", 30: "BF16", 8: "Q8_0" };
      expect(
        f.tensors.map((t) => ({
          name: t.name,
          ne: t.ne,
          type: names[t.type],
          n_bytes: t.byteLength,
          data_offset: f.dataOffset + t.offset,
        })),
      ).toEqual(py.tensors);
    }
    const py = verify.files["adapter-f32.gguf"]!;
    expect(py.fields["general.type"]!.value).toBe("adapter");
    expect(py.fields["general.architecture"]!.value).toBe("llama");
    expect(py.fields["adapter.type"]!.value).toBe("lora");
    expect(py.fields["adapter.lora.alpha"]).toEqual({ types: [6], value: 16 });
    // 2 layers x q,k,v,o,gate,up,down, each a lora_a [n_in, r] and a lora_b [r, n_out]
    expect(py.tensors).toHaveLength(28);
    expect(py.tensors.find((t) => t.name === "blk.0.attn_k.weight.lora_a")!.ne).toEqual([32, 16]);
    expect(py.tensors.find((t) => t.name === "blk.0.attn_k.weight.lora_b")!.ne).toEqual([16, 16]);
    expect(py.tensors.find((t) => t.name === "blk.1.ffn_down.weight.lora_a")!.ne).toEqual([48, 16]);
    expect(py.tensors.find((t) => t.name === "blk.1.ffn_down.weight.lora_b")!.ne).toEqual([16, 32]);
  });

  it("math: lora_b x lora_a x alpha/r equals the VeRA delta (permuted for attn_q/attn_k) of every module", async () => {
    for (const [file, tol] of Object.entries(TOLERANCE)) {
      const bytes = new Uint8Array(readFileSync(join(DIR, "out", file)));
      const f = await readGguf({ source: bytesSource(bytes) });
      const alpha = f.metadata.get("adapter.lora.alpha")!.value as number;
      for (const name of ref.tensors.keys()) {
        const a = tensorValues(bytes, f, `${name}.lora_a`); // ne [in, r]: row-major (r, in)
        const b = tensorValues(bytes, f, `${name}.lora_b`); // ne [r, out]: row-major (out, r)
        const [nIn, r] = a.ne as [number, number];
        const nOut = b.ne[1]!;
        const delta = refDelta(name);
        expect(delta.length).toBe(nOut * nIn);
        let maxErr = 0;
        let maxRef = 0;
        for (let o = 0; o < nOut; o++)
          for (let i = 0; i < nIn; i++) {
            let s = 0;
            for (let k = 0; k < r; k++) s += b.v[o * r + k]! * a.v[k * nIn + i]!;
            s *= alpha / r;
            maxErr = Math.max(maxErr, Math.abs(s - delta[o * nIn + i]!));
            maxRef = Math.max(maxRef, Math.abs(delta[o * nIn + i]!));
          }
        expect(maxErr / maxRef, `${file} ${name}`).toBeLessThan(tol);
        // gguf-py's float64 check of the same file agrees
        const py = verify.files[file]!.math[name]!;
        expect(py.max_abs_error / py.max_abs_delta, `${file} ${name} (gguf-py)`).toBeLessThan(tol);
        expect(Math.abs(py.max_abs_error - maxErr)).toBeLessThan(1e-7 + 1e-3 * maxErr);
      }
    }
  });

  it("qwen2: no permutation, every module's lora_b x lora_a equals torch's VeRA delta to float32 rounding", async () => {
    const q = join(DIR, "qwen2");
    const inp = await loadGgufLoraInputs({ adapter: join(q, "vera"), base: join(q, "base-f32.gguf") });
    const { bytes, report } = exportGgufLora({ adapter: inp.adapter, base: inp.base });
    expect(report.modules.filter((m) => m.permutedHeads !== undefined)).toEqual([]);
    const f = await readGguf({ source: bytesSource(bytes) });
    const qref = parseSafetensors(new Uint8Array(readFileSync(join(q, "reference.safetensors"))));
    expect(f.tensors).toHaveLength(2 * qref.tensors.size);
    for (const name of qref.tensors.keys()) {
      const a = tensorValues(bytes, f, `${name}.lora_a`);
      const b = tensorValues(bytes, f, `${name}.lora_b`);
      const [nIn, r] = a.ne as [number, number];
      const delta = new Float64Array(tensorBytes(qref, name).slice().buffer);
      let maxErr = 0;
      let maxRef = 0;
      for (let o = 0; o < b.ne[1]!; o++)
        for (let i = 0; i < nIn; i++) {
          let s = 0;
          for (let k = 0; k < r; k++) s += b.v[o * r + k]! * a.v[k * nIn + i]!;
          maxErr = Math.max(maxErr, Math.abs(s - delta[o * nIn + i]!));
          maxRef = Math.max(maxRef, Math.abs(delta[o * nIn + i]!));
        }
      expect(maxErr / maxRef, name).toBeLessThan(1e-6);
    }
  });

  it("without the permutation attn_q/attn_k would be wrong (the check can fail)", async () => {
    const noPerm: GgufLoraBase = { ...inputs.base, architecture: "qwen2" };
    const { bytes } = exportGgufLora({ adapter: inputs.adapter, base: noPerm });
    const f = await readGguf({ source: bytesSource(bytes) });
    const a = tensorValues(bytes, f, "blk.0.attn_q.weight.lora_a");
    const b = tensorValues(bytes, f, "blk.0.attn_q.weight.lora_b");
    const delta = refDelta("blk.0.attn_q.weight");
    let err = 0;
    for (let o = 0; o < 32; o++)
      for (let i = 0; i < 32; i++) {
        let s = 0;
        for (let k = 0; k < 16; k++) s += b.v[o * 16 + k]! * a.v[k * 32 + i]!;
        err = Math.max(err, Math.abs(s - delta[o * 32 + i]!));
      }
    expect(err).toBeGreaterThan(1e-2);
  });

  it("--rank 4: the report's per-module relative error is gguf-py's measured Frobenius error", () => {
    const { report } = exportGgufLora({ adapter: inputs.adapter, base: inputs.base, rank: 4 });
    expect(report.exact).toBe(false);
    expect(report.alpha).toBe(4);
    const py = verify.files["adapter-rank4.gguf"]!.math;
    for (const m of report.modules) expect(m.relativeError).toBeCloseTo(py[m.tensor]!.fro_relative_error, 5);
  });

  it("a config.json base gives the same file as the GGUF base", async () => {
    const viaConfig = await loadGgufLoraInputs({ adapter: VERA, base: join(DIR, "llama", "config.json") });
    expect(viaConfig.base.architecture).toBe("llama");
    expect(viaConfig.base.nHeadKv).toBe(2);
    const a = exportGgufLora({ adapter: viaConfig.adapter, base: viaConfig.base }).bytes;
    expect(Buffer.from(a).equals(readFileSync(join(DIR, "out", "adapter-f32.gguf")))).toBe(true);
  });
});

describe("export-gguf-lora refusals: typed errors, nothing written", async () => {
  const inputs = await loadGgufLoraInputs({ adapter: VERA, base: BASE });
  const code = (f: () => unknown) => errorCode(f, "ok");
  it("unknown architecture without a mapping; accepted with one", () => {
    const base: GgufLoraBase = { architecture: "mamba", label: "x" };
    expect(code(() => exportGgufLora({ adapter: inputs.adapter, base }))).toBe(GgufErrorCode.GGUF_UNKNOWN_ARCHITECTURE);
    const mapping = {
      "model.layers.{bid}.self_attn.q_proj": "blk.{bid}.attn_q",
      "model.layers.{bid}.self_attn.k_proj": "blk.{bid}.attn_k",
      "model.layers.{bid}.self_attn.v_proj": "blk.{bid}.attn_v",
      "model.layers.{bid}.self_attn.o_proj": "blk.{bid}.attn_output",
      "model.layers.{bid}.mlp.gate_proj": "blk.{bid}.ffn_gate",
      "model.layers.{bid}.mlp.up_proj": "blk.{bid}.ffn_up",
    };
    try {
      exportGgufLora({ adapter: inputs.adapter, base, mapping });
      expect.unreachable();
    } catch (e) {
      // down_proj is unmapped: named, never dropped
      expect((e as { code: string }).code).toBe(GgufErrorCode.GGUF_MODULE_UNSUPPORTED);
      expect((e as Error).message).toContain("model.layers.0.mlp.down_proj");
      expect((e as Error).message).toContain("model.layers.1.mlp.down_proj");
    }
    const full = { ...mapping, "model.layers.{bid}.mlp.down_proj": "blk.{bid}.ffn_down" };
    expect(exportGgufLora({ adapter: inputs.adapter, base, mapping: full }).report.modules).toHaveLength(14);
  });
  it("a module whose tensor the base lacks is named", () => {
    const tensors = new Map(inputs.base.tensors);
    tensors.delete("blk.1.attn_v.weight");
    try {
      exportGgufLora({ adapter: inputs.adapter, base: { ...inputs.base, tensors } });
      expect.unreachable();
    } catch (e) {
      expect((e as { code: string }).code).toBe(GgufErrorCode.GGUF_MODULE_UNSUPPORTED);
      expect((e as Error).message).toContain("model.layers.1.self_attn.v_proj (blk.1.attn_v.weight)");
    }
  });
  it("a base tensor of another shape, head counts that cannot permute", () => {
    const tensors = new Map(inputs.base.tensors);
    tensors.set("blk.0.ffn_up.weight", [48, 32]);
    expect(code(() => exportGgufLora({ adapter: inputs.adapter, base: { ...inputs.base, tensors } }))).toBe(
      GgufErrorCode.GGUF_BASE_MISMATCH,
    );
    expect(code(() => exportGgufLora({ adapter: inputs.adapter, base: { ...inputs.base, nHeadKv: 3 } }))).toBe(
      GgufErrorCode.GGUF_BASE_MISMATCH,
    );
  });
  it("q8_0 on rows that are not whole 32-blocks (in_features 48, rank 16); q8_0 where they are", () => {
    expect(code(() => exportGgufLora({ adapter: inputs.adapter, base: inputs.base, type: "q8_0" }))).toBe(
      GgufErrorCode.GGUF_QUANT_BLOCK,
    );
    const adapter = createAdapter({
      modules: [{ name: "model.layers.0.self_attn.v_proj", inFeatures: 64, outFeatures: 32 }],
      rank: 32,
      seed: 3,
    });
    adapter.modules[0]!.lambdaB.forEach((_, i, b) => (b[i] = Math.sin(i + 1)));
    const base = loraBaseFromConfig('{"model_type": "qwen2", "num_attention_heads": 4}');
    const q = exportGgufLora({ adapter, base, type: "q8_0" }).bytes;
    const f32 = exportGgufLora({ adapter, base }).bytes;
    return Promise.all([readGguf({ source: bytesSource(q) }), readGguf({ source: bytesSource(f32) })]).then(
      ([fq, ff]) => {
        expect(fq.tensors.every((t) => t.type === GgmlType.Q8_0)).toBe(true);
        expect(fq.metadata.get("general.file_type")!.value).toBe(7);
        for (const n of ["blk.0.attn_v.weight.lora_a", "blk.0.attn_v.weight.lora_b"]) {
          const a = tensorValues(q, fq, n).v;
          const b = tensorValues(f32, ff, n).v;
          const amax = b.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
          for (let i = 0; i < a.length; i++) expect(Math.abs(a[i]! - b[i]!)).toBeLessThanOrEqual(amax / 127);
        }
      },
    );
  });
  it("lm_head of a config.json base with tied embeddings is named (llama.cpp has no output.weight then)", () => {
    const adapter = createAdapter({ modules: [{ name: "lm_head", inFeatures: 32, outFeatures: 288 }], rank: 4 });
    const tied = loraBaseFromConfig('{"model_type": "llama", "num_attention_heads": 4}');
    try {
      exportGgufLora({ adapter, base: tied });
      expect.unreachable();
    } catch (e) {
      expect((e as { code: string }).code).toBe(GgufErrorCode.GGUF_MODULE_UNSUPPORTED);
      expect((e as Error).message).toContain("lm_head (output.weight: tied to token_embd)");
    }
    const untied = loraBaseFromConfig(readFileSync(join(DIR, "llama", "config.json"), "utf8"));
    expect(exportGgufLora({ adapter, base: untied }).report.modules.map((m) => m.tensor)).toEqual(["output.weight"]);
  });
  it("gpt2 (Conv1D modules, fused attn_qkv): ggml [n_in, r] / [r, n_out] from the true in/out features", () => {
    const adapter = createAdapter({
      modules: [
        { name: "transformer.h.0.attn.c_attn", inFeatures: 32, outFeatures: 96, layout: "conv1d" },
        { name: "transformer.h.1.mlp.c_proj", inFeatures: 40, outFeatures: 32, layout: "conv1d" },
      ],
      rank: 8,
    });
    const base = loraBaseFromConfig('{"model_type": "gpt2", "n_head": 4, "tie_word_embeddings": true}');
    const { report, bytes } = exportGgufLora({ adapter, base });
    expect(report.modules.map((m) => [m.tensor, m.permutedHeads])).toEqual([
      ["blk.0.attn_qkv.weight", undefined],
      ["blk.1.ffn_down.weight", undefined],
    ]);
    return readGguf({ source: bytesSource(bytes) }).then((f) =>
      expect(f.tensors.map((t) => [t.name, t.ne])).toEqual([
        ["blk.0.attn_qkv.weight.lora_a", [32, 8]],
        ["blk.0.attn_qkv.weight.lora_b", [8, 96]],
        ["blk.1.ffn_down.weight.lora_a", [40, 8]],
        ["blk.1.ffn_down.weight.lora_b", [8, 32]],
      ]),
    );
  });
  it("a base folder means its config.json", async () => {
    const viaDir = await loadGgufLoraInputs({ adapter: VERA, base: join(DIR, "llama") });
    expect(viaDir.base.label).toBe(join(DIR, "llama", "config.json"));
  });
  it("an adapter carrying extra tensors (modules_to_save, biases) is refused (ADAPTER_CARRIED_TENSORS)", () => {
    const adapter = {
      ...inputs.adapter,
      extraTensors: [{ name: "lm_head.weight", dtype: "F32" as const, shape: [1], data: new Uint8Array(4) }],
    };
    expect(code(() => exportGgufLora({ adapter, base: inputs.base }))).toBe("ADAPTER_CARRIED_TENSORS");
  });
  it("a failure in the middle of a streamed write leaves nothing behind (temp + rename)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "vk-gguf-stream-"));
    try {
      const stream = exportGgufLoraStream({ adapter: inputs.adapter, base: inputs.base });
      const out = join(dir, "a.gguf");
      const failing = {
        plan: stream.plan,
        tensorBytes: (i: number) => {
          if (i === 5) throw new VeraError("IO_ERROR", "disk went away");
          return stream.tensorBytes(i);
        },
      };
      await expect(writeGgufStreamFile(out, failing)).rejects.toMatchObject({ code: "IO_ERROR" });
      expect(readdirSync(dir)).toEqual([]);
      await writeGgufStreamFile(out, stream);
      expect(readFileSync(out).equals(readFileSync(join(DIR, "out", "adapter-f32.gguf")))).toBe(true);
      expect(readdirSync(dir)).toEqual(["a.gguf"]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  it("loraBaseFromGguf reads the fixture's head counts", async () => {
    const b = loraBaseFromGguf(await readGgufFile(BASE));
    expect([b.architecture, b.nHead, b.nHeadKv, b.tensors?.get("blk.0.attn_k.weight")]).toEqual([
      "llama",
      4,
      2,
      [32, 16],
    ]);
  });
  // two starts of the built CLI (node processes): a process start each, so an explicit limit above the 5 s default
  it("CLI: a refusal writes nothing (no output, no temp file); --json reports the file", async () => {
    const out = join(tmp, "q.gguf");
    const r = run(["export-gguf-lora", VERA, "--base", BASE, "-o", out, "--type", "q8_0", "--json"]);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout).error.code).toBe("GGUF_QUANT_BLOCK");
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(tmp)).toEqual([]);
    const ok = run(["export-gguf-lora", VERA, "--base", BASE, "-o", out, "--json"]);
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout).report.modules).toHaveLength(14);
    expect(readFileSync(out).equals(readFileSync(join(DIR, "out", "adapter-f32.gguf")))).toBe(true);
  }, 30_000);
});

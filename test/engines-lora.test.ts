/**
 * `vera expand-lora --for vllm|tgi|lorax`: the plan per engine, zero padding to a vLLM rank, and what real PEFT and
 * vLLM's adapter checks (as read from its source) said about the folders (fixtures/engines/check_engine_lora.py).
 */
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { VeraAdapter } from "../src/format/types.js";
import { loadAdapterFromPath } from "../src/node/load-adapter.js";
import { readBaseShapes } from "../src/node/read-base-shapes.js";
import { expandToLora } from "../src/peft/expand-to-lora.js";
import { LORA_CONFIG_FIELDS_0_11 } from "../src/peft/internal.js";
import { asFloat32, parseSafetensors, tensorBytes } from "../src/safetensors/parse.js";
import { planLoraForEngine, VLLM_MAX_LORA_RANKS } from "../src/serve/lora-for-engine.js";
import { useTempDirs } from "./temp-helpers.js";
import { errorCode as code } from "./error-helpers.js";

const tempDir = useTempDirs("vera-el-");

const PEFT = join(__dirname, "../fixtures/peft");
const load = async () =>
  (
    await loadAdapterFromPath({
      path: join(PEFT, "adapters/llama-gqa-sp"),
      readBase: () => readBaseShapes({ path: join(PEFT, "bases/llama/config.json") }),
    })
  ).adapter;

describe("expand-lora --for: what real PEFT and vLLM's checks said (fixtures/engines/vllm-tgi-check.json)", () => {
  const check = JSON.parse(readFileSync(join(__dirname, "../fixtures/engines/vllm-tgi-check.json"), "utf8"));
  it("vLLM, exact rank: PEFT's logits with the LoRA folder equal PEFT's VeRA logits; vLLM's checks pass", () => {
    expect(check.vllm_exact.target).toMatchObject({ engine: "vllm", rank: 8, fileRank: 8, maxLoraRank: 8 });
    expect(check.vllm_exact.max_abs_logit_diff_vs_peft_vera).toBeLessThan(1e-4);
    expect(check.vllm_exact.vllm_checks).toMatchObject({ accepts: true, problems: [], scale: 1, r: 8 });
  });
  it("vLLM, truncated and padded: the zero padding changes nothing, the truncation error is reported", () => {
    expect(check.vllm_rank6.target).toMatchObject({ rank: 6, fileRank: 8, maxLoraRank: 8 });
    expect(check.vllm_rank6.max_abs_logit_diff_padded_vs_unpadded).toBeLessThan(1e-6);
    expect(check.vllm_rank6.report_total_relative_error).toBeGreaterThan(0);
    expect(check.vllm_rank6.max_abs_logit_diff_vs_peft_vera).toBeGreaterThan(1e-4);
    expect(check.vllm_rank6.vllm_checks.accepts).toBe(true);
  });
  it("TGI/LoRAX: PEFT reads the config, whose keys are all PEFT 0.11 LoraConfig fields", () => {
    expect(check.tgi.peft_loraconfig).toEqual({ r: 8, lora_alpha: 8, use_rslora: false, fan_in_fan_out: false });
    expect(check.tgi.max_abs_logit_diff_vs_vllm_exact).toBeLessThan(1e-6);
    for (const k of check.tgi.config_keys as string[]) expect([k, LORA_CONFIG_FIELDS_0_11.has(k)]).toEqual([k, true]);
  });
});

describe("planLoraForEngine", () => {
  it("vLLM: pads r up to the next --max-lora-rank value, truncates above 512, refuses more", async () => {
    const a = await load();
    const at = (rank: number, asked?: number) =>
      planLoraForEngine({ adapter: { ...a, rank }, engine: "vllm", ...(asked ? { rank: asked } : {}) });
    expect(at(8)).toMatchObject({ rank: 8, fileRank: 8, maxLoraRank: 8, expand: { rank: 8 } });
    expect(at(8).expand.padRank).toBeUndefined();
    expect(at(6)).toMatchObject({ rank: 6, fileRank: 8, expand: { rank: 6, padRank: 8 } });
    expect(at(300)).toMatchObject({ rank: 300, fileRank: 320 });
    expect(at(1024)).toMatchObject({ rank: 512, fileRank: 512 });
    expect(at(1024).notes.join(" ")).toMatch(/truncated to 512/);
    expect(at(200, 100)).toMatchObject({ rank: 100, fileRank: 128 });
    expect(code(() => at(1024, 600))).toBe("PEFT_LORA_RANK");
    for (const r of [1, 7, 9, 257, 321, 511]) expect(VLLM_MAX_LORA_RANKS).toContain(at(r).fileRank);
  });
  it("every engine refuses carried tensors (modules_to_save, biases) by name unless dropCarried drops them", async () => {
    const a: VeraAdapter = {
      ...(await load()),
      extraTensors: [{ name: "base_model.model.score.weight", dtype: "F32", shape: [1], data: new Uint8Array(4) }],
    };
    for (const engine of ["vllm", "tgi", "lorax"] as const) {
      expect(code(() => planLoraForEngine({ adapter: a, engine }))).toBe("ADAPTER_CARRIED_TENSORS");
      const p = planLoraForEngine({ adapter: a, engine, dropCarried: true });
      expect(p.dropped).toEqual(["base_model.model.score.weight"]);
      expect(p.expand.adapter.extraTensors).toBeUndefined();
      expect(p.notes.join(" ")).toMatch(/dropped.*score\.weight/);
    }
    expect(planLoraForEngine({ adapter: a, engine: "tgi", dropCarried: true }).expand.peftCompat).toBe("0.11.0");
  });
  it("TGI/LoRAX name the modules outside their LoRA layer types", async () => {
    const a = await load();
    const m = a.modules[0]!;
    const odd = { ...a, modules: [...a.modules, { ...m, name: "model.layers.0.mlp.c_fc" }] };
    expect(planLoraForEngine({ adapter: a, engine: "lorax" }).notes).toEqual([]);
    expect(planLoraForEngine({ adapter: odd, engine: "lorax" }).notes.join(" ")).toMatch(/model\.layers\.0\.mlp\.c_fc/);
  });
});

describe("expandToLora padRank", () => {
  it("appends zero rows to lora_A and zero columns to lora_B; r and lora_alpha become the padded rank", async () => {
    const adapter = await load();
    const plain = expandToLora({ adapter });
    const padded = expandToLora({ adapter, padRank: 16 });
    expect(padded.report.rank).toBe(16);
    expect(padded.report.exact).toBe(true);
    expect(padded.configJson).toMatch(/"r": 16/);
    expect(padded.configJson).toMatch(/"lora_alpha": 16/);
    const p = parseSafetensors(plain.safetensors);
    const q = parseSafetensors(padded.safetensors);
    const r = adapter.rank;
    for (const m of adapter.modules) {
      const key = (w: string) => `base_model.model.${m.name}.${w}.weight`;
      const a0 = asFloat32(tensorBytes(p, key("lora_A")));
      const a1 = asFloat32(tensorBytes(q, key("lora_A")));
      expect(q.tensors.get(key("lora_A"))!.shape).toEqual([16, m.inFeatures]);
      expect(Array.from(a1.subarray(0, r * m.inFeatures))).toEqual(Array.from(a0));
      expect(a1.subarray(r * m.inFeatures).every((x) => x === 0)).toBe(true);
      const b0 = asFloat32(tensorBytes(p, key("lora_B")));
      const b1 = asFloat32(tensorBytes(q, key("lora_B")));
      for (let i = 0; i < m.outFeatures; i++) {
        expect(Array.from(b1.subarray(i * 16, i * 16 + r))).toEqual(Array.from(b0.subarray(i * r, (i + 1) * r)));
        expect(b1.subarray(i * 16 + r, (i + 1) * 16).every((x) => x === 0)).toBe(true);
      }
    }
    const lowPadded = expandToLora({ adapter, rank: 4, padRank: 8 });
    const low = expandToLora({ adapter, rank: 4 });
    expect(lowPadded.report.totalRelativeError).toBeCloseTo(low.report.totalRelativeError, 12);
  });
  it("refuses a padRank below the rank or with rankPattern", async () => {
    const adapter = await load();
    expect(code(() => expandToLora({ adapter, padRank: 4 }))).toBe("PEFT_LORA_RANK");
    const name = adapter.modules[0]!.name;
    expect(code(() => expandToLora({ adapter, padRank: 16, rankPattern: { [name]: 4 } }))).toBe("PEFT_LORA_RANK");
  });
});

describe("vera expand-lora --for (CLI)", () => {
  const cli = join(__dirname, "../dist/cli/index.js");
  const run = (args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: "utf8" });
  const input = [join(PEFT, "adapters/llama-gqa-sp"), "--base", join(PEFT, "bases/llama/config.json")];
  it("reports the vLLM serving rank in JSON", () => {
    const out = join(tempDir(), "lora");
    const r = run(["expand-lora", ...input, "--for", "vllm", "--rank", "6", "-o", out, "--json"]);
    expect(r.status, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.target).toMatchObject({ engine: "vllm", rank: 6, fileRank: 8, maxLoraRank: 8 });
    expect(j.report.rank).toBe(8);
    expect(JSON.parse(readFileSync(join(out, "adapter_config.json"), "utf8"))).toMatchObject({ r: 8, lora_alpha: 8 });
  });
  it("refuses an unknown engine", () => {
    const r = run(["expand-lora", ...input, "--for", "sglang", "-o", "/nonexistent/x", "--json"]);
    expect(r.status).toBe(2);
    expect(JSON.parse(r.stdout).error.code).toBe("ARG_INVALID");
  });
});

/** in_features without a base model: inferred only where the PEFT adapter proves them (real PEFT fixtures). */
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { writeVera } from "../src/format/write.js";
import { baseShapesFromConfig, importPeft, PeftErrorCode } from "../src/peft/index.js";
import { parseSafetensors, tensorBytes, type SafetensorsFile } from "../src/safetensors/parse.js";
import { writeSafetensors } from "../src/safetensors/write.js";
import { PEFT_DIR, readAdapter, readJson } from "./peft-fixtures.js";

const adapter = (n: string) => readAdapter(join(PEFT_DIR, "adapters", n));
const qwen2Base = () => baseShapesFromConfig({ config: readJson(join(PEFT_DIR, "bases/qwen2/config.json")) });
/** The config with some fields replaced (JSON text, as PEFT writes it). */
const withConfig = (text: string, patch: Record<string, unknown>) =>
  JSON.stringify({ ...JSON.parse(text), ...patch }, null, 2);
/** The adapter file with its tensors kept (and renamed) by `pick`: a key to keep, or undefined to drop. */
const rewrite = (f: SafetensorsFile, pick: (k: string) => string | undefined) =>
  parseSafetensors(
    writeSafetensors({
      tensors: [...f.tensors.keys()].flatMap((k) => {
        const name = pick(k);
        const i = f.tensors.get(k)!;
        return name === undefined ? [] : [{ name, dtype: i.dtype, shape: i.shape, data: tensorBytes(f, k) }];
      }),
      metadata: { format: "pt" },
    }),
  );
const refused = (fn: () => unknown, reason: RegExp) =>
  expect(fn).toThrowError(
    expect.objectContaining({ code: PeftErrorCode.PEFT_BASE_REQUIRED, message: expect.stringMatching(reason) }),
  );

describe("importPeft without a base", () => {
  it("infers hidden-size modules of a named transformers class: the same adapter as with the base's config.json", () => {
    // real PEFT output: task_type null, so PEFT wrote auto_mapping.base_model_class = Qwen2ForCausalLM;
    // targets q/k/v/gate/up (all read hidden_size = 32), projections saved
    const src = adapter("qwen2-hidden-in");
    const inferred = importPeft({ config: src.configText, weights: src.weights });
    const based = importPeft({ config: src.configText, weights: src.weights, base: qwen2Base() });
    expect(inferred.report).toMatchObject({
      dimensionsInferred: true,
      architecture: "Qwen2ForCausalLM",
      maxIn: 32,
      maxOut: 32,
      modules: 10,
    });
    expect(inferred.report.dimensionSource).toMatch(/Qwen2ForCausalLM.*hidden size.*32 columns/);
    expect(based.report.dimensionsInferred).toBe(false);
    expect(inferred.adapter.modules.map((m) => [m.name, m.inFeatures, m.outFeatures, m.layout])).toEqual(
      based.adapter.modules.map((m) => [m.name, m.inFeatures, m.outFeatures, m.layout]),
    );
    // k/v (8) and gate/up (24) differ from q (32) in out_features, and all of them read 32
    expect(new Set(inferred.adapter.modules.map((m) => m.outFeatures))).toEqual(new Set([8, 24, 32]));
    expect(writeVera({ adapter: inferred.adapter })).toEqual(writeVera({ adapter: based.adapter }));
  });

  it("refuses where a module reads another size (o_proj, down_proj), naming them", () => {
    // real PEFT output: auto_mapping LlamaForCausalLM, all seven linear layers, no projections saved
    const src = adapter("llama-neg-seed");
    refused(() => importPeft({ config: src.configText, weights: src.weights }), /LlamaForCausalLM.*down_proj/);
    // the same with projections stored: still not provable
    const sp = adapter("qwen2-hidden-in");
    const renamed = rewrite(sp.weights, (k) => k.replace("mlp.up_proj", "mlp.down_proj"));
    refused(() => importPeft({ config: sp.configText, weights: renamed }), /down_proj.*not modules/);
  });

  it("refuses without stored projections: nothing in the adapter gives the hidden size", () => {
    const src = adapter("qwen2-hidden-in");
    const noProj = rewrite(src.weights, (k) => (k.startsWith("base_model.vera_") ? undefined : k));
    const config = withConfig(src.configText, { save_projection: false });
    refused(() => importPeft({ config, weights: noProj }), /does not store vera_A/);
    // and with the base it imports
    expect(importPeft({ config, weights: noProj, base: qwen2Base() }).report.maxIn).toBe(32);
  });

  it("refuses when the config names no class, an unknown class, or a class from elsewhere", () => {
    const src = adapter("qwen2-hidden-in");
    const w = src.weights;
    refused(
      () =>
        importPeft({ config: withConfig(src.configText, { auto_mapping: null, task_type: "CAUSAL_LM" }), weights: w }),
      /names no model class/,
    );
    refused(
      () =>
        importPeft({
          config: withConfig(src.configText, {
            auto_mapping: { base_model_class: "FalconForCausalLM", parent_library: "transformers.models.falcon" },
          }),
          weights: w,
        }),
      /FalconForCausalLM is not one/,
    );
    refused(
      () =>
        importPeft({
          config: withConfig(src.configText, {
            auto_mapping: { base_model_class: "Qwen2ForCausalLM", parent_library: "my_models.qwen_variant" },
          }),
          weights: w,
        }),
      /not from transformers/,
    );
    // a repository name is not a class
    refused(
      () =>
        importPeft({
          config: withConfig(src.configText, { auto_mapping: null, base_model_name_or_path: "Qwen/Qwen2-0.5B" }),
          weights: w,
        }),
      /names no model class/,
    );
  });

  it("checks an inference against vera_B: a class that lies about the modules is caught when sizes disagree", () => {
    const src = adapter("qwen2-hidden-in");
    // keep only k/v (out 8): max_out would be 8 but vera_B has 32 rows
    const kv = rewrite(src.weights, (k) => (k.startsWith("base_model.vera_") || /[kv]_proj/.test(k) ? k : undefined));
    expect(() => importPeft({ config: src.configText, weights: kv })).toThrowError(
      expect.objectContaining({ code: PeftErrorCode.PEFT_BASE_SHAPE }),
    );
  });
});

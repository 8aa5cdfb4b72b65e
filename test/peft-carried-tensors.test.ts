import { describe, expect, it } from "vitest";
import type { ExtraTensor, VeraAdapter } from "../src/format/types.js";
import { carriedTensorTargets } from "../src/peft/carried-tensors.js";

const t = (name: string): ExtraTensor => ({ name, dtype: "F32", shape: [1], data: new Uint8Array(4) });

function adapterWith(names: string[], training: Record<string, unknown>): VeraAdapter {
  return {
    prng: { algorithm: "torch.mt19937.kaiming_uniform", seed: 0n, arithmetic: "fused" },
    rank: 1,
    maxIn: 1,
    maxOut: 1,
    projectionRounding: "none",
    vectorDtype: "F32",
    modules: [],
    training,
    extraTensors: names.map(t),
  } as VeraAdapter;
}

describe("carriedTensorTargets", () => {
  it("maps PEFT 0.21's modules_to_save and vera_only bias keys to the base parameters they replace", () => {
    // Key names as PEFT 0.21 save_pretrained writes them for RobertaForSequenceClassification, bias="vera_only".
    const a = adapterWith(
      [
        "base_model.model.classifier.dense.weight",
        "base_model.model.classifier.out_proj.bias",
        "base_model.model.roberta.encoder.layer.0.attention.self.query.base_layer.bias",
        "base_model.model.some.unknown.tensor",
        "not_prefixed",
      ],
      { modules_to_save: ["classifier", "score"], bias: "vera_only" },
    );
    expect(carriedTensorTargets({ adapter: a }).map((c) => [c.kind, c.param])).toEqual([
      ["modules_to_save", "classifier.dense.weight"],
      ["modules_to_save", "classifier.out_proj.bias"],
      ["bias", "roberta.encoder.layer.0.attention.self.query.bias"],
      ["other", "some.unknown.tensor"],
      ["other", ""],
    ]);
  });

  it("accepts the older .modules_to_save. segment and nested module paths", () => {
    const a = adapterWith(["base_model.model.vit.classifier.modules_to_save.weight"], {
      modules_to_save: ["classifier"],
    });
    expect(carriedTensorTargets({ adapter: a })).toMatchObject([
      { kind: "modules_to_save", param: "vit.classifier.weight" },
    ]);
  });

  it("matches modules_to_save entries as PEFT does, by plain string suffix (DistilBERT's pre_classifier)", () => {
    const a = adapterWith(
      ["base_model.model.pre_classifier.weight", "base_model.model.classifier.bias", "base_model.model.head.weight"],
      { modules_to_save: ["classifier"] },
    );
    expect(carriedTensorTargets({ adapter: a }).map((c) => c.kind)).toEqual([
      "modules_to_save",
      "modules_to_save",
      "other",
    ]);
  });

  it("treats a bias as other when the adapter trains no bias", () => {
    const a = adapterWith(["base_model.model.x.q_proj.base_layer.bias"], { bias: "none" });
    expect(carriedTensorTargets({ adapter: a })).toMatchObject([{ kind: "other", param: "x.q_proj.bias" }]);
  });
});

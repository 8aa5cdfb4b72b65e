/**
 * What Python's onnxruntime and onnx.checker said about the zoo, as recorded by fixtures/zoo/verify_onnx_adapter.py
 * (onnx-adapter-check.json: `vera graft` + `vera export-onnx-adapter` through onnxruntime.LoraAdapter, against PEFT's
 * logits) and fixtures/zoo/check_onnx_graphs.py (onnx-checker.json: onnx.checker.check_model(full_check=True) on every
 * graph `vera merge` and `vera graft` write). Neither Python tool runs here: the records are read and every family
 * must pass in them, or be one of the typed refusals listed below. A new family, or a record from another tool
 * version, fails until the scripts are run again on the current build.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

const ZOO = join(__dirname, "..", "fixtures", "zoo");
const read = <T>(name: string): T => JSON.parse(readFileSync(join(ZOO, name), "utf8")) as T;

interface Record_<F> {
  tools: Record<string, string>;
  build: { verakit: string; commit: string; src_clean: boolean; cli_sha256: string };
  families: Record<string, F>;
}
interface AdapterCheck {
  skipped?: string;
  refused?: string;
  graph_inputs_added?: number;
  carried_inputs?: number;
  adapter_file_parameters?: number;
  default_graft_vs_peft_max_abs?: number;
  defaults_graft_vs_peft_max_abs?: number;
  defaults_graft_without_adapter_vs_base_max_abs?: number;
}
type GraphCheck = Record<
  string,
  { ok?: boolean; refused?: string; checker?: string; onnxruntime?: string; carried?: number; added_bias?: string[] }
>;
interface ZooCase {
  exports: Array<{ file: string; ok: boolean }>;
  adapter: { modules_to_save: string[] | null; bias: string | null; task_type: string | null };
}

/** The refusals the zoo expects (each is also a cell of fixtures/zoo/expectations.json). */
const ADAPTER_REFUSALS: Record<string, string> = {};
const GRAPH_REFUSALS: Record<string, string> = {
  // a trained embed_tokens feeds a Gather, which has no per-row form
  "llama_lm_head/graft-batched": "SERVE_GRAPH_UNSUPPORTED",
};

const zooFamilies = Object.keys(read<{ families: object }>("MANIFEST.json").families).sort();
const loadCase = (family: string): ZooCase => read<ZooCase>(join(family, "case.json"));
const exported = (family: string, file: string): boolean =>
  loadCase(family).exports.some((e) => e.file === file && e.ok);
/** The adapter holds tensors besides its vectors: a modules_to_save head (SEQ_CLS implies one) or trained biases. */
const carries = (c: ZooCase): boolean =>
  (c.adapter.modules_to_save?.length ?? 0) > 0 ||
  c.adapter.task_type === "SEQ_CLS" ||
  c.adapter.task_type === "TOKEN_CLS" ||
  (c.adapter.bias ?? "none") !== "none";

function expectProvenance(rec: Record_<unknown>): void {
  expect(rec.tools["onnxruntime"]).toMatch(/^1\.30\./);
  expect(rec.tools["onnx"]).toMatch(/^\d+\.\d+/);
  expect(rec.build.commit).toMatch(/^[0-9a-f]{40}$/);
  expect(rec.build.cli_sha256).toMatch(/^[0-9a-f]{64}$/);
  // made by a build of committed sources
  expect(rec.build.src_clean).toBe(true);
  expect(Object.keys(rec.families).sort()).toEqual(zooFamilies);
}

describe("onnxruntime.LoraAdapter on the zoo's grafts (onnx-adapter-check.json)", () => {
  const rec = read<Record_<AdapterCheck>>("onnx-adapter-check.json");

  it("records the tools, the build and every family of the zoo", () => expectProvenance(rec));

  it.each(["roberta", "vit", "phi3"])("%s is checked, not skipped or refused", (family) => {
    expect(rec.families[family]!.default_graft_vs_peft_max_abs).toBeTypeOf("number");
  });

  it.each(zooFamilies)("%s: PEFT's logits within 1e-4 through the adapter file, or an expected refusal", (family) => {
    const r = rec.families[family]!;
    if (r.skipped) {
      expect(exported(family, "model.onnx")).toBe(false);
      return;
    }
    if (r.refused !== undefined) {
      expect([family, r.refused]).toEqual([family, ADAPTER_REFUSALS[family]]);
      return;
    }
    expect(ADAPTER_REFUSALS[family]).toBeUndefined();
    expect(r.default_graft_vs_peft_max_abs).toBeLessThan(1e-4);
    expect(r.defaults_graft_vs_peft_max_abs).toBeLessThan(1e-4);
    expect(r.defaults_graft_without_adapter_vs_base_max_abs).toBeLessThan(1e-5);
    // the file holds every input the graft added, heads and trained biases included
    expect(r.adapter_file_parameters).toBe(r.graph_inputs_added);
    if (carries(loadCase(family))) expect(r.carried_inputs).toBeGreaterThan(0);
    else expect(r.carried_inputs).toBe(0);
  });
});

describe("onnx.checker (full_check) on every graph verakit edits in the zoo (onnx-checker.json)", () => {
  const rec = read<Record_<GraphCheck>>("onnx-checker.json");

  it("records the tools, the build and every family of the zoo", () => expectProvenance(rec));

  it("covers the edits that add to a graph: biases a merge added, carried tensors in every merge and graft", () => {
    const done = Object.values(rec.families).flatMap((edits) => Object.entries(edits));
    // the dynamo export drops a zero bias from a classifier's Gemm; PEFT's trained head has one
    expect(done.filter(([e, r]) => e.startsWith("merge") && (r.added_bias?.length ?? 0) > 0).length).toBeGreaterThan(0);
    expect(done.some(([e, r]) => e === "merge-in-place" && (r.added_bias?.length ?? 0) > 0)).toBe(true);
    for (const edit of ["merge", "merge-legacy", "merge-in-place", "graft", "graft-batched", "graft-defaults"])
      expect([edit, done.some(([e, r]) => e === edit && r.ok === true && (r.carried ?? 0) > 0)]).toEqual([edit, true]);
  });

  it.each(zooFamilies)("%s: every merge and graft passes, or is an expected refusal", (family) => {
    const edits = rec.families[family]!;
    const want = ["graft", "graft-batched", "graft-defaults", "merge", "merge-in-place"];
    if (exported(family, "legacy.onnx")) want.push("merge-legacy");
    expect(Object.keys(edits).sort()).toEqual(want.sort());
    for (const [edit, r] of Object.entries(edits)) {
      const cell = `${family}/${edit}`;
      if (r.refused !== undefined) expect([cell, r.refused]).toEqual([cell, GRAPH_REFUSALS[cell]]);
      else expect([cell, r.ok, r.checker ?? r.onnxruntime]).toEqual([cell, true, undefined]);
    }
  });
});

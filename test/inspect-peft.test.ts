/**
 * `vera inspect` / `vera validate` on PEFT adapters (real PEFT 0.21 fixtures): a folder, its
 * adapter_model.safetensors, a lone weights file, broken folders; each described and checked as import-peft would.
 */
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { pathFileAccess } from "../src/peft/load/memory-file-access.js";
import { checkAdapterSource } from "../src/peft/load/check-adapter-source.js";
import { runCli as run } from "./cli-helpers.js";
import { useTempDirs } from "./temp-helpers.js";

const tmp = useTempDirs("vera-inspect-peft-");
const PEFT = join(__dirname, "../fixtures/peft");
const A = (n: string) => join(PEFT, "adapters", n);

describe("vera inspect on a PEFT adapter", () => {
  it("a folder: peft_type, r, seed, targets, modules, carried tensors, projections, the import command", async () => {
    const r = await run(["inspect", A("gpt2-seqcls-bias"), "--json", "--modules"]);
    expect(r.status, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j).toMatchObject({
      ok: true,
      format: "peft",
      peftType: "VERA",
      peftVersion: "0.21.0",
      taskType: "SEQ_CLS",
      rank: 4,
      seed: "99",
      targetModules: ["c_attn"],
      saveProjection: false,
      projections: { stored: false },
      moduleCount: 2,
      needsBase: true,
      importCommand: `vera import-peft ${A("gpt2-seqcls-bias")} -o adapter.vera.safetensors --base BASE`,
    });
    expect(j.modules).toEqual([
      { name: "transformer.h.0.attn.c_attn", outFeatures: 96 },
      { name: "transformer.h.1.attn.c_attn", outFeatures: 96 },
    ]);
    expect(j.carried.map((c: { kind: string; param: string }) => [c.kind, c.param])).toEqual([
      ["modules_to_save", "score.weight"],
      ["bias", "transformer.h.0.attn.c_attn.bias"],
      ["bias", "transformer.h.1.attn.c_attn.bias"],
    ]);
    // the command it names works
    const out = join(tmp(), "a.vera.safetensors");
    const cmd = j.importCommand.split(" ").slice(1);
    cmd[cmd.indexOf("-o") + 1] = out;
    cmd[cmd.indexOf("BASE")] = join(PEFT, "bases", "gpt2-seqcls");
    expect((await run(cmd)).status).toBe(0);
  });

  it("its adapter_model.safetensors is the folder; stored projections and a seed above 2^53 are shown exactly", async () => {
    const viaFile = JSON.parse(
      (await run(["inspect", join(A("bert-seqcls"), "adapter_model.safetensors"), "--json"])).stdout,
    );
    const viaDir = JSON.parse((await run(["inspect", A("bert-seqcls"), "--json"])).stdout);
    expect(viaFile).toEqual(viaDir);
    expect(viaDir).toMatchObject({ seed: "18446744073709551615", projections: { stored: true, A: [4, 40] } });
    const text = await run(["inspect", A("bert-seqcls")]);
    expect(text.stdout).toMatch(/PEFT VeRA adapter, not a verakit file/);
    expect(text.stdout).toMatch(
      /carried: +base_model\.model\.classifier\.weight .*modules_to_save, replaces classifier\.weight/,
    );
    expect(text.stdout).toMatch(/import: +vera import-peft /);
  });

  it("with --base the dimensions are checked and the command needs nothing more; without, when the adapter proves them", async () => {
    const base = join(PEFT, "bases", "llama", "config.json");
    const j = JSON.parse((await run(["inspect", A("llama-gqa-nosp"), "--base", base, "--json"])).stdout);
    expect(j).toMatchObject({ ok: true, needsBase: false, warnings: [] });
    expect(j.importCommand).toBe(`vera import-peft ${A("llama-gqa-nosp")} -o adapter.vera.safetensors --base ${base}`);
    const q = JSON.parse((await run(["inspect", A("qwen2-hidden-in"), "--json"])).stdout);
    expect(q.importCommand).toBe(`vera import-peft ${A("qwen2-hidden-in")} -o adapter.vera.safetensors`);
  });

  it("a lone weights file (no adapter_config.json beside it) is described and refused with PEFT_CONFIG_MISSING", async () => {
    const d = tmp();
    copyFileSync(join(A("llama-gqa-sp"), "adapter_model.safetensors"), join(d, "adapter_model.safetensors"));
    const r = await run(["inspect", join(d, "adapter_model.safetensors"), "--json"]);
    expect(r.status).toBe(1);
    const j = JSON.parse(r.stdout);
    expect(j).toMatchObject({ ok: false, hasConfig: false, moduleCount: 6, projections: { stored: true } });
    expect(j.issues.map((i: { code: string }) => i.code)).toEqual(["PEFT_CONFIG_MISSING"]);
  });
});

describe("vera validate on PEFT adapters", () => {
  it("checks as import-peft would: valid folders, a broken config, a LoRA adapter, a pickle, each with its code", async () => {
    const d = tmp();
    const broken = join(d, "broken");
    mkdirSync(broken);
    copyFileSync(join(A("llama-gqa-sp"), "adapter_model.safetensors"), join(broken, "adapter_model.safetensors"));
    writeFileSync(
      join(broken, "adapter_config.json"),
      readFileSync(join(A("llama-gqa-sp"), "adapter_config.json"), "utf8").replace('"r": 8', '"r": 7'),
    );
    const pickled = join(d, "pickled");
    mkdirSync(pickled);
    copyFileSync(join(A("llama-gqa-sp"), "adapter_config.json"), join(pickled, "adapter_config.json"));
    writeFileSync(join(pickled, "adapter_model.bin"), "never read");
    const paths = [
      A("llama-gqa-sp"),
      A("multi-adapter"),
      broken,
      join(PEFT, "lora-reference", "llama-gqa-sp"),
      pickled,
    ];
    const r = await run(["validate", ...paths, "--json"]);
    expect(r.status).toBe(1);
    const files = JSON.parse(r.stdout).files as Array<{ ok: boolean; format: string; issues: Array<{ code: string }> }>;
    expect(files.map((f) => [f.format, f.ok, f.issues.map((i) => i.code)])).toEqual([
      ["peft", true, []],
      ["peft", true, []],
      ["peft", false, ["PEFT_VECTOR_LENGTH"]],
      ["peft", false, ["PEFT_NOT_VERA"]],
      ["peft", false, ["PEFT_PICKLE_REFUSED"]],
    ]);
    const text = await run(["validate", A("llama-gqa-sp")]);
    expect(text.status).toBe(0);
    expect(text.stdout).toMatch(/PEFT adapter, valid\n.*import: vera import-peft/s);
  });

  it("the same check runs over dropped files (the page's file access)", async () => {
    const files = ["adapter_config.json", "adapter_model.safetensors"].map((n) => ({
      path: `bert-seqcls/${n}`,
      file: new Blob([readFileSync(join(A("bert-seqcls"), n))]),
    }));
    const r = await checkAdapterSource({ source: { files: pathFileAccess(files), path: "bert-seqcls" } });
    expect(r.format).toBe("peft");
    if (r.format !== "peft") return;
    expect(r.validation.ok).toBe(true);
    expect(r.description.importCommand).toBe("vera import-peft bert-seqcls -o adapter.vera.safetensors --base BASE");
  });
});

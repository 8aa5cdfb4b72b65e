import { cpSync, existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { useTempDirs } from "./temp-helpers.js";
import { runCli } from "./cli-helpers.js";
import { commands } from "../src/cli/commands/index.js";
import { PEFT_DIR } from "./peft-fixtures.js";

const run = (args: string[]) => runCli(args);
const tmp = useTempDirs("vera-peft-cli-");
const A = (n: string) => join(PEFT_DIR, "adapters", n);
const B = (n: string) => join(PEFT_DIR, "bases", n);
const bytes = (p: string) => readFileSync(p);

// load the commands once here, so that no test's time includes the first import of the converters
beforeAll(async () => {
  await Promise.all([commands["import-peft"]!(), commands["export-peft"]!(), commands["expand-lora"]!()]);
});

describe("vera import-peft / export-peft / expand-lora", () => {
  for (const base of ["config.json", "model.onnx", "model.safetensors", ""]) {
    it(`import-peft (save_projection false) --base ${base || "<folder>"} then export-peft --save-projection reproduces PEFT's save_projection true folder`, async () => {
      const d = tmp();
      const f = join(d, "a.vera.safetensors");
      const imp = await run(["import-peft", A("llama-gqa-nosp"), "--base", join(B("llama"), base), "-o", f, "--json"]);
      expect(imp.status, imp.stderr).toBe(0);
      const rep = JSON.parse(imp.stdout);
      expect(rep).toMatchObject({ ok: true, report: { rank: 8, seed: "4294967301", modules: 6 } });
      const exp = await run(["export-peft", f, "--save-projection", "-o", join(d, "out")]);
      expect(exp.status, exp.stderr).toBe(0);
      expect(
        bytes(join(d, "out/adapter_model.safetensors")).equals(
          bytes(join(A("llama-gqa-sp"), "adapter_model.safetensors")),
        ),
      ).toBe(true);
      expect(readFileSync(join(d, "out/adapter_config.json"), "utf8")).toBe(
        readFileSync(join(A("llama-gqa-sp"), "adapter_config.json"), "utf8"),
      );
    });
  }

  it("import-peft without --base infers in_features where the adapter proves them, and says so", async () => {
    const d = tmp();
    const j = await run(["import-peft", A("qwen2-hidden-in"), "-o", join(d, "a.vera.safetensors"), "--json"]);
    expect(j.status, j.stderr).toBe(0);
    expect(JSON.parse(j.stdout).report).toMatchObject({
      dimensionsInferred: true,
      architecture: "Qwen2ForCausalLM",
      maxIn: 32,
      dimensionSource: expect.stringMatching(/^inferred without a base: .*Qwen2ForCausalLM/),
    });
    const t = await run(["import-peft", A("qwen2-hidden-in"), "-o", join(d, "b.vera.safetensors")]);
    expect(t.status, t.stderr).toBe(0);
    expect(t.stdout).toMatch(/in_features inferred without --base: adapter_config.json names Qwen2ForCausalLM/);
    expect(bytes(join(d, "a.vera.safetensors")).equals(bytes(join(d, "b.vera.safetensors")))).toBe(true);
  });
  it("import-peft without --base refuses where the adapter does not prove in_features (o_proj, down_proj)", async () => {
    const d = tmp();
    const refused = await run(["import-peft", A("llama-neg-seed"), "-o", join(d, "c.vera.safetensors"), "--json"]);
    expect(refused.status).toBe(1);
    expect(JSON.parse(refused.stdout).error).toMatchObject({
      code: "PEFT_BASE_REQUIRED",
      message: expect.stringMatching(/o_proj|down_proj/),
    });
    expect(existsSync(join(d, "c.vera.safetensors"))).toBe(false);
  });

  it("reads a named adapter from its sub-folder and says when a folder holds several", async () => {
    const d = tmp();
    const r = await run([
      "import-peft",
      A("multi-adapter"),
      "--adapter",
      "second",
      "--base",
      join(B("llama"), "config.json"),
      "-o",
      join(d, "s.vera.safetensors"),
      "--json",
    ]);
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).report.adapterName).toBe("second");
    const missing = await run([
      "import-peft",
      A("multi-adapter"),
      "--adapter",
      "third",
      "--base",
      B("llama"),
      "-o",
      join(d, "t.vera.safetensors"),
      "--json",
    ]);
    expect(missing.status).toBe(1);
    expect(JSON.parse(missing.stdout).error.code).toBe("PEFT_ADAPTER_NOT_FOUND");
    const unsafe = await run(["import-peft", A("multi-adapter"), "--adapter", "../x", "-o", join(d, "u"), "--json"]);
    expect(unsafe.status).toBe(1);
    expect(JSON.parse(unsafe.stdout).error.code).toBe("IO_UNSAFE_PATH");
  });

  it("refuses adapter_model.bin (pickle) with a conversion hint, writing nothing", async () => {
    const d = tmp();
    const src = join(d, "pickled");
    cpSync(A("llama-gqa-sp"), src, { recursive: true });
    rmSync(join(src, "adapter_model.safetensors"));
    writeFileSync(join(src, "adapter_model.bin"), Buffer.from([0x80, 0x02, 0x7d, 0x71, 0x00, 0x2e]));
    const out = join(d, "o.vera.safetensors");
    const r = await run(["import-peft", src, "--base", B("llama"), "-o", out, "--json"]);
    expect(r.status).toBe(1);
    const e = JSON.parse(r.stdout).error;
    expect(e.code).toBe("PEFT_PICKLE_REFUSED");
    expect(e.message).toContain("safe_serialization=True");
    expect(existsSync(out)).toBe(false);
  });

  it("bad input exits 1 with a typed code and writes nothing", async () => {
    const d = tmp();
    const src = join(d, "bad");
    cpSync(A("llama-gqa-sp"), src, { recursive: true });
    writeFileSync(
      join(src, "adapter_config.json"),
      readFileSync(join(src, "adapter_config.json"), "utf8").replace('"r": 8', '"r": 16'),
    );
    const out = join(d, "o.vera.safetensors");
    const r = await run(["import-peft", src, "--base", B("llama"), "-o", out, "--json"]);
    expect(r.status).toBe(1);
    expect(JSON.parse(r.stdout).error.code).toBe("PEFT_VECTOR_LENGTH");
    expect(JSON.parse(r.stdout).error.message).toContain("model.layers.0.mlp.down_proj");
    expect(existsSync(out)).toBe(false);
  });
  it("a missing base, a wrong base and a folder without a config are typed errors, nothing written", async () => {
    const d = tmp();
    const out = join(d, "o.vera.safetensors");
    const nobase = await run(["import-peft", A("llama-gqa-nosp"), "-o", out, "--json"]);
    expect(nobase.status).toBe(1);
    expect(JSON.parse(nobase.stdout).error.code).toBe("PEFT_BASE_REQUIRED");
    const lora = await run(["expand-lora", A("llama-gqa-sp"), "--base", B("gpt2"), "-o", join(d, "lora")]);
    expect(lora.status).toBe(1);
    expect(lora.stderr).toContain("PEFT_BASE_MODULE_MISSING");
    expect(existsSync(join(d, "lora"))).toBe(false);
    expect(readdirSync(d)).toEqual([]);
    const noCfg = await run(["import-peft", tmp(), "-o", out, "--json"]);
    expect(JSON.parse(noCfg.stdout).error.code).toBe("PEFT_CONFIG_MISSING");
  });

  describe("expand-lora", () => {
    let d = "";
    let f = "";
    beforeAll(async () => {
      d = tmp();
      f = join(d, "g.vera.safetensors");
      const r = await run(["import-peft", A("gpt2-conv1d"), "--base", join(B("gpt2"), "config.json"), "-o", f]);
      expect(r.status, r.stderr).toBe(0);
    });
    it("exact from a verakit file, and the same bytes straight from a PEFT folder", async () => {
      const ex = await run(["expand-lora", f, "-o", join(d, "lora"), "--json"]);
      expect(ex.status, ex.stderr).toBe(0);
      expect(JSON.parse(ex.stdout).report).toMatchObject({ rank: 8, exact: true, totalRelativeError: 0 });
      const cfg = JSON.parse(readFileSync(join(d, "lora/adapter_config.json"), "utf8"));
      expect(cfg).toMatchObject({ peft_type: "LORA", r: 8, lora_alpha: 8, fan_in_fan_out: true });
      const direct = await run(["expand-lora", A("gpt2-conv1d"), "--base", B("gpt2"), "-o", join(d, "lora2")]);
      expect(direct.status, direct.stderr).toBe(0);
      expect(
        bytes(join(d, "lora2/adapter_model.safetensors")).equals(bytes(join(d, "lora/adapter_model.safetensors"))),
      ).toBe(true);
    });
    it("--rank K < r reports the approximation error; K > r is refused, writing nothing", async () => {
      const k = await run(["expand-lora", f, "--rank", "2", "-o", join(d, "lora3"), "--json"]);
      expect(k.status, k.stderr).toBe(0);
      const rep = JSON.parse(k.stdout).report;
      expect(rep.exact).toBe(false);
      expect(rep.modules).toHaveLength(6);
      expect(rep.totalRelativeError).toBeGreaterThan(0);
      expect(rep.totalRelativeError).toBeLessThan(1);
      expect((await run(["expand-lora", f, "--rank", "9", "-o", join(d, "lora4")])).status).toBe(1);
      expect(existsSync(join(d, "lora4"))).toBe(false);
    });
  });

  it("export-peft --peft-compat 0.13 drops peft_version; an unparsable version is an error", async () => {
    const d = tmp();
    const f = join(d, "a.vera.safetensors");
    expect((await run(["import-peft", A("llama-neg-seed"), "--base", B("llama"), "-o", f])).status).toBe(0);
    const r = await run(["export-peft", f, "--peft-compat", "0.13", "-o", join(d, "o"), "--json"]);
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).report.droppedFields).toEqual(["peft_version"]);
    expect(readFileSync(join(d, "o/adapter_config.json"), "utf8")).not.toContain("peft_version");
    expect((await run(["export-peft", f, "--peft-compat", "new", "-o", join(d, "p")])).status).toBe(1);
  });
});

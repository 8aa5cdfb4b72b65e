/**
 * Outputs that hold only low-rank pairs (GGUF LoRA, vLLM/TGI/LoRAX folders, a LoRA .onnx_adapter) and real PEFT
 * adapters that carry more (fixtures/peft: llama-lm-head saves lm_head whole, bert-seqcls its classifier,
 * gpt2-seqcls-bias its score head and trainable biases): each refuses with ADAPTER_CARRIED_TENSORS naming every
 * tensor and writes nothing, or with --drop-carried writes the rest and says what it dropped.
 */
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadAdapterFromPath } from "../src/node/load-adapter.js";
import { readBaseShapes } from "../src/node/read-base-shapes.js";
import { refuseCarriedTensors } from "../src/peft/refuse-carried-tensors.js";
import { runCli as run } from "./cli-helpers.js";
import { errorCode as code } from "./error-helpers.js";
import { useTempDirs } from "./temp-helpers.js";

const tmp = useTempDirs("vera-carried-");
const PEFT = join(__dirname, "../fixtures/peft");
const HEAD = join(PEFT, "adapters/llama-lm-head");
const LLAMA = join(PEFT, "bases/llama/config.json");
const LM_HEAD = "base_model.model.lm_head.weight";

describe("the loader names what an adapter carries", () => {
  it("a modules_to_save lm_head (llama-lm-head), a classifier (bert-seqcls), a score head and biases (gpt2-seqcls-bias)", async () => {
    const head = await loadAdapterFromPath({ path: HEAD, readBase: () => readBaseShapes({ path: LLAMA }) });
    expect(head.carried.map((c) => [c.tensor.name, c.kind, c.param])).toEqual([
      [LM_HEAD, "modules_to_save", "lm_head.weight"],
    ]);
    const bert = await loadAdapterFromPath({
      path: join(PEFT, "adapters/bert-seqcls"),
      readBase: () => readBaseShapes({ path: join(PEFT, "bases/bert-seqcls") }),
    });
    expect(new Set(bert.carried.map((c) => c.kind))).toEqual(new Set(["modules_to_save"]));
    expect(bert.carried.map((c) => c.param)).toContain("classifier.weight");
    const gpt2 = await loadAdapterFromPath({
      path: join(PEFT, "adapters/gpt2-seqcls-bias"),
      readBase: () => readBaseShapes({ path: join(PEFT, "bases/gpt2-seqcls") }),
    });
    expect(new Set(gpt2.carried.map((c) => c.kind))).toEqual(new Set(["modules_to_save", "bias"]));
    // the library refusal lists every one of them, as issues with the same code
    const e = (() => {
      try {
        refuseCarriedTensors({ adapter: gpt2.adapter, target: "a test output" });
      } catch (err) {
        return err as { code: string; issues: Array<{ code: string; path: string }>; message: string };
      }
      return undefined;
    })();
    expect(e?.code).toBe("ADAPTER_CARRIED_TENSORS");
    expect(e!.issues.map((i) => i.path).sort()).toEqual(gpt2.carried.map((c) => c.tensor.name).sort());
    expect(code(() => refuseCarriedTensors({ adapter: head.adapter, target: "x" }))).toBe("ADAPTER_CARRIED_TENSORS");
    const dropped = refuseCarriedTensors({ adapter: head.adapter, target: "x", dropCarried: true });
    expect(dropped.dropped).toEqual([LM_HEAD]);
    expect(dropped.adapter.extraTensors).toBeUndefined();
    expect(head.adapter.extraTensors).toHaveLength(1); // the loaded adapter is left as it was
  });
});

type Json = Record<string, { dropped?: unknown } | undefined>;

/** Each command that writes a LoRA-only output, with the output path it is given. */
const COMMANDS: Array<{ name: string; args: (out: string) => string[]; report: (j: Json) => unknown }> = [
  {
    name: "export-gguf-lora",
    args: (out) => ["export-gguf-lora", HEAD, "--base", LLAMA, "-o", join(out, "a.gguf")],
    report: (j) => j["report"]!.dropped,
  },
  ...(["vllm", "tgi", "lorax"] as const).map((engine) => ({
    name: `expand-lora --for ${engine}`,
    args: (out: string) => ["expand-lora", HEAD, "--base", LLAMA, "--for", engine, "-o", join(out, "lora")],
    report: (j: Json) => j["target"]!.dropped,
  })),
  {
    name: "export-onnx-adapter --lora",
    args: (out) => ["export-onnx-adapter", HEAD, "--base", LLAMA, "--lora", "-o", join(out, "a.onnx_adapter")],
    report: (j) => j["report"]!.dropped,
  },
];

describe("LoRA-only outputs refuse a modules_to_save head unless --drop-carried", () => {
  for (const c of COMMANDS)
    it(`${c.name}: ADAPTER_CARRIED_TENSORS naming lm_head, nothing written; --drop-carried writes and reports it`, async () => {
      const out = tmp();
      const refused = await run([...c.args(out), "--json"]);
      expect(refused.status).toBe(1);
      const err = JSON.parse(refused.stdout).error;
      expect(err.code).toBe("ADAPTER_CARRIED_TENSORS");
      expect(err.message).toContain(LM_HEAD);
      expect(err.message).toContain("--drop-carried");
      expect(readdirSync(out)).toEqual([]);

      const ok = await run([...c.args(out), "--drop-carried", "--json"]);
      expect(ok.status, ok.stdout + ok.stderr).toBe(0);
      expect(c.report(JSON.parse(ok.stdout))).toEqual([LM_HEAD]);
      expect(readdirSync(out).length).toBe(1);
      const text = await run([...c.args(tmp()), "--drop-carried"]);
      expect(text.status).toBe(0);
      expect(text.stdout).toMatch(/dropped.*lm_head\.weight/);
    });

  it("--drop-carried is refused where the output keeps carried tensors (a PEFT LoRA folder, the VeRA .onnx_adapter)", async () => {
    const out = tmp();
    const a = await run(["expand-lora", HEAD, "--base", LLAMA, "--drop-carried", "-o", join(out, "x")]);
    expect(a.status).toBe(2);
    const b = await run(["export-onnx-adapter", HEAD, "--base", LLAMA, "--drop-carried", "-o", join(out, "y")]);
    expect(b.status).toBe(2);
    expect(existsSync(join(out, "x")) || existsSync(join(out, "y"))).toBe(false);
  });
});

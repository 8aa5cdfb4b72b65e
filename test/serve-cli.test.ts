/**
 * `vera graft` as a user runs it (spawned `node dist/cli/index.js`; build first): the report, external data referenced
 * or linked (never rewritten), nothing written on a refusal.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { readGraftSpec } from "../src/serve/index.js";
import { SERVE_FIXTURES } from "./serve-helpers.js";

const cli = join(__dirname, "../dist/cli/index.js");
const run = (args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: "utf8" });
const work = mkdtempSync(join(tmpdir(), "vera-graft-cli-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const sha = (p: string): string => createHash("sha256").update(readFileSync(p)).digest("hex");
const llama = join(SERVE_FIXTURES, "llama-dynamo");

describe("vera graft", { timeout: 30_000 }, () => {
  it("--json: grafts a PEFT folder's modules, copies the base's data file beside the output, leaves it unchanged", () => {
    const before = sha(join(llama, "model.onnx.data"));
    const out = join(work, "a", "grafted.onnx");
    const r = run([
      "graft",
      join(llama, "model.onnx"),
      join(llama, "adapters", "a1"),
      "-o",
      out,
      "--batched",
      "--json",
    ]);
    expect(r.status, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.ok).toBe(true);
    expect(j.modules.length).toBe(14);
    expect(j.spec.batched).toBe(true);
    expect(j.spec.prng.seed).toBe(String(0x5eed0001));
    expect(j.dataFiles).toEqual([
      {
        location: "model.onnx.data",
        mode: "copied",
        bytes: statSync(join(llama, "model.onnx.data")).size,
      },
    ]);
    expect(sha(join(work, "a", "model.onnx.data"))).toBe(before);
    expect(sha(join(llama, "model.onnx.data"))).toBe(before);
    expect(readGraftSpec({ bytes: new Uint8Array(readFileSync(out)) }).modules.length).toBe(14);
    // the text report
    const t = run([
      "graft",
      join(llama, "model.onnx"),
      join(llama, "adapters", "a1"),
      "-o",
      join(work, "a", "g2.onnx"),
    ]);
    expect(t.status, t.stderr).toBe(0);
    expect(t.stdout).toMatch(
      /14 modules grafted \(seed 1592590337, r 8, one adapter per run, branch f32, inputs fed on every run\)/,
    );
    expect(t.stdout).toMatch(/each adapter is 2\.2 KiB of inputs/);
    expect(t.stdout).toMatch(/data model\.onnx\.data: existing/);
  });

  it("an output in the model's own folder references the data file as it is", () => {
    const dir = join(work, "same");
    mkdirSync(dir);
    copyFileSync(join(llama, "model.onnx"), join(dir, "model.onnx"));
    copyFileSync(join(llama, "model.onnx.data"), join(dir, "model.onnx.data"));
    const r = run([
      "graft",
      join(dir, "model.onnx"),
      join(llama, "adapters", "a1"),
      "-o",
      join(dir, "grafted.onnx"),
      "--json",
    ]);
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).dataFiles[0].mode).toBe("referenced");
    expect(readdirSync(dir).sort()).toEqual(["grafted.onnx", "model.onnx", "model.onnx.data"]);
  });

  it("refusals exit 1 with the typed code and write nothing (not even the output folder)", () => {
    const out = join(work, "refused", "x", "grafted.onnx");
    const fused = join(__dirname, "../fixtures/onnx/genai-fused/model.onnx");
    const r = run(["graft", fused, join(__dirname, "../fixtures/onnx/adapters/tiny-llama"), "-o", out, "--json"]);
    expect(r.status).toBe(1);
    expect(JSON.parse(r.stdout).error.code).toBe("SERVE_GRAPH_UNSUPPORTED");
    const f16 = run([
      "graft",
      join(llama, "model.onnx"),
      join(llama, "adapters", "a1"),
      "-o",
      out,
      "--dtype",
      "f16",
      "--json",
    ]);
    expect(f16.status).toBe(1);
    expect(JSON.parse(f16.stdout).error.code).toBe("SERVE_GRAPH_UNSUPPORTED");
    expect(existsSync(join(work, "refused"))).toBe(false);
    expect(run(["graft", join(llama, "model.onnx")]).status).toBe(2);
  });
});

describe("vera export-onnx-adapter --model GRAFTED.onnx", { timeout: 30_000 }, () => {
  it("takes a PEFT folder without --base (the graft record gives every shape); --base is in the usage line", () => {
    const g = join(work, "exp", "grafted.onnx");
    expect(run(["graft", join(llama, "model.onnx"), join(llama, "adapters", "a1"), "-o", g]).status).toBe(0);
    const out = join(work, "exp", "a2.onnx_adapter");
    const r = run(["export-onnx-adapter", join(llama, "adapters", "a2"), "--model", g, "-o", out, "--json"]);
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).report.parameters).toBe(28);
    // the same file as with the base model given
    const withBase = join(work, "exp", "a2-base.onnx_adapter");
    const b = run([
      "export-onnx-adapter",
      join(llama, "adapters", "a2"),
      "--base",
      join(llama, "model.onnx"),
      "--model",
      g,
      "-o",
      withBase,
    ]);
    expect(b.status, b.stderr).toBe(0);
    expect(sha(out)).toBe(sha(withBase));
    expect(run(["export-onnx-adapter", "--help"]).stdout).toMatch(/--base BASE/);
  });
});

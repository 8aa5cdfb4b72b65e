/**
 * `vera merge` and `vera demo` as a user runs them (spawned `node dist/cli/index.js`; build first).
 */
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createAdapter } from "../src/format/create.js";
import { writeVeraFile } from "../src/node/files.js";
import { FIXTURES, loadReference, maxAbsDiff, modelProto, perOutput, rng, runModel } from "./onnx-helpers.js";

const cli = join(__dirname, "../dist/cli/index.js");
const run = (args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: "utf8" });
const work = mkdtempSync(join(tmpdir(), "vera-merge-cli-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const sha = (p: string): string => createHash("sha256").update(readFileSync(p)).digest("hex");

describe("vera merge", () => {
  it("--dry-run with only a model lists its Linear weights", () => {
    const r = run(["merge", join(FIXTURES, "legacy-llama-unfolded-wrapped", "model.onnx"), "--dry-run"]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(
      /m\.model\.layers\.1\.mlp\.down_proj\s+m\.model\.layers\.1\.mlp\.down_proj\.weight\s+out_in\s+48\s+32\s+F32\s+initializer_name\s+via Transpose/,
    );
    expect(r.stdout).toMatch(/shared x2/);
    const j = run(["merge", join(FIXTURES, "quantized", "q4.onnx"), "--dry-run", "--json"]);
    expect(
      JSON.parse(j.stdout).weights.filter((w: { quantized?: string }) => w.quantized === "MatMulNBits").length,
    ).toBe(15);
  });

  it("--dry-run with an adapter prints the module -> initializer/layout table and writes nothing", () => {
    const out = join(work, "dry", "model.onnx");
    const r = run([
      "merge",
      join(FIXTURES, "llama-dynamo-wrapped", "model.onnx"),
      join(FIXTURES, "adapters", "llama"),
      "-o",
      out,
      "--dry-run",
    ]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(
      /model\.layers\.0\.self_attn\.k_proj\s+val_\d+\s+in_out\s+F32\s+raw_data\s+32x16\s+suffix/,
    );
    expect(r.stdout).toMatch(/dry run: 14 modules -> 14 weights/);
    expect(existsSync(join(work, "dry"))).toBe(false);
  });

  it("merges a PEFT folder into a legacy export (--json report); the result runs in onnxruntime", async () => {
    const out = join(work, "legacy", "model.onnx");
    const r = run([
      "merge",
      join(FIXTURES, "legacy-llama-unfolded-wrapped", "model.onnx"),
      join(FIXTURES, "adapters", "tiny-llama"),
      "-o",
      out,
      "--backend",
      "reference",
      "--json",
      "--no-fsync",
    ]);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j).toMatchObject({ ok: true, backend: "reference", weights: 15, adapterSource: "peft", inPlace: false });
    expect(j.modules.every((m: { maxAbsDelta: number }) => m.maxAbsDelta > 0)).toBe(true);
    expect(Object.keys(j.timings).sort()).toEqual([
      "commit",
      "compute",
      "copy",
      "plan",
      "projections",
      "read",
      "readModel",
      "total",
      "waitCopy",
      "write",
    ]);
    const ref = loadReference("legacy-llama-unfolded-wrapped");
    expect(maxAbsDiff(await runModel(out, ref), perOutput(ref, "reference"))).toBeLessThan(1e-4);
  });

  it("merges a verakit file in place, and prints a readable report", async () => {
    const dir = join(work, "inplace");
    mkdirSync(dir);
    for (const f of ["model.onnx", "weights.bin"])
      writeFileSync(join(dir, f), readFileSync(join(FIXTURES, "legacy-gpt2-folded", f)));
    const vera = join(work, "gpt2.vera.safetensors");
    expect(
      run(["import-peft", join(FIXTURES, "adapters", "tiny-gpt2"), "--base", join(dir, "model.onnx"), "-o", vera])
        .status,
    ).toBe(0);
    const onnxBefore = sha(join(dir, "model.onnx"));
    const dataBefore = sha(join(dir, "weights.bin"));
    const r = run(["merge", join(dir, "model.onnx"), vera, "--in-place", "--backend", "reference"]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/merged 8 modules into 8 weights/);
    expect(r.stdout).toMatch(/time .*compute/);
    expect(sha(join(dir, "model.onnx"))).toBe(onnxBefore);
    expect(sha(join(dir, "weights.bin"))).not.toBe(dataBefore);
    expect(readdirSync(dir).sort()).toEqual(["model.onnx", "weights.bin"]);
    const ref = loadReference("legacy-gpt2-folded");
    expect(maxAbsDiff(await runModel(join(dir, "model.onnx"), ref), perOutput(ref, "reference"))).toBeLessThan(1e-4);
  });

  it("merges a PEFT folder into a sharded safetensors checkpoint folder: same files, changed shards only differ", () => {
    const base = join(__dirname, "..", "fixtures", "safetensors", "gpt2-f32", "base");
    const out = join(work, "ckpt");
    const r = run([
      "merge",
      base,
      join(base, "..", "adapter"),
      "-o",
      out,
      "--backend",
      "reference",
      "--no-fsync",
      "--json",
    ]);
    expect(r.status).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.output).toBe(out);
    expect(j.weights).toBe(8);
    expect(readdirSync(out).sort()).toEqual(readdirSync(base).sort());
    const changed = new Set(j.modules.map((m: { storage: string }) => m.storage.split("@")[0]));
    for (const f of readdirSync(base))
      expect({ f, same: sha(join(out, f)) === sha(join(base, f)) }).toEqual({ f, same: !changed.has(f) });
  });

  // one or two processes per test: each spawn loads Node and onnxruntime, slow on a loaded machine
  const v = join(work, "tiny.vera.safetensors");
  const tinyVera = (): string => v;
  beforeAll(() => {
    // a verakit file for the tests below (import-peft runs once, in a hook with the longer hook timeout)
    expect(
      run([
        "import-peft",
        join(FIXTURES, "adapters", "tiny-llama"),
        "--base",
        join(FIXTURES, "legacy-llama-folded", "model.onnx"),
        "-o",
        v,
      ]).status,
    ).toBe(0);
  });

  it("refuses a quantized model: exit 1, ONNX_QUANTIZED", () => {
    const q = run([
      "merge",
      join(FIXTURES, "quantized", "int8.onnx"),
      join(FIXTURES, "adapters", "tiny-llama"),
      "-o",
      join(work, "q", "m.onnx"),
      "--json",
    ]);
    expect(q.status).toBe(1);
    expect(JSON.parse(q.stdout).error.code).toBe("ONNX_QUANTIZED");
    expect(existsSync(join(work, "q"))).toBe(false);
  });

  it("refuses a 4-bit model for a verakit file: exit 1, ONNX_QUANTIZED", () => {
    const v = tinyVera();
    const q2 = run(["merge", join(FIXTURES, "quantized", "q4.onnx"), v, "-o", join(work, "q", "m.onnx"), "--json"]);
    expect(q2.status).toBe(1);
    expect(JSON.parse(q2.stdout).error.code).toBe("ONNX_QUANTIZED");
    expect(existsSync(join(work, "q"))).toBe(false);
  });

  it("usage errors exit 2: no output, -o with --in-place", () => {
    const v = tinyVera();
    expect(run(["merge", join(FIXTURES, "legacy-llama-folded", "model.onnx"), v]).status).toBe(2);
    expect(
      run(["merge", join(FIXTURES, "legacy-llama-folded", "model.onnx"), v, "-o", "x.onnx", "--in-place"]).status,
    ).toBe(2);
  });

  it("--threads 0 is ARG_INVALID (exit 2); --threads 1 runs the CPU backend on one thread", () => {
    const v = tinyVera();
    const t = run([
      "merge",
      join(FIXTURES, "legacy-llama-folded", "model.onnx"),
      v,
      "-o",
      join(work, "q", "m.onnx"),
      "--threads",
      "0",
      "--json",
    ]);
    expect(t.status).toBe(2);
    expect(JSON.parse(t.stdout).error.code).toBe("ARG_INVALID");
    const ok = run([
      "merge",
      join(FIXTURES, "legacy-llama-folded", "model.onnx"),
      v,
      "-o",
      join(work, "t1", "m.onnx"),
      "--backend",
      "ort-cpu",
      "--threads",
      "1",
      "--json",
    ]);
    expect(ok.status).toBe(0);
    expect(JSON.parse(ok.stdout).backendInfo.device).toContain("1 thread");
    expect(existsSync(join(work, "q"))).toBe(false);
  });

  it("Ctrl-C during a merge: exit 130, the input untouched, no output or temporary file left", async () => {
    // a model big enough that the reference backend takes seconds: 12 weights of 1024 x 1024
    const dir = join(work, "big");
    mkdirSync(dir);
    const inF = 1024;
    const outF = 1024;
    const count = 12;
    const r = rng(1);
    const block = new Float32Array(inF * outF).map(() => r());
    const data = new Uint8Array(count * block.byteLength);
    for (let i = 0; i < count; i++) data.set(new Uint8Array(block.buffer), i * block.byteLength);
    writeFileSync(join(dir, "w.bin"), data);
    const nodes = [];
    const inits = [];
    for (let i = 0; i < count; i++) {
      inits.push({
        name: `layers.${i}.proj.weight`,
        dims: [inF, outF],
        dataType: 1,
        external: [
          ["location", "w.bin"],
          ["offset", String(i * block.byteLength)],
          ["length", String(block.byteLength)],
        ] as Array<[string, string]>,
      });
      nodes.push({ opType: "MatMul", inputs: [i ? `h${i - 1}` : "x", `layers.${i}.proj.weight`], outputs: [`h${i}`] });
    }
    writeFileSync(
      join(dir, "model.onnx"),
      modelProto({
        nodes,
        initializers: inits,
        inputs: [{ name: "x", elemType: 1, shape: [1, inF] }],
        outputs: [{ name: `h${count - 1}`, elemType: 1, shape: [1, outF] }],
      }),
    );
    const adapter = createAdapter({
      modules: Array.from({ length: count }, (_, i) => ({
        name: `layers.${i}.proj`,
        inFeatures: inF,
        outFeatures: outF,
      })),
      rank: 64,
    });
    for (const m of adapter.modules) m.lambdaB.fill(0.5);
    await writeVeraFile(join(work, "big.vera.safetensors"), adapter);
    const before = { model: sha(join(dir, "model.onnx")), data: sha(join(dir, "w.bin")) };
    const outDir = join(work, "big-out");
    const child = spawn(
      process.execPath,
      [
        cli,
        "merge",
        join(dir, "model.onnx"),
        join(work, "big.vera.safetensors"),
        "-o",
        join(outDir, "model.onnx"),
        "--backend",
        "reference",
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let stderr = "";
    const code = await new Promise<number | null>((resolve) => {
      let sent = false;
      child.stderr.on("data", (d: Buffer) => {
        stderr += d.toString();
        if (!sent && stderr.includes("merging 12 modules")) {
          sent = true;
          setTimeout(() => child.kill("SIGINT"), 300);
        }
      });
      child.on("exit", (c) => resolve(c));
    });
    expect(stderr).toMatch(/cancelling/);
    expect(code).toBe(130);
    expect({ model: sha(join(dir, "model.onnx")), data: sha(join(dir, "w.bin")) }).toEqual(before);
    expect(readdirSync(dir).sort()).toEqual(["model.onnx", "w.bin"]);
    expect(existsSync(outDir) ? readdirSync(outDir) : []).toEqual([]);
  }, 60_000);
});

describe("vera demo", () => {
  // one case per process (the whole set in one process takes several seconds on a loaded machine)
  const manifest = JSON.parse(readFileSync(join(FIXTURES, "MANIFEST.json"), "utf8")) as { cases: object };
  const cases = Object.keys(manifest.cases).filter((c) => c !== "quantized");
  it("covers every bundled fixture", () => {
    expect(cases.length).toBeGreaterThanOrEqual(9);
  });
  for (const c of cases)
    it(`${c}: the merged model reproduces the PEFT adapter's logits`, () => {
      const r = run(["demo", "--case", c, "--json", "--backend", "reference"]);
      expect(r.status).toBe(0);
      const j = JSON.parse(r.stdout);
      expect(j.ok).toBe(true);
      expect(j.results.length).toBe(1);
      expect(j.results[0].maxAbsMergedVsReference).toBeLessThan(1e-4);
      expect(j.results[0].maxAbsBaseVsReference).toBeGreaterThan(1e-2);
    });

  it("prints PASS for the merge and for the grafted model's serving section", () => {
    const t = run(["demo", "--backend", "reference"]);
    expect(t.status).toBe(0);
    expect(t.stdout).toMatch(/\[serve\] one model, many adapters/);
    expect(t.stdout).not.toMatch(/FAIL/);
    expect(t.stdout.match(/PASS/g)?.length).toBeGreaterThanOrEqual(2);
  }, 60_000);
});

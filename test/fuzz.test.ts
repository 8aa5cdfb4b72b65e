import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";

// A quick smoke version of `npm run fuzz` (test/fuzz.mjs, on dist/): a few inputs per target, so CI sees the
// harness and every target work. The 1,000,000-input runs are on demand (`npm run fuzz -- --runs 1000000`).
const work = mkdtempSync(join(tmpdir(), "vera-fuzz-test-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

it("npm run fuzz: every target, none ends in anything but a typed error, within the time and memory budgets", () => {
  const json = join(work, "summary.json");
  const r = spawnSync(
    process.execPath,
    [join(__dirname, "fuzz.mjs"), "--runs", "40", "--seed", "7", "--json", json, "--failures", join(work, "failures")],
    { encoding: "utf8" },
  );
  expect(r.stderr).toBe("");
  expect(r.status).toBe(0);
  const summary = JSON.parse(readFileSync(json, "utf8")) as {
    failures: number;
    targets: Record<string, { inputs: number; failures: number; typedErrors: number; peakRssMiB: number }>;
  };
  expect(Object.keys(summary.targets).sort()).toEqual([
    "base-shapes",
    "format",
    "gguf",
    "hub-responses",
    "onnx",
    "peft",
    "safetensors-index",
    "undo-journal",
  ]);
  for (const [name, t] of Object.entries(summary.targets)) {
    expect(t.inputs, name).toBe(40);
    expect(t.failures, name).toBe(0);
    expect(t.typedErrors, name).toBeGreaterThan(0); // the inputs reach the parsers' checks
    expect(t.peakRssMiB, name).toBeGreaterThan(0);
  }
  expect(r.stdout).toMatch(/fuzz: seed 7, 0 failures/);
}, 180_000);

it("a saved input is reproduced with --repro (200 KB of nested start-group tags: a typed error)", () => {
  const file = join(work, "groups.json");
  const model = Buffer.alloc(200 * 1024, 0x0b).toString("base64");
  writeFileSync(file, JSON.stringify({ target: "onnx", kind: "nested-groups", files: { "model.onnx": model } }));
  const r = spawnSync(process.execPath, [join(__dirname, "fuzz.mjs"), "--repro", file], { encoding: "utf8" });
  expect(r.stdout).toMatch(/repro onnx \(nested-groups, 204800 bytes\): typed result/);
  expect(r.status).toBe(0);
});

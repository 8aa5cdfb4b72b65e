import { execFileSync, spawnSync } from "node:child_process";
import { readFileSync, readdirSync, existsSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { useTempDirs } from "./temp-helpers.js";
import { runCli } from "./cli-helpers.js";
import { commands } from "../src/cli/commands/index.js";
import { parseSafetensors, tensorBytes, asFloat32, generateProjections } from "../src/index.js";

const cli = join(__dirname, "../dist/cli/index.js");
/** The built executable, as a user runs it. */
const exe = (args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: "utf8" });
/** The same main() in process: most tests, so that a loaded machine's Node start-ups do not decide the result. */
const run = runCli;
const tmp = useTempDirs("vera-cli-");

describe("vera CLI (core commands)", () => {
  it("prints help and exits 2 without a command; unknown commands exit 2", async () => {
    // the built executable: help without a command, exit 2
    const bare = exe([]);
    expect(bare.status).toBe(2);
    expect(bare.stdout).toContain("import-peft");
    expect((await run([])).status).toBe(2);
    expect((await run(["frobnicate"])).status).toBe(2);
    expect((await run(["--help"])).stdout).toContain("inspect");
  });
  it("--help gives every command a one-line summary", async () => {
    const help = await run(["--help"]);
    expect(help.status).toBe(0);
    for (const [name, load] of Object.entries(commands)) {
      const { summary } = (await load()).default;
      expect(summary, name).not.toContain("\n");
      expect(summary.length, name).toBeLessThan(80);
      expect(help.stdout).toMatch(new RegExp(`^  ${name} +${summary.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`, "m"));
    }
  });
  it("a negative number is a value: --seed -3 and --seed=-3 give the same projections as the library", async () => {
    const d = tmp();
    const common = ["--rank", "2", "--max-in", "5", "--max-out", "3"];
    const spaced = await run(["projections", "--seed", "-3", ...common, "-o", join(d, "a.safetensors"), "--json"]);
    expect(spaced.status, spaced.stderr).toBe(0);
    expect(JSON.parse(spaced.stdout).seed).toBe("-3");
    const joined = await run(["projections", "--seed=-3", ...common, "-o", join(d, "b.safetensors")]);
    expect(joined.status, joined.stderr).toBe(0);
    const a = readFileSync(join(d, "a.safetensors"));
    expect(a.equals(readFileSync(join(d, "b.safetensors")))).toBe(true);
    const { A } = generateProjections({ seed: -3n, rank: 2, maxIn: 5, maxOut: 3 });
    const file = parseSafetensors(new Uint8Array(a));
    expect(Array.from(asFloat32(tensorBytes(file, "vera_A")))).toEqual(Array.from(A));
    // a negative rank is still refused, as a bad value (ARG_INVALID), not as an unknown option
    const neg = await run([
      "projections",
      "--seed",
      "1",
      "--rank",
      "-2",
      ...common.slice(2),
      "-o",
      join(d, "c"),
      "--json",
    ]);
    expect(neg.status).toBe(2);
    expect(JSON.parse(neg.stdout).error.code).toBe("ARG_INVALID");
  });
  it("create -> inspect -> validate", async () => {
    const d = tmp();
    const f = join(d, "a.vera.safetensors");
    const created = await run([
      "create",
      "-o",
      f,
      "--rank",
      "4",
      "--layers",
      "2",
      "--target",
      "self_attn.q_proj:16x8",
      "--target",
      "mlp.down_proj:8x24",
      "--seed=-5",
    ]);
    expect(created.status, created.stderr).toBe(0);
    const ins = await run(["inspect", f, "--json"]);
    expect(ins.status).toBe(0);
    const j = JSON.parse(ins.stdout);
    expect(j).toMatchObject({
      ok: true,
      rank: 4,
      moduleCount: 4,
      maxIn: 24,
      maxOut: 16,
      prng: { seed: "-5" },
      digest: { ok: true },
    });
    expect((await run(["inspect", f])).stdout).toContain("q_proj");
    const v = await run(["validate", f, "--json"]);
    expect(v.status).toBe(0);
    expect(JSON.parse(v.stdout).ok).toBe(true);
  });
  it("validate exits 1 with a code for each broken spec vector and 0 for valid ones", async () => {
    const dir = join(__dirname, "../spec/vectors");
    const manifest = JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8")) as {
      vectors: Array<{ file: string; valid: boolean; code?: string }>;
    };
    const r = await run(["validate", ...manifest.vectors.map((v) => join(dir, v.file)), "--json"]);
    expect(r.status).toBe(1);
    const out = JSON.parse(r.stdout) as { files: Array<{ ok: boolean; issues: Array<{ code: string }> }> };
    manifest.vectors.forEach((v, i) => {
      expect(out.files[i]!.ok).toBe(v.valid);
      if (!v.valid) expect(out.files[i]!.issues[0]!.code).toBe(v.code);
    });
    // one file at a time: in process (a Node start-up each would not fit a loaded machine's test timeout)
    for (const v of manifest.vectors.slice(0, 8))
      expect((await runCli(["validate", join(dir, v.file)])).status).toBe(v.valid ? 0 : 1);
  });
  it("projections writes vera_A / vera_B exactly as the library generates them", async () => {
    const d = tmp();
    const f = join(d, "p.safetensors");
    const r = await run([
      "projections",
      "--seed",
      "4294967303",
      "--rank",
      "3",
      "--max-in",
      "17",
      "--max-out",
      "5",
      "--arithmetic",
      "separate",
      "-o",
      f,
    ]);
    expect(r.status).toBe(0);
    const file = parseSafetensors(new Uint8Array(readFileSync(f)));
    const { A, B } = generateProjections({ seed: 4294967303n, rank: 3, maxIn: 17, maxOut: 5, arithmetic: "separate" });
    expect(file.tensors.get("vera_A")?.shape).toEqual([3, 17]);
    expect(Array.from(asFloat32(tensorBytes(file, "vera_A")))).toEqual(Array.from(A));
    expect(Array.from(asFloat32(tensorBytes(file, "vera_B")))).toEqual(Array.from(B));
  });
  it("bad arguments: usage errors exit 2, invalid values exit 2 with a code, nothing written", async () => {
    const d = tmp();
    const f = join(d, "p.safetensors");
    expect((await run(["projections", "--seed", "1", "--rank", "3", "--max-in", "4", "-o", f])).status).toBe(2);
    const bad = await run([
      "projections",
      "--seed",
      "1",
      "--rank",
      "x",
      "--max-in",
      "4",
      "--max-out",
      "4",
      "-o",
      f,
      "--json",
    ]);
    expect(bad.status).toBe(2);
    expect(JSON.parse(bad.stdout).error.code).toBe("ARG_INVALID");
    const seed = await run([
      "projections",
      "--seed",
      "99999999999999999999999",
      "--rank",
      "3",
      "--max-in",
      "4",
      "--max-out",
      "4",
      "-o",
      f,
    ]);
    expect(seed.status).toBe(1);
    expect(seed.stderr).toContain("VERA_SEED");
    expect(seed.stderr).not.toMatch(/\n\s+at /); // no stack trace without --debug
    expect(existsSync(f)).toBe(false);
    expect(readdirSync(d)).toEqual([]);
    const missing = await run(["inspect", join(d, "nope.vera.safetensors")]);
    expect(missing.status).toBe(2);
    expect(missing.stderr).toContain("IO_NOT_FOUND");
  });
  it("--version prints the package version", async () => {
    const pkg = JSON.parse(readFileSync(join(__dirname, "../package.json"), "utf8"));
    expect(execFileSync(process.execPath, [cli, "--version"], { encoding: "utf8" }).trim()).toBe(pkg.version);
  });
});

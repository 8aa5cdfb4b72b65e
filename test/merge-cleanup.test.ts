/**
 * Nothing left behind: a merge into new files (and any atomic write: graft, exports) ended by
 * SIGTERM, SIGHUP or SIGINT removes its temporary files and its lock; a temporary file left by a
 * process that died outright is removed by the next run writing into its folder (only our exact
 * name pattern, only a dead pid of this host). And an in-place merge never writes through a
 * Hugging Face cache's links into its shared blobs.
 */
import { spawn, spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readdirSync, symlinkSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { describe, expect, it } from "vitest";
import { mergeGguf, mergeOnnx, MergeErrorCode, recoverMerge } from "../src/merge/index.js";
import { tempPathFor } from "../src/node/temp-files.js";
import { veraError } from "./error-helpers.js";
import { cases, GG, ONNX, pausedMerge, ROOT, snapshot } from "./in-place-helpers.js";
import { useTempDirs } from "./temp-helpers.js";

const fresh = useTempDirs("vera-cleanup-");

describe.each(["SIGTERM", "SIGHUP", "SIGINT"] as const)("a merge into new files ended by %s", (signal) => {
  it("removes its temporary files and its lock, and ends by that signal", async () => {
    const c = cases[0]!;
    const dir = fresh();
    const model = c.setup(dir);
    const before = snapshot(dir);
    const out = fresh();
    const run = pausedMerge({ c, model, options: { output: c.outputIn(out) }, pauseAt: 2, signals: fresh() });
    await run.ready;
    expect(readdirSync(out).filter((f) => f.endsWith(".tmp")).length).toBeGreaterThan(0);
    run.child.kill(signal);
    const end = await run.exited;
    expect(end.signal).toBe(signal);
    expect(readdirSync(out)).toEqual([]);
    expect(snapshot(dir)).toEqual(before);
  });
});

describe("an in-place merge ended by SIGTERM", () => {
  it("keeps its journal and drops its lock: the next merge says interrupted, recover restores the model", async () => {
    const c = cases[0]!;
    const dir = fresh();
    const model = c.setup(dir);
    const before = snapshot(dir);
    const run = pausedMerge({ c, model, options: { inPlace: true }, pauseAt: 3, signals: fresh() });
    await run.ready;
    run.child.kill("SIGTERM");
    expect((await run.exited).signal).toBe("SIGTERM");
    expect(readdirSync(dir).filter((f) => f.startsWith("."))).toEqual([".model.onnx.vera-undo"]);
    const e = await veraError(c.merge({ model, adapter: c.adapter, inPlace: true, durable: false }));
    expect(e.code).toBe(MergeErrorCode.MERGE_INTERRUPTED);
    expect((await recoverMerge({ model })).restored).toHaveLength(1);
    expect(snapshot(dir)).toEqual(before);
  });
});

describe("an atomic write ended by a signal (graft, exports)", () => {
  it("removes its temporary file", async () => {
    const dir = fresh();
    const ready = join(dir, "ready");
    const script = `
      import { writeFileSync } from "node:fs";
      import { writeFileAtomicStream } from ${JSON.stringify(join(ROOT, "dist", "node", "index.js"))};
      await writeFileAtomicStream(${JSON.stringify(join(dir, "out.bin"))}, async (write) => {
        await write(new Uint8Array(1 << 20));
        writeFileSync(${JSON.stringify(ready)}, "");
        await new Promise(() => setInterval(() => {}, 1000));
      });
    `;
    const child = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: "ignore" });
    const exited = new Promise<NodeJS.Signals | null>((res) => child.on("exit", (_, s) => res(s)));
    while (!existsSync(ready)) await new Promise((r) => setTimeout(r, 10));
    expect(readdirSync(dir).filter((f) => f.endsWith(".tmp"))).toHaveLength(1);
    child.kill("SIGTERM");
    expect(await exited).toBe("SIGTERM");
    expect(readdirSync(dir)).toEqual(["ready"]);
  });
});

describe("temporary files of dead processes", () => {
  it("are removed by the next merge writing into their folder: only our names, dead pids, this host", async () => {
    const c = cases[0]!;
    const model = c.setup(fresh());
    const dead = spawnSync(process.execPath, ["-e", ""]).pid!;
    // this host's name for a temporary file, with another pid
    const ours = basename(tempPathFor(join(fresh(), "model.onnx.data")));
    const named = (pid: number, tag?: string): string => {
      const parts = ours.split(".");
      parts[parts.length - 3] = String(pid);
      if (tag) parts[parts.length - 2] = tag;
      return parts.join(".");
    };
    const tag = ours.split(".").at(-2)!;
    const otherHost = `${tag.startsWith("0") ? "1" : "0"}${tag.slice(1)}`;
    const out = fresh();
    const left = named(dead);
    const kept = [named(process.pid), named(dead, otherHost), `.model.onnx.data.${dead}.tmp`, `x.${dead}.${tag}.tmp`];
    for (const f of [left, ...kept]) writeFileSync(join(out, f), "left over");
    await mergeOnnx({ model, adapter: c.adapter, output: c.outputIn(out), durable: false });
    const now = readdirSync(out);
    expect(now).not.toContain(left);
    for (const f of kept) expect(now).toContain(f);
  });
});

describe("an in-place merge of a Hugging Face cache snapshot", () => {
  /** `<cache>/models--org--m/snapshots/abc/<name>` linking to `blobs/<digest>` holding `file`. */
  function cached(file: string, name: string): { link: string; blobs: string } {
    const repo = join(fresh(), "models--org--m");
    const blobs = join(repo, "blobs");
    const snap = join(repo, "snapshots", "abc");
    mkdirSync(blobs, { recursive: true });
    mkdirSync(snap, { recursive: true });
    cpSync(file, join(blobs, "0123abcd"));
    symlinkSync("../../blobs/0123abcd", join(snap, name));
    return { link: join(snap, name), blobs };
  }

  it("is refused for a GGUF and for an ONNX model (weights inside the .onnx); -o still works", async () => {
    const gguf = cached(join(GG, "llama", "base-f32.gguf"), "m.gguf");
    const onnx = cached(join(ONNX, "legacy-llama-fp16", "model.onnx"), "model.onnx");
    const runs = [
      { at: gguf, merge: (p: object) => mergeGguf({ model: gguf.link, adapter: join(GG, "vera"), ...p }) },
      { at: onnx, merge: (p: object) => mergeOnnx({ model: onnx.link, adapter: cases[1]!.adapter, ...p }) },
    ];
    for (const r of runs) {
      const before = snapshot(r.at.blobs);
      const e = await veraError(r.merge({ inPlace: true, durable: false }));
      expect(e.code).toBe(MergeErrorCode.MERGE_OUTPUT_CONFLICT);
      expect(e.message).toMatch(/Hub cache/);
      expect(snapshot(r.at.blobs)).toEqual(before);
      expect(readdirSync(join(r.at.blobs, "..", "snapshots", "abc"))).toHaveLength(1);
      const out = join(fresh(), basename(r.at.link));
      await r.merge({ output: out, durable: false });
      expect(existsSync(out)).toBe(true);
    }
  });
});

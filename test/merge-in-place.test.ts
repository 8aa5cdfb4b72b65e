/**
 * In-place merges: only the adapted weights' ranges of the model's own files are written (same
 * inodes, no other byte touched), an undo journal holds their original bytes, a failure or a
 * cancellation rolls back at once, and after a crash (a process killed mid-merge) every merge
 * refuses the model until `recoverMerge` / `vera recover` puts the original bytes back.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { cpSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import type { ComputeBackend } from "../src/compute/backend.js";
import { createReferenceBackend } from "../src/compute/reference-backend.js";
import {
  mergeCheckpoint,
  mergeGguf,
  mergeOnnx,
  MergeErrorCode,
  recoverMerge,
  type MergeReport,
} from "../src/merge/index.js";
import { runCli } from "./cli-helpers.js";
import { veraError } from "./error-helpers.js";
import { useTempDirs } from "./temp-helpers.js";

const fresh = useTempDirs("vera-inplace-");
const ROOT = resolve(__dirname, "..");
const ONNX = join(ROOT, "fixtures", "onnx");
const ST = join(ROOT, "fixtures", "safetensors", "llama-bf16");
const GG = join(ROOT, "fixtures", "gguf");

/** relative path -> sha256 of every file under a folder (dot-files included). */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!e.isFile()) continue;
    const p = join(e.parentPath, e.name);
    out[p.slice(dir.length + 1)] = createHash("sha256").update(readFileSync(p)).digest("hex");
  }
  return out;
}

function failingBackend(failAt: number): ComputeBackend {
  const ref = createReferenceBackend();
  let calls = 0;
  return {
    name: "failing",
    async merge(tasks) {
      if (++calls === failAt) throw new Error("device lost");
      return ref.merge(tasks);
    },
  };
}

interface Case {
  name: string;
  /** Copy the model into `dir`; returns what the merge is given. */
  setup: (dir: string) => string;
  adapter: string;
  merge: (p: {
    model: string;
    adapter: string;
    inPlace?: boolean;
    output?: string;
    dryRun?: boolean;
    backend?: ComputeBackend;
    signal?: AbortSignal;
    durable?: boolean;
  }) => Promise<MergeReport>;
  /** The merge function's name in the built library (the crash script). */
  fn: string;
  /** -o for a merge of `model` into the folder `out`. */
  outputIn: (out: string) => string;
  /** Whether the head file (the .onnx) is replaced: merged weights inside it, or an untied copy added. */
  headChanges?: boolean;
  /** More options for every merge of this case (given to the crash script too). */
  extra?: { untie?: boolean };
}

const cases: Case[] = [
  {
    name: "ONNX with external data",
    setup: (d) => (cpSync(join(ONNX, "gpt2-dynamo"), d, { recursive: true }), join(d, "model.onnx")),
    adapter: join(ONNX, "adapters", "gpt2"),
    merge: (p) => mergeOnnx(p),
    fn: "mergeOnnx",
    outputIn: (out) => join(out, "model.onnx"),
  },
  {
    name: "ONNX with weights inside the .onnx",
    setup: (d) => (cpSync(join(ONNX, "legacy-llama-fp16"), d, { recursive: true }), join(d, "model.onnx")),
    adapter: join(ONNX, "adapters", "tiny-llama"),
    merge: (p) => mergeOnnx(p),
    fn: "mergeOnnx",
    outputIn: (out) => join(out, "model.onnx"),
    headChanges: true,
  },
  {
    name: "ONNX with a tied lm_head untied (the copy appended to its data file)",
    setup: (d) => (cpSync(join(ONNX, "legacy-llama-unfolded-wrapped"), d, { recursive: true }), join(d, "model.onnx")),
    adapter: join(ONNX, "adapters", "tiny-llama-head"),
    merge: (p) => mergeOnnx({ ...p, untie: true }),
    fn: "mergeOnnx",
    outputIn: (out) => join(out, "model.onnx"),
    headChanges: true,
    extra: { untie: true },
  },
  {
    name: "sharded safetensors checkpoint",
    setup: (d) => (cpSync(join(ST, "base"), d, { recursive: true }), d),
    adapter: join(ST, "adapter"),
    merge: (p) => mergeCheckpoint(p),
    fn: "mergeCheckpoint",
    outputIn: (out) => out,
  },
  {
    name: "GGUF",
    setup: (d) => (cpSync(join(GG, "llama", "base-f32.gguf"), join(d, "m.gguf")), join(d, "m.gguf")),
    adapter: join(GG, "vera"),
    merge: (p) => mergeGguf(p),
    fn: "mergeGguf",
    outputIn: (out) => join(out, "m.gguf"),
  },
  {
    name: "split GGUF (given its second part)",
    setup: (d) => {
      cpSync(join(GG, "llama-split"), d, { recursive: true });
      return join(d, readdirSync(d).find((f) => f.includes("-00002-of-"))!);
    },
    adapter: join(GG, "vera"),
    merge: (p) => mergeGguf(p),
    fn: "mergeGguf",
    outputIn: (out) => out,
  },
];

/** The model's folder after a merge to another folder (the expected in-place result). */
async function expected(c: Case): Promise<Record<string, string>> {
  const src = fresh();
  const model = c.setup(src);
  const out = fresh();
  await c.merge({ model, adapter: c.adapter, output: c.outputIn(out), durable: false });
  // the output folder holds only the model's files: compare those
  const all = snapshot(src);
  const merged = snapshot(out);
  return Object.fromEntries(Object.keys(all).map((k) => [k, merged[k] ?? all[k]!]));
}

/**
 * Run the merge in a child process (the built library) that kills itself with SIGKILL when the
 * backend is asked for its `killAt`-th weight. With `afterAWrite`, it first waits until one of the
 * model's files has changed (merged weights are written in the background, behind the compute).
 */
function crashingMerge(c: Case, model: string, killAt: number, afterAWrite = false): void {
  const dir = statSync(model).isDirectory() ? model : dirname(model);
  const script = `
    import { createHash } from "node:crypto";
    import { readdirSync, readFileSync, statSync } from "node:fs";
    import { join } from "node:path";
    import { ${c.fn} } from ${JSON.stringify(join(ROOT, "dist", "merge", "index.js"))};
    import { createReferenceBackend } from ${JSON.stringify(join(ROOT, "dist", "compute", "index.js"))};
    const dir = ${JSON.stringify(dir)};
    const files = readdirSync(dir).filter((f) => !f.startsWith(".") && statSync(join(dir, f)).isFile());
    const digest = () => files.map((f) => createHash("sha256").update(readFileSync(join(dir, f))).digest("hex")).join();
    const start = digest();
    const ref = createReferenceBackend();
    let calls = 0;
    const backend = {
      name: "crash",
      async merge(t) {
        if (++calls === ${killAt}) {
          for (const t0 = Date.now(); ${afterAWrite} && digest() === start && Date.now() - t0 < 30000; )
            await new Promise((r) => setTimeout(r, 5));
          process.kill(process.pid, "SIGKILL");
        }
        return ref.merge(t);
      },
    };
    await ${c.fn}({ model: ${JSON.stringify(model)}, adapter: ${JSON.stringify(c.adapter)}, inPlace: true, backend, ...${JSON.stringify(c.extra ?? {})} });
  `;
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" });
  if (r.signal !== "SIGKILL") throw new Error(`the merge did not crash: ${r.status} ${r.stderr}`);
}

describe.each(cases)("in place: $name", (c) => {
  it("writes only the merged ranges into the model's own files: the same bytes as a merge to a new folder", async () => {
    const want = await expected(c);
    const dir = fresh();
    const model = c.setup(dir);
    const before = new Map(readdirSync(dir).map((f) => [f, statSync(join(dir, f))]));
    const r = await c.merge({ model, adapter: c.adapter, inPlace: true, durable: false });
    expect(r.inPlace).toBe(true);
    expect(snapshot(dir)).toEqual(want); // no journal, no temporary file left
    const written = new Set(r.files.map((f) => f.split("/").pop()!));
    for (const [f, st] of before) {
      const now = statSync(join(dir, f));
      if (!written.has(f)) expect({ f, mtime: now.mtimeMs }).toEqual({ f, mtime: st.mtimeMs });
      // data files are written where they are; only a head file that changes is replaced
      if (!(c.headChanges && f === "model.onnx")) expect({ f, ino: now.ino }).toEqual({ f, ino: st.ino });
    }
    // the merged weights' bytes in data files (none when they are inside the head), and the new head file
    const inData = c.name.includes("inside") ? 0 : r.bytesMerged;
    expect(r.bytesWritten).toBe(inData + (c.headChanges ? statSync(model).size : 0));
  });

  it("a failure mid-merge rolls back at once: the model is as it was, with no journal left", async () => {
    const dir = fresh();
    const model = c.setup(dir);
    const before = snapshot(dir);
    await expect(
      c.merge({ model, adapter: c.adapter, inPlace: true, backend: failingBackend(3), durable: false }),
    ).rejects.toThrow("device lost");
    expect(snapshot(dir)).toEqual(before);
  });

  it("after a crash: every merge refuses the model (MERGE_INTERRUPTED) until recoverMerge restores every byte", async () => {
    const dir = fresh();
    const model = c.setup(dir);
    const before = snapshot(dir);
    // killed at the 3rd weight, once a merged weight has reached the files (not the head: it is written last)
    crashingMerge(c, model, 3, !c.name.includes("inside"));
    const journal = readdirSync(dir).filter((f) => f.endsWith(".vera-undo"));
    expect(journal).toHaveLength(1);
    const changed = Object.entries(snapshot(dir)).filter(([k, v]) => before[k] !== v && !k.includes(".vera-undo"));
    if (!c.name.includes("inside")) expect(changed.length).toBeGreaterThan(0); // weights were written in place
    if (c.extra?.untie) {
      // the untied copy (first in merge order) was appended: recovery must cut the file back
      const shared = join(dir, "m.model.embed_tokens.weight");
      expect(statSync(shared).size).toBeGreaterThan(
        statSync(join(ONNX, "legacy-llama-unfolded-wrapped", "m.model.embed_tokens.weight")).size,
      );
    }

    for (const p of [{ inPlace: true }, { output: c.outputIn(fresh()) }, { dryRun: true }] as const) {
      const e = await veraError(c.merge({ model, adapter: c.adapter, durable: false, ...p }));
      expect(e.code).toBe(MergeErrorCode.MERGE_INTERRUPTED);
      expect(e.message).toMatch(/vera recover/);
    }
    const r = await recoverMerge({ model, durable: false });
    expect(r.restored).toHaveLength(1);
    expect(snapshot(dir)).toEqual(before);
    expect((await recoverMerge({ model })).restored).toEqual([]);
    // and the model merges again
    await c.merge({ model, adapter: c.adapter, inPlace: true, durable: false });
    expect(snapshot(dir)).toEqual(await expected(c));
  });
});

describe("the undo journal", () => {
  const c = cases[0]!;

  it("cancelling an in-place merge rolls it back", async () => {
    const dir = fresh();
    const model = c.setup(dir);
    const before = snapshot(dir);
    const ac = new AbortController();
    const ref = createReferenceBackend();
    let calls = 0;
    const backend: ComputeBackend = {
      name: "cancel",
      async merge(tasks) {
        if (++calls === 3) ac.abort();
        return ref.merge(tasks);
      },
    };
    const e = await veraError(
      mergeOnnx({ model, adapter: c.adapter, inPlace: true, backend, signal: ac.signal, durable: false }),
    );
    expect(e.code).toBe(MergeErrorCode.MERGE_ABORTED);
    expect(snapshot(dir)).toEqual(before);
  });

  it("a damaged journal changes nothing: MERGE_JOURNAL_CORRUPT, the journal kept", async () => {
    const dir = fresh();
    const model = c.setup(dir);
    crashingMerge(c, model, 4);
    const journal = join(dir, ".model.onnx.vera-undo");
    const bytes = readFileSync(journal);
    const first = 16 + bytes.readUInt32LE(12) + 32 + 24 + 32; // the first entry's data
    bytes[first + 1]! ^= 0xff;
    writeFileSync(journal, bytes);
    const crashed = snapshot(dir);
    const e = await veraError(recoverMerge({ model }));
    expect(e.code).toBe(MergeErrorCode.MERGE_JOURNAL_CORRUPT);
    expect(e.path).toBe(journal);
    expect(snapshot(dir)).toEqual(crashed);
  });

  it("a journal cut short (a crash while it was written) is discarded: nothing had been overwritten yet", async () => {
    const dir = fresh();
    const model = c.setup(dir);
    const before = snapshot(dir);
    crashingMerge(c, model, 1); // killed before the first weight was merged: no range written
    const journal = join(dir, ".model.onnx.vera-undo");
    writeFileSync(journal, readFileSync(journal).subarray(0, 20)); // inside the header
    const r = await recoverMerge({ model });
    expect(r.restored.map((x) => x.ranges)).toEqual([0]);
    expect(snapshot(dir)).toEqual(before);
  });

  it("a journal naming a file outside the model's folder is refused, nothing written", async () => {
    const dir = fresh();
    const model = c.setup(dir);
    crashingMerge(c, model, 3);
    const journal = join(dir, ".model.onnx.vera-undo");
    const bytes = readFileSync(journal);
    const n = bytes.readUInt32LE(12);
    const header = JSON.parse(bytes.subarray(16, 16 + n).toString("utf8")) as { files: Array<{ path: string }> };
    header.files[0]!.path = "../" + header.files[0]!.path;
    const json = Buffer.from(JSON.stringify(header));
    const head = Buffer.alloc(16);
    bytes.copy(head, 0, 0, 16);
    head.writeUInt32LE(json.length, 12);
    const digest = createHash("sha256").update(json).digest();
    writeFileSync(journal, Buffer.concat([head, json, digest, bytes.subarray(16 + n + 32)]));
    const crashed = snapshot(dir);
    const e = await veraError(recoverMerge({ model }));
    expect(e.code).toBe(MergeErrorCode.MERGE_JOURNAL_CORRUPT);
    expect(e.message).toMatch(/leaves its folder/);
    expect(snapshot(dir)).toEqual(crashed);
  });

  it("vera recover rolls back from the command line; without a journal it says so", async () => {
    const dir = fresh();
    const model = c.setup(dir);
    const before = snapshot(dir);
    crashingMerge(c, model, 2);
    const run = await runCli(["merge", model, c.adapter, "--in-place", "--backend", "reference"]);
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/MERGE_INTERRUPTED|interrupted/);
    const r = await runCli(["recover", model]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/rolled back \(\d+ ranges?, \d+ bytes in 1 file\)/);
    expect(snapshot(dir)).toEqual(before);
    const again = await runCli(["recover", model, "--json"]);
    expect(JSON.parse(again.stdout)).toEqual({ ok: true, restored: [] });
    expect(existsSync(join(dir, ".model.onnx.vera-undo"))).toBe(false);
  });
});

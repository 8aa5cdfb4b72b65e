/**
 * Shared by the in-place and lock tests: the model cases (every container), a snapshot of a folder,
 * the expected in-place result, and merges run in a child process (the built library) that crash
 * (SIGKILL) or pause at a chosen weight.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { cpSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import type { ComputeBackend } from "../src/compute/backend.js";
import { createReferenceBackend } from "../src/compute/reference-backend.js";
import { mergeCheckpoint, mergeGguf, mergeOnnx, type MergeReport } from "../src/merge/index.js";

export const ROOT = resolve(__dirname, "..");
export const ONNX = join(ROOT, "fixtures", "onnx");
export const ST = join(ROOT, "fixtures", "safetensors", "llama-bf16");
export const GG = join(ROOT, "fixtures", "gguf");

/** relative path -> sha256 of every file under a folder (dot-files included). */
export function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!e.isFile()) continue;
    const p = join(e.parentPath, e.name);
    out[p.slice(dir.length + 1)] = createHash("sha256").update(readFileSync(p)).digest("hex");
  }
  return out;
}

export function failingBackend(failAt: number): ComputeBackend {
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

export interface Case {
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

export const cases: Case[] = [
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
export async function expected(c: Case, fresh: () => string): Promise<Record<string, string>> {
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
export function crashingMerge(c: Case, model: string, killAt: number, afterAWrite = false): number {
  const dir = statSync(model).isDirectory() ? model : dirname(model);
  const script = `
    import { createHash } from "node:crypto";
    import { readdirSync, readFileSync, statSync } from "node:fs";
    import { join } from "node:path";
    import { ${c.fn} } from ${JSON.stringify(join(ROOT, "dist", "merge", "node", "index.js"))};
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
  return r.pid!;
}

/** A merge running in a child process, paused at a weight until {@link PausedMerge.go}. */
export interface PausedMerge {
  child: ChildProcess;
  /** Resolves once the child has reached the weight it pauses at (its lock and journal exist). */
  ready: Promise<void>;
  /** Let the child go on. */
  go(): void;
  /** How the child ended, and what it printed to stderr. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>;
}

/**
 * Start `c.fn` on `model` with `options` in a child process (the built library) whose backend, when
 * asked for its `pauseAt`-th weight, signals that it is ready and waits for {@link PausedMerge.go}.
 * `signals` is a folder for the two signal files.
 */
export function pausedMerge(p: {
  c: Case;
  model: string;
  options: Record<string, unknown>;
  pauseAt: number;
  signals: string;
}): PausedMerge {
  const readyFile = join(p.signals, "ready");
  const goFile = join(p.signals, "go");
  const script = `
    import { existsSync, writeFileSync } from "node:fs";
    import { ${p.c.fn} } from ${JSON.stringify(join(ROOT, "dist", "merge", "node", "index.js"))};
    import { createReferenceBackend } from ${JSON.stringify(join(ROOT, "dist", "compute", "index.js"))};
    const ref = createReferenceBackend();
    let calls = 0;
    const backend = {
      name: "paused",
      async merge(t) {
        if (++calls === ${p.pauseAt}) {
          writeFileSync(${JSON.stringify(readyFile)}, String(process.pid));
          while (!existsSync(${JSON.stringify(goFile)})) await new Promise((r) => setTimeout(r, 10));
        }
        return ref.merge(t);
      },
    };
    await ${p.c.fn}({ model: ${JSON.stringify(p.model)}, adapter: ${JSON.stringify(p.c.adapter)}, backend, durable: false,
      ...${JSON.stringify({ ...(p.c.extra ?? {}), ...p.options })} });
  `;
  const child = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((res) =>
    child.on("exit", (code, signal) => res({ code, signal, stderr })),
  );
  const ready = (async () => {
    let done = false;
    void exited.then(() => (done = true));
    while (!existsSync(readyFile)) {
      if (done) throw new Error(`the merge ended before it paused: ${(await exited).stderr}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  })();
  return { child, ready, go: () => writeFileSync(goFile, ""), exited };
}

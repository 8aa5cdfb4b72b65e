/**
 * What a merge must never do: read or write outside the model's folder, leave half-written
 * output (or temporary files) after an error or cancellation, touch the input unless asked to,
 * or silently overflow a weight.
 */
import { createHash } from "node:crypto";
import {
  appendFileSync,
  existsSync,
  linkSync,
  statSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { ComputeBackend } from "../src/compute/backend.js";
import { createReferenceBackend } from "../src/compute/reference-backend.js";
import { createAdapter } from "../src/format/create.js";
import type { VeraAdapter } from "../src/format/types.js";
import { mergeOnnx, mergeOnnxIter, MergeErrorCode, type FileCopier, type MergeEvent } from "../src/merge/index.js";
import { f32Bytes, FIXTURES, modelProto, rng, type TensorSpec } from "./onnx-helpers.js";
import { veraError } from "./error-helpers.js";

const root = mkdtempSync(join(tmpdir(), "vera-merge-safety-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const fresh = (): string => {
  const d = join(root, `case-${n++}`);
  mkdirSync(d, { recursive: true });
  return d;
};

/** Snapshot of every file under a folder: relative path -> sha256. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string, rel: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(p, r);
      else out[r] = e.isSymbolicLink() ? `link` : createHash("sha256").update(readFileSync(p)).digest("hex");
    }
  };
  walk(dir, "");
  return out;
}

interface Synth {
  dir: string;
  model: string;
  adapter: VeraAdapter;
}

/**
 * A model of `count` MatMul weights `layers.i.proj.weight` (in, out) float32 (or float16 when
 * `f16`), stored in external data `w.bin` (or `location(i)`), and a random adapter for them.
 */
function synth(
  opts: {
    count?: number;
    inF?: number;
    outF?: number;
    location?: (i: number) => string;
    values?: (i: number) => Uint8Array;
    dataType?: number;
    dir?: string;
  } = {},
): Synth {
  const count = opts.count ?? 4;
  const inF = opts.inF ?? 16;
  const outF = opts.outF ?? 12;
  const dir = opts.dir ?? fresh();
  const r = rng(count * 31 + inF);
  const files = new Map<string, number[]>();
  const inits: TensorSpec[] = [];
  const nodes = [];
  const elem = opts.dataType === 10 ? 2 : 4;
  for (let i = 0; i < count; i++) {
    const loc = opts.location?.(i) ?? "w.bin";
    const data = opts.values?.(i) ?? f32Bytes(Array.from({ length: inF * outF }, () => r()));
    const buf = files.get(loc) ?? [];
    const offset = buf.length;
    buf.push(...data);
    files.set(loc, buf);
    inits.push({
      name: `layers.${i}.proj.weight`,
      dims: [inF, outF],
      dataType: opts.dataType ?? 1,
      external: [
        ["location", loc],
        ["offset", String(offset)],
        ["length", String(inF * outF * elem)],
      ],
    });
    nodes.push({
      opType: "MatMul",
      inputs: [i === 0 ? "x" : `h${i - 1}`, `layers.${i}.proj.weight`],
      outputs: [`h${i}`],
      name: `/layers.${i}/proj/MatMul`,
    });
  }
  for (const [loc, bytes] of files) {
    const p = join(dir, loc);
    if (!existsSync(p)) {
      mkdirSync(join(p, ".."), { recursive: true });
      writeFileSync(p, Uint8Array.from(bytes));
    }
  }
  const model = join(dir, "model.onnx");
  writeFileSync(
    model,
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
    rank: 4,
    seed: 3,
  });
  for (const m of adapter.modules) {
    m.lambdaB.forEach((_, i) => (m.lambdaB[i] = r() + 1.5));
    m.lambdaD.forEach((_, i) => (m.lambdaD[i] = r() + 1.5));
  }
  return { dir, model, adapter };
}

/** A backend that waits before each merge and can fail on the k-th call. */
function slowBackend(opts: { delayMs?: number; failAt?: number } = {}): ComputeBackend {
  const ref = createReferenceBackend();
  let calls = 0;
  return {
    name: "slow",
    async merge(tasks) {
      calls++;
      await new Promise((r) => setTimeout(r, opts.delayMs ?? 5));
      if (calls === opts.failAt) throw new Error("device lost");
      return ref.merge(tasks);
    },
  };
}

/** Bytes of one weight of {@link synth}'s default model (16 x 12 float32). */
const WEIGHT_BYTES = 16 * 12 * 4;

/**
 * A copier under the test's control: it copies the first `firstBytes` bytes at once, then waits
 * for `release()` before copying the rest (or, with `rewrite`, the whole file again from its start,
 * as a copy that is not really sequential would). Until the copy ends it reports `firstBytes` as
 * its progress.
 */
function gatedCopier(opts: { sequential: boolean; firstBytes: number; rewrite?: boolean }): FileCopier & {
  release: () => void;
} {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const done = new Set<string>();
  return {
    sequential: opts.sequential,
    release,
    async copy(source, dest) {
      const data = readFileSync(source);
      writeFileSync(dest, data.subarray(0, opts.firstBytes));
      await gate;
      if (opts.rewrite) writeFileSync(dest, data);
      else appendFileSync(dest, data.subarray(opts.firstBytes));
      done.add(dest);
    },
    progress: async (dest) => (done.has(dest) ? statSync(dest).size : existsSync(dest) ? opts.firstBytes : 0),
  };
}

/** A progress listener that calls `release` once `count` weights are merged and written (or held). */
function releaseAfter(count: number, release: () => void): (e: MergeEvent) => void {
  return (e) => {
    if (e.type === "progress" && e.tensorsDone === count) release();
  };
}

describe("external data paths are confined to the model's folder", () => {
  const outside = join(root, "outside");
  mkdirSync(outside, { recursive: true });
  writeFileSync(join(outside, "secret.bin"), new Uint8Array(16 * 12 * 4));

  const bad: Array<[string, (dir: string) => string]> = [
    ["parent directory", () => "../outside/secret.bin"],
    ["parent directory in the middle", () => "sub/../../outside/secret.bin"],
    ["absolute path", () => join(outside, "secret.bin")],
    ["Windows drive path", () => "C:\\outside\\secret.bin"],
    ["backslash parent", () => "..\\outside\\secret.bin"],
    [
      "symlink to a file outside",
      (dir) => {
        symlinkSync(join(outside, "secret.bin"), join(dir, "link.bin"));
        return "link.bin";
      },
    ],
    [
      "symlinked folder outside",
      (dir) => {
        symlinkSync(outside, join(dir, "sub"));
        return "sub/secret.bin";
      },
    ],
  ];
  for (const [what, setup] of bad) {
    it(`refuses ${what} (even for a dry run) and writes nothing`, async () => {
      const dir = fresh();
      // weight 0 is fine; weight 1 names the hostile location (its bytes would be read or copied)
      writeFileSync(join(dir, "ok.bin"), new Uint8Array(16 * 12 * 4));
      const loc = setup(dir);
      const s = synth({
        dir,
        count: 2,
        location: (i) => (i === 0 ? "ok.bin" : loc),
        values: () => new Uint8Array(16 * 12 * 4),
      });
      const before = snapshot(dir);
      const secret = snapshot(outside);
      const out = join(root, `out-${n}`);
      for (const dryRun of [true, false]) {
        const e = await veraError(
          mergeOnnx({ model: s.model, adapter: s.adapter, output: join(out, "m.onnx"), dryRun, durable: false }),
        );
        expect(e.code).toBe("IO_UNSAFE_PATH");
      }
      expect(snapshot(dir)).toEqual(before);
      expect(snapshot(outside)).toEqual(secret);
      expect(existsSync(out) ? readdirSync(out) : []).toEqual([]);
    });
  }

  it("accepts a symlink that stays inside the folder, and nested relative locations", async () => {
    const dir = fresh();
    mkdirSync(join(dir, "data"));
    symlinkSync(join(dir, "data", "b.bin"), join(dir, "alias.bin")); // synth writes through it
    const s0 = synth({ dir, count: 3, location: (i) => ["data/a.bin", "alias.bin", "./c.bin"][i]! });
    const out = fresh();
    const r = await mergeOnnx({ model: s0.model, adapter: s0.adapter, output: join(out, "m.onnx"), durable: false });
    expect(r.weights).toBe(3);
    expect(Object.keys(snapshot(out)).sort()).toEqual(["alias.bin", "c.bin", "data/a.bin", "m.onnx"]);
  });
});

describe("no two of the model's files are one file", () => {
  const aliases: Array<[string, (dir: string) => void]> = [
    ["a hard link", (dir) => (rmSync(join(dir, "b.bin")), linkSync(join(dir, "a.bin"), join(dir, "b.bin")))],
    ["a symlink", (dir) => (rmSync(join(dir, "b.bin")), symlinkSync("a.bin", join(dir, "b.bin")))],
  ];
  for (const [what, alias] of aliases)
    it(`two external data locations that are one file (${what}): refused for -o, --in-place and a dry run`, async () => {
      const s = synth({ count: 3, location: (i) => ["a.bin", "b.bin", "c.bin"][i]! });
      alias(s.dir);
      const before = snapshot(s.dir);
      const out = join(fresh(), "m.onnx");
      for (const p of [{ output: out }, { inPlace: true }, { dryRun: true }]) {
        const e = await veraError(mergeOnnx({ model: s.model, adapter: s.adapter, durable: false, ...p }));
        expect(e.code).toBe("IO_UNSAFE_PATH");
        expect(e.message).toMatch(/one file|the same file/);
      }
      expect(snapshot(s.dir)).toEqual(before);
      expect(existsSync(out)).toBe(false);
    });

  it("an external data location naming the .onnx itself: refused for -o and --in-place, the model intact", async () => {
    const s = synth({ count: 3, location: (i) => (i === 1 ? "model.onnx" : "w.bin") });
    const before = snapshot(s.dir);
    const out = join(fresh(), "m.onnx");
    for (const p of [{ output: out }, { inPlace: true }]) {
      const e = await veraError(mergeOnnx({ model: s.model, adapter: s.adapter, durable: false, ...p }));
      expect(e.code).toBe("IO_UNSAFE_PATH");
      expect(e.message).toContain("the model file model.onnx");
    }
    expect(snapshot(s.dir)).toEqual(before);
    expect(existsSync(out)).toBe(false);
  });
});

describe("nothing is left behind by a failed or cancelled merge", () => {
  it("cancellation (AbortSignal) mid-way: MERGE_ABORTED, input intact, no output, no temporary files", async () => {
    const s = synth({ count: 8 });
    const out = fresh();
    const before = snapshot(s.dir);
    const ac = new AbortController();
    let seen = 0;
    const e = await veraError(
      mergeOnnx({
        model: s.model,
        adapter: s.adapter,
        output: join(out, "m.onnx"),
        backend: slowBackend({ delayMs: 10 }),
        signal: ac.signal,
        onProgress: (ev) => {
          if (ev.type === "progress" && ev.tensorsDone >= 2 && seen++ === 0) ac.abort();
        },
      }),
    );
    expect(e.code).toBe(MergeErrorCode.MERGE_ABORTED);
    expect(snapshot(s.dir)).toEqual(before);
    expect(readdirSync(out)).toEqual([]);
  });

  it("a backend failure on the 3rd weight: the error surfaces, input intact, no output files", async () => {
    const s = synth({ count: 5 });
    const out = fresh();
    const before = snapshot(s.dir);
    await expect(
      mergeOnnx({
        model: s.model,
        adapter: s.adapter,
        output: join(out, "m.onnx"),
        backend: slowBackend({ failAt: 3 }),
      }),
    ).rejects.toThrow("device lost");
    expect(snapshot(s.dir)).toEqual(before);
    expect(readdirSync(out)).toEqual([]);
  });

  it("an in-place merge that fails leaves the model exactly as it was, with no temporary files", async () => {
    const s = synth({ count: 5 });
    const before = snapshot(s.dir);
    await expect(
      mergeOnnx({ model: s.model, adapter: s.adapter, inPlace: true, backend: slowBackend({ failAt: 4 }) }),
    ).rejects.toThrow("device lost");
    expect(snapshot(s.dir)).toEqual(before);
  });

  it("a consumer that stops iterating the progress events cancels and cleans up", async () => {
    const s = synth({ count: 6 });
    const out = fresh();
    const before = snapshot(s.dir);
    const it = mergeOnnxIter({
      model: s.model,
      adapter: s.adapter,
      output: join(out, "m.onnx"),
      backend: slowBackend({ delayMs: 10 }),
    });
    for await (const ev of it) if (ev.type === "progress" && ev.tensorsDone >= 1) break;
    expect(snapshot(s.dir)).toEqual(before);
    expect(readdirSync(out)).toEqual([]);
  });

  it("a merged value beyond float16's range is MERGE_OVERFLOW naming the module; nothing is written", async () => {
    const big = new Uint8Array(16 * 12 * 2);
    const dv = new DataView(big.buffer);
    for (let i = 0; i < 16 * 12; i++) dv.setUint16(i * 2, 0x7bff, true); // 65504, the largest finite float16
    const s = synth({ count: 2, dataType: 10, values: () => big });
    for (const m of s.adapter.modules) {
      m.lambdaB.fill(1000);
      m.lambdaD.fill(1000);
    }
    const out = fresh();
    const before = snapshot(s.dir);
    const e = await veraError(mergeOnnx({ model: s.model, adapter: s.adapter, output: join(out, "m.onnx") }));
    expect(e.code).toBe("MERGE_OVERFLOW");
    expect(e.path).toBe("layers.0.proj");
    expect(snapshot(s.dir)).toEqual(before);
    expect(readdirSync(out)).toEqual([]);
  });
});

describe("outputs", () => {
  it("in place: the model's files become exactly what a merge to another folder writes", async () => {
    const s = synth({ count: 3 });
    const out = fresh();
    await mergeOnnx({ model: s.model, adapter: s.adapter, output: join(out, "model.onnx") });
    const r = await mergeOnnx({ model: s.model, adapter: s.adapter, inPlace: true });
    expect(r.files.map((f) => f.split("/").pop())).toEqual(["w.bin"]); // the .onnx is unchanged: only data changes
    expect(snapshot(s.dir)).toEqual(snapshot(out));
  });

  it("in place with inline weights: the .onnx is replaced by the same bytes a merge to another folder writes", async () => {
    const dir = fresh();
    writeFileSync(join(dir, "model.onnx"), readFileSync(join(FIXTURES, "legacy-llama-fp16", "model.onnx")));
    const out = fresh();
    const adapter = join(FIXTURES, "adapters", "tiny-llama");
    await mergeOnnx({ model: join(dir, "model.onnx"), adapter, output: join(out, "model.onnx") });
    const before = snapshot(dir);
    const r = await mergeOnnx({ model: join(dir, "model.onnx"), adapter, inPlace: true });
    expect(r.files).toEqual([join(dir, "model.onnx")]);
    expect(snapshot(dir)).not.toEqual(before);
    expect(snapshot(dir)).toEqual(snapshot(out));
  });

  it("refuses to overwrite the input without in-place, and to put data files over the input's", async () => {
    const s = synth({ count: 2 });
    const before = snapshot(s.dir);
    let e = await veraError(mergeOnnx({ model: s.model, adapter: s.adapter, output: s.model }));
    expect(e.code).toBe(MergeErrorCode.MERGE_OUTPUT_CONFLICT);
    e = await veraError(mergeOnnx({ model: s.model, adapter: s.adapter, output: join(s.dir, "merged.onnx") }));
    expect(e.code).toBe(MergeErrorCode.MERGE_OUTPUT_CONFLICT);
    expect(e.message).toMatch(/another folder/);
    expect(snapshot(s.dir)).toEqual(before);
  });

  it("checks external ranges: beyond the file end, or overlapping another tensor", async () => {
    const s = synth({ count: 2 });
    writeFileSync(join(s.dir, "w.bin"), readFileSync(join(s.dir, "w.bin")).subarray(0, 16 * 12 * 4 + 10));
    expect((await veraError(mergeOnnx({ model: s.model, adapter: s.adapter, dryRun: true }))).code).toBe(
      MergeErrorCode.MERGE_DATA_RANGE,
    );
    const t = synth({ count: 2, location: () => "same.bin" });
    // rewrite the second tensor's offset to 8: it now overlaps the first
    const bytes = readFileSync(t.model);
    const patched = Buffer.from(bytes.toString("latin1").replace(`offset\x12\x03768`, `offset\x12\x03008`), "latin1");
    expect(patched.equals(bytes)).toBe(false);
    writeFileSync(t.model, patched);
    expect((await veraError(mergeOnnx({ model: t.model, adapter: t.adapter, dryRun: true }))).code).toBe(
      MergeErrorCode.MERGE_DATA_OVERLAP,
    );
  });

  it("merged tensors that outrun a sequential copy beyond the memory budget wait for it: same bytes, no scratch file", async () => {
    const s = synth({ count: 6 });
    const ref = fresh();
    await mergeOnnx({ model: s.model, adapter: s.adapter, output: join(ref, "model.onnx"), durable: false });
    // the copy stops after the first two tensors until two weights are merged: the third waits for it
    const copier = gatedCopier({ sequential: true, firstBytes: 2 * WEIGHT_BYTES });
    const out = fresh();
    const r = await mergeOnnx({
      model: s.model,
      adapter: s.adapter,
      output: join(out, "model.onnx"),
      memoryBudget: 0,
      durable: false,
      copier,
      onProgress: releaseAfter(2, copier.release),
    });
    expect(r.earlyWrittenBytes).toBe(2 * WEIGHT_BYTES);
    expect(r.spilledBytes).toBe(0);
    expect(snapshot(out)).toEqual(snapshot(ref));
    expect(readdirSync(out).sort()).toEqual(["model.onnx", "w.bin"]);
  });

  it("merged tensors behind a running copy are written once the copy has passed them, or held until it has: same bytes", async () => {
    const s = synth({ count: 6 });
    const ref = fresh();
    await mergeOnnx({ model: s.model, adapter: s.adapter, output: join(ref, "model.onnx"), durable: false });
    const copier = gatedCopier({ sequential: true, firstBytes: 3 * WEIGHT_BYTES + 5 });
    const out = fresh();
    const r = await mergeOnnx({
      model: s.model,
      adapter: s.adapter,
      output: join(out, "model.onnx"),
      memoryBudget: 1 << 20,
      durable: false,
      copier,
      onProgress: releaseAfter(6, copier.release),
    });
    expect(r.earlyWrittenBytes).toBe(3 * WEIGHT_BYTES);
    expect(r.spilledBytes).toBe(0);
    expect(snapshot(out)).toEqual(snapshot(ref));
  });

  it("a copier that is not sequential gets no early write: merged tensors are held or spilled until its end", async () => {
    const s = synth({ count: 4 });
    const ref = fresh();
    await mergeOnnx({ model: s.model, adapter: s.adapter, output: join(ref, "model.onnx"), durable: false });
    for (const memoryBudget of [0, 1 << 20]) {
      const copier = gatedCopier({ sequential: false, firstBytes: 4 * WEIGHT_BYTES });
      const out = fresh();
      const r = await mergeOnnx({
        model: s.model,
        adapter: s.adapter,
        output: join(out, "model.onnx"),
        memoryBudget,
        durable: false,
        copier,
        onProgress: releaseAfter(4, copier.release),
      });
      expect(r.earlyWrittenBytes).toBe(0);
      expect(r.spilledBytes).toBe(memoryBudget === 0 ? 4 * WEIGHT_BYTES : 0);
      expect(snapshot(out)).toEqual(snapshot(ref));
    }
  });

  it("a copy that rewrites bytes it had passed is MERGE_COPY_RACE: nothing is written, the input is intact", async () => {
    const s = synth({ count: 4 });
    const before = snapshot(s.dir);
    const copier = gatedCopier({ sequential: true, firstBytes: 2 * WEIGHT_BYTES, rewrite: true });
    const out = fresh();
    const e = await veraError(
      mergeOnnx({
        model: s.model,
        adapter: s.adapter,
        output: join(out, "model.onnx"),
        memoryBudget: 1 << 20,
        durable: false,
        copier,
        onProgress: releaseAfter(4, copier.release),
      }),
    );
    expect(e.code).toBe(MergeErrorCode.MERGE_COPY_RACE);
    expect(snapshot(s.dir)).toEqual(before);
    expect(readdirSync(out)).toEqual([]);
  });
});

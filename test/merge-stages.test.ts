/**
 * The merge stages that know no container, each on its own with fakes: the data-file plan (pure),
 * the compute stage (a recording backend), the data writer (a copier whose pace the test decides).
 * And the rule that keeps them reusable: none of them imports the ONNX code.
 */
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { ComputeBackend, MergeTask } from "../src/compute/backend.js";
import { createReferenceBackend } from "../src/compute/reference-backend.js";
import { isVeraError } from "../src/errors.js";
import { createAdapter } from "../src/format/create.js";
import { computeWeights } from "../src/merge/core/compute-weights.js";
import type { ContainerDataFile, ContainerWeight } from "../src/merge/core/container.js";
import { DataWriter } from "../src/merge/data-writer.js";
import type { FileCopier } from "../src/merge/file-copier.js";
import { OutputTransaction } from "../src/merge/output-transaction.js";
import { planDataFiles } from "../src/merge/core/plan-data-files.js";

const root = mkdtempSync(join(tmpdir(), "vera-merge-stages-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function weight(
  name: string,
  file: string | null,
  offset: number,
  byteLength: number,
  append = false,
): ContainerWeight {
  return {
    name,
    dtype: "F32",
    layout: "out_in",
    inFeatures: byteLength / 4,
    outFeatures: 1,
    byteLength,
    storage: file === null ? { kind: "inline" } : { kind: "data", file, offset },
    ...(append ? { append } : {}),
    modules: [{ module: name, inFeatures: byteLength / 4, outFeatures: 1, outStart: 0, outEnd: 1 }],
  };
}

function dataFile(key: string, size: number, tensors: Array<[string, number, number]>): ContainerDataFile {
  return {
    key,
    parts: [key],
    path: `/models/${key}`,
    size,
    label: key,
    tensors: tensors.map(([tensor, start, end]) => ({ tensor, start, end })),
  };
}

describe("planDataFiles", () => {
  it("orders inline weights first, then each file by offset; appended weights go past the end, aligned", () => {
    const b = dataFile("b.bin", 100, [
      ["b1", 0, 40],
      ["b0", 40, 80],
      ["x", 80, 100],
    ]);
    const a = dataFile("a.bin", 30, [["a0", 0, 30]]);
    const ws = [
      weight("b0", "b.bin", 40, 40),
      weight("in", null, 0, 8),
      weight("b1", "b.bin", 0, 40, true),
      weight("a0", "a.bin", 0, 30),
    ];
    const plan = planDataFiles({ files: [b, a], weights: ws });
    expect(plan.order.map((w) => w.name)).toEqual(["in", "a0", "b1", "b0"]);
    expect(plan.targets.get(ws[2]!)).toEqual({ kind: "data", file: "b.bin", offset: 128 });
    expect(plan.targets.get(ws[0]!)).toEqual({ kind: "data", file: "b.bin", offset: 40 });
    expect(plan.targets.get(ws[1]!)).toEqual({ kind: "inline" });
    expect(plan.appendedBytes).toBe(128 + 40 - 100);
    expect(plan.mergedBytes).toBe(40 + 8 + 40 + 30);
    expect(plan.files.map((f) => [f.file.key, f.merged.map((w) => w.name), f.outputSize])).toEqual([
      ["b.bin", ["b1", "b0"], 168],
      ["a.bin", ["a0"], 30],
    ]);
  });

  it("refuses a range beyond the file's end (MERGE_DATA_RANGE) and one overlapping another tensor (MERGE_DATA_OVERLAP)", () => {
    const f = dataFile("w.bin", 64, [
      ["t0", 0, 32],
      ["t1", 24, 64],
    ]);
    const codeOf = (ws: ContainerWeight[]): string | undefined => {
      try {
        planDataFiles({ files: [f], weights: ws });
      } catch (e) {
        if (isVeraError(e)) return e.code;
        throw e;
      }
      return undefined;
    };
    expect(codeOf([weight("t1", "w.bin", 40, 32)])).toBe("MERGE_DATA_RANGE");
    expect(codeOf([weight("t0", "w.bin", 0, 32)])).toBe("MERGE_DATA_OVERLAP");
    expect(codeOf([weight("t1", "w.bin", 32, 32)])).toBeUndefined();
  });
});

describe("computeWeights", () => {
  it("merges in order, reads the next weight while one is merged, hands each on with its max |delta|", async () => {
    const adapter = createAdapter({
      modules: [
        { name: "m0", inFeatures: 4, outFeatures: 1 },
        { name: "m1", inFeatures: 4, outFeatures: 1 },
      ],
      rank: 2,
      seed: 1,
    });
    for (const m of adapter.modules) m.lambdaB.fill(1);
    const ws = [weight("m0", null, 0, 16), weight("m1", null, 0, 16)];
    const log: string[] = [];
    const ref = createReferenceBackend();
    const backend: ComputeBackend = {
      name: "recording",
      async merge(tasks: MergeTask[]) {
        log.push(`merge ${tasks.map((t) => t.name).join()}`);
        return ref.merge(tasks);
      },
    };
    const merged: Array<[string, number[], number]> = [];
    await computeWeights({
      adapter,
      order: ws,
      backend,
      read: async (w) => {
        log.push(`read ${w.name}`);
        return new Uint8Array(w.byteLength);
      },
      merged: async (w, values, deltas) => {
        log.push(`merged ${w.name}`);
        merged.push([w.name, [...new Float32Array(values.buffer)], deltas.get(w.name)!]);
      },
    });
    expect(log).toEqual(["read m0", "read m1", "merge m0", "merged m0", "merge m1", "merged m1"]);
    for (const [, values, maxAbs] of merged) {
      expect(values.some((v) => v !== 0)).toBe(true);
      expect(maxAbs).toBe(Math.max(...values.map(Math.abs)));
    }
  });

  it("stops when `check` throws, before anything else is merged", async () => {
    const adapter = createAdapter({ modules: [{ name: "m0", inFeatures: 4, outFeatures: 1 }], rank: 2, seed: 1 });
    let calls = 0;
    await expect(
      computeWeights({
        adapter,
        order: [weight("m0", null, 0, 16)],
        backend: {
          name: "never",
          merge: async () => {
            calls++;
            return [];
          },
        },
        read: async (w) => new Uint8Array(w.byteLength),
        merged: async () => {},
        check: () => {
          throw new Error("stopped");
        },
      }),
    ).rejects.toThrow("stopped");
    expect(calls).toBe(0);
  });
});

describe("DataWriter", () => {
  /** A copier that copies `firstBytes`, then waits for `release()`; it reports `firstBytes` until it is done. */
  function gated(firstBytes: number): FileCopier & { release: () => void } {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const done = new Set<string>();
    return {
      sequential: true,
      release,
      async copy(source, dest) {
        const data = readFileSync(source);
        writeFileSync(dest, data.subarray(0, firstBytes));
        await gate;
        writeFileSync(dest, data.subarray(firstBytes), { flag: "a" });
        done.add(dest);
      },
      progress: async (dest) => (done.has(dest) ? statSync(dest).size : existsSync(dest) ? firstBytes : 0),
    };
  }

  /** A 64-byte input file, a gated copy of it (16 bytes, then the rest on release) and a writer with an 8-byte budget. */
  function writerCase(name: string, whenAhead?: "wait" | "spill") {
    const dir = join(root, name);
    mkdirSync(dir);
    const source = join(dir, "in.bin");
    const input = Uint8Array.from({ length: 64 }, (_, i) => i);
    writeFileSync(source, input);
    const dest = join(dir, "out.bin");
    const copier = gated(16);
    const tx = new OutputTransaction();
    const writer = new DataWriter({
      files: [{ key: "f", source, dest, size: 64 }],
      tx,
      copier,
      memoryBudget: 8,
      durable: false,
      check: () => {},
      aborted: () => new Error("aborted"),
      pollMs: 1,
      ...(whenAhead ? { whenAhead } : {}),
    });
    /** After the copy: the output is the input with these ranges filled. */
    const check = async (fills: Array<[number, number]>): Promise<void> => {
      await writer.finish();
      await tx.commit();
      const expected = input.slice();
      for (const [v, at] of fills) expected.fill(v, at, at + 8);
      expect([...readFileSync(dest)]).toEqual([...expected]);
      expect(readdirSync(dir).sort()).toEqual(["in.bin", "out.bin"]); // no scratch or temporary file left
    };
    return { copier, writer, check };
  }

  it("with a sequential copy, a weight beyond the budget waits for the copy to pass it (no scratch file)", async () => {
    const { copier, writer, check } = writerCase("writer-wait");
    await writer.write("f", 24, new Uint8Array(8).fill(201)); // held in memory (fits the budget of 8)
    let done = false;
    const waiting = writer.write("f", 40, new Uint8Array(8).fill(202)).then(() => (done = true));
    await new Promise((r) => setTimeout(r, 20));
    expect(done).toBe(false); // beyond the budget: waits for the copy
    copier.release();
    await waiting;
    expect(writer.spilledBytes).toBe(0);
    await check([
      [201, 24],
      [202, 40],
    ]);
  });

  it("writes early behind the copy, holds within the budget, spills beyond it; the copy gets every byte right", async () => {
    const { copier, writer, check } = writerCase("writer", "spill");
    await writer.write("f", 0, new Uint8Array(8).fill(200)); // the copy has passed it: written now
    await writer.write("f", 24, new Uint8Array(8).fill(201)); // held in memory (fits the budget of 8)
    await writer.write("f", 40, new Uint8Array(8).fill(202)); // beyond the budget: scratch file
    expect(writer.earlyWrittenBytes).toBe(8);
    expect(writer.spilledBytes).toBe(8);
    copier.release();
    await check([
      [200, 0],
      [201, 24],
      [202, 40],
    ]);
  });
});

describe("layering", () => {
  const src = join(__dirname, "..", "src");
  /** Every file under src/ that `file` imports, directly or not (relative imports only). */
  function importsOf(file: string, seen = new Set<string>()): Set<string> {
    const text = readFileSync(file, "utf8");
    for (const m of text.matchAll(/(?:import|export)[^"']*?from\s+["'](\.[^"']+)["']/g)) {
      const target = join(file, "..", m[1]!).replace(/\.js$/, ".ts");
      if (seen.has(target) || !existsSync(target)) continue;
      seen.add(target);
      importsOf(target, seen);
    }
    return seen;
  }
  const rel = (p: string): string => p.slice(src.length + 1);
  /** The code tables are leaves every layer may import (test/layers.test.ts). */
  const isCodeTable = (p: string): boolean => p.endsWith("/error-codes.ts");

  it("the stages that know no container never reach the ONNX code", () => {
    const onnxSide = new Set([
      "merge-onnx.ts",
      "merge-model.ts",
      "onnx-source.ts",
      "core/onnx-container.ts",
      "core/onnx-carried.ts",
      "core/file-access-data.ts",
      "core/merge-model-files.ts",
      "core/open-onnx-files.ts",
      "core/index.ts",
      "index.ts",
    ]);
    const stages = ["", "core/"]
      .flatMap((d) => readdirSync(join(src, "merge", d)).map((f) => d + f))
      .filter((f) => f.endsWith(".ts") && !onnxSide.has(f));
    expect(stages).toContain("data-writer.ts");
    expect(stages).toContain("core/compute-weights.ts");
    for (const f of stages) {
      const reached = [...importsOf(join(src, "merge", f))]
        .map(rel)
        .filter((p) => p.startsWith("onnx/") && !isCodeTable(p));
      expect({ stage: f, reached }).toEqual({ stage: f, reached: [] });
    }
  });

  it("the ONNX code never imports the compute backends", () => {
    for (const f of readdirSync(join(src, "onnx")).filter((x) => x.endsWith(".ts"))) {
      const reached = [...importsOf(join(src, "onnx", f))]
        .map(rel)
        .filter((p) => p.startsWith("compute/") && !isCodeTable(p));
      expect({ file: f, reached }).toEqual({ file: f, reached: [] });
    }
  });
});

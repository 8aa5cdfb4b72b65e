/**
 * A weight stored with its output rows in another order than the adapter's (llama.cpp's permuted q/k rows in a
 * GGUF): buildMergeTasks puts B's and lambda_b's rows in the stored order instead of moving the weight's bytes. The
 * merged bytes must be those of the old way (weight rows put in the adapter's order, merged, put back), for the
 * reference backend and for onnxruntime (many row blocks per weight, so rows land in different blocks).
 */
import { afterAll, describe, expect, it } from "vitest";
import type { ComputeBackend } from "../src/compute/backend.js";
import { buildMergeTasks, type MergeTaskWeight, type RowOrder } from "../src/compute/merge-tasks.js";
import { createOrtBackend } from "../src/compute/node/ort-backend.js";
import { createReferenceBackend } from "../src/compute/reference-backend.js";
import type { WeightDtype } from "../src/dtypes.js";
import type { VeraModule } from "../src/format/types.js";
import { permuteQkRows } from "../src/gguf/permute-qk.js";

const OUT = 48;
const IN = 40;
const R = 8;
const HEADS = 4;

let s = 7;
const rnd = (): number => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32 - 0.5) * 2;
const f32 = (n: number, scale: number): Float32Array => Float32Array.from({ length: n }, () => rnd() * scale);

/** A stored weight's bytes: 16-bit patterns of small values, or float32. */
function storedWeight(dtype: WeightDtype): Uint8Array {
  if (dtype === "F32") return new Uint8Array(f32(OUT * IN, 0.5).buffer);
  const u = new Uint16Array(OUT * IN);
  for (let i = 0; i < u.length; i++) u[i] = (dtype === "F16" ? 0x3000 : 0x3e00) + ((i * 2654435761) >>> 24);
  return new Uint8Array(u.buffer);
}

/** Rows of `bytes` (OUT rows) moved by permuteQkRows (to the stored order) or back. */
function moveRows(bytes: Uint8Array, toStored: boolean): Uint8Array {
  const rowBytes = bytes.length / OUT;
  const index = Float32Array.from({ length: OUT }, (_, i) => i);
  const order = permuteQkRows({ data: index, rows: OUT, rowLength: 1, nHead: HEADS }); // stored row i = adapter row order[i]
  const out = new Uint8Array(bytes.length);
  for (let i = 0; i < OUT; i++) {
    const [to, from] = toStored ? [i, order[i]!] : [order[i]!, i];
    out.set(bytes.subarray(from * rowBytes, (from + 1) * rowBytes), to * rowBytes);
  }
  return out;
}

const a = f32(R * IN, 1);
const b = f32(OUT * R, 1);
const mod: VeraModule = {
  name: "q",
  inFeatures: IN,
  outFeatures: OUT,
  layout: "linear",
  lambdaD: f32(R, 1),
  lambdaB: f32(OUT, 0.5),
};
const modules = new Map([["q", mod]]);
const sliceFor = (): { a: Float32Array; b: Float32Array } => ({ a, b });
const order: RowOrder = (data, rowLength) =>
  permuteQkRows({ data, rows: data.length / rowLength, rowLength, nHead: HEADS });

function weightOf(dtype: WeightDtype, rowOrder?: RowOrder): MergeTaskWeight {
  return {
    dtype,
    layout: "out_in",
    inFeatures: IN,
    outFeatures: OUT,
    modules: [{ module: "q", inFeatures: IN, outFeatures: OUT, outStart: 0, outEnd: OUT }],
    ...(rowOrder ? { rowOrder } : {}),
  };
}

async function mergeWith(backend: ComputeBackend, dtype: WeightDtype, values: Uint8Array, rowOrder?: RowOrder) {
  const { tasks, finish } = buildMergeTasks({ weight: weightOf(dtype, rowOrder), values, modules, rank: R, sliceFor });
  const [r] = await backend.merge(tasks);
  finish();
  return r!.maxAbsDelta;
}

const backends: Array<[string, () => Promise<ComputeBackend>]> = [
  ["reference", async () => createReferenceBackend()],
  ["ort-cpu, many row blocks", () => createOrtBackend({ blockBytes: 4 * IN * 5 })],
];
const made: ComputeBackend[] = [];
afterAll(async () => {
  for (const be of made) await be.dispose?.();
});

describe.each(backends)("row order of a stored weight: %s", (_, make) => {
  it.each(["F32", "F16", "BF16"] as const)(
    "%s: the same bytes and max |delta| as merging the rows moved back",
    async (dtype) => {
      const be = await make();
      made.push(be);
      const stored = storedWeight(dtype);
      // the old way: weight rows to the adapter's order, merged, moved back to the stored order
      const moved = moveRows(stored, false);
      const oldMax = await mergeWith(be, dtype, moved);
      const want = moveRows(moved, true);
      // the new way: the weight's bytes as stored, the adapter's rows in the stored order
      const got = stored.slice();
      const newMax = await mergeWith(be, dtype, got, order);
      expect(Buffer.from(got).equals(Buffer.from(want))).toBe(true);
      expect(Buffer.from(got).equals(Buffer.from(stored))).toBe(false); // something was merged
      expect(newMax).toBe(oldMax);
    },
  );
});

describe("buildMergeTasks with a row order", () => {
  it("refuses a weight that is not one whole (out, in) module", () => {
    const w = { ...weightOf("F32", order), layout: "in_out" as const };
    expect(() => buildMergeTasks({ weight: w, values: storedWeight("F32"), modules, rank: R, sliceFor })).toThrow(
      /row order/,
    );
  });

  it("puts B and lambda_b in the stored order, once per (order, B)", () => {
    const values = storedWeight("F32");
    const t1 = buildMergeTasks({ weight: weightOf("F32", order), values, modules, rank: R, sliceFor }).tasks[0]!;
    const t2 = buildMergeTasks({ weight: weightOf("F32", order), values, modules, rank: R, sliceFor }).tasks[0]!;
    expect(t1.b).toEqual(order(b, R));
    expect(t1.lambdaB).toEqual(order(mod.lambdaB, 1));
    expect(t2.b).toBe(t1.b);
    expect(t1.weight).toBe(values); // the weight's bytes go to the backend as stored
  });
});

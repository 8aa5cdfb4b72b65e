import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ComputeBackend } from "../src/compute/backend.js";
import { createOrtBackend } from "../src/compute/node/ort-backend.js";
import { isVeraError } from "../src/errors.js";
import { checkMerge } from "../src/compute/check-merge.js";
import { DTYPE_MAX, DTYPE_OVERFLOW_THRESHOLD } from "../src/compute/round-to-dtype.js";
import { DTYPES, LAYOUTS, randomTask } from "./compute-helpers.js";
import { expectMatchesReference, expectOverflowLeavesWeight } from "./compute-conformance.js";

describe("ort-cpu backend", { timeout: 60_000 }, () => {
  let be: ComputeBackend;
  let small: ComputeBackend;
  beforeAll(async () => {
    be = await createOrtBackend({});
    small = await createOrtBackend({ blockBytes: 4096 }); // many row blocks per weight
  });
  afterAll(async () => {
    await be.dispose?.();
    await small.dispose?.();
  });
  for (const dtype of DTYPES)
    for (const layout of LAYOUTS) {
      it(`matches the reference: ${dtype} ${layout}`, async () => {
        await expectMatchesReference(be, dtype, layout, 10);
        await expectMatchesReference(small, dtype, layout, 20);
      });
      it(`overflow: MERGE_OVERFLOW, weight unchanged: ${dtype} ${layout}`, async () => {
        await expectOverflowLeavesWeight(small, dtype, layout);
      });
    }
  it("merges a weight at the dtype's largest value that does not overflow (checked-copy path)", async () => {
    for (const dtype of DTYPES) {
      const halfUlp = DTYPE_OVERFLOW_THRESHOLD[dtype] - DTYPE_MAX[dtype];
      const t = randomTask({ out: 6, inF: 7, rank: 3, dtype, layout: "out_in", seed: 7 });
      t.a.fill(1);
      t.b.fill(1);
      t.lambdaD.fill(1);
      t.lambdaB.fill(-halfUlp); // delta = -3 half-ulps of the top binade: the bound cannot exclude overflow, none happens
      const dv = new DataView(t.weight.buffer, t.weight.byteOffset);
      if (dtype === "F32") dv.setFloat32(0, DTYPE_MAX.F32, true);
      else dv.setUint16(0, dtype === "F16" ? 0x7bff : 0x7f7f, true);
      const orig = t.weight.slice();
      await small.merge([t]);
      expect(checkMerge({ task: t, original: orig }).mismatches).toEqual([]);
      expect(t.weight).not.toEqual(orig);
    }
  });
  it("keeps working when sessions are evicted (fresh A per task, maxSessions 1)", async () => {
    const lru = await createOrtBackend({ maxSessions: 1 });
    try {
      for (let seed = 0; seed < 4; seed++) {
        const t = randomTask({
          out: 12,
          inF: 10 + (seed % 2),
          rank: 3,
          dtype: DTYPES[seed % 3]!,
          layout: "out_in",
          seed,
        });
        const orig = t.weight.slice();
        await lru.merge([t]);
        expect(checkMerge({ task: t, original: orig }).ok).toBe(true);
      }
    } finally {
      await lru.dispose?.();
    }
  });
  it("merges started together on one backend run one after the other (the 16-bit staging memory is shared)", async () => {
    // many row blocks each, so the runs would interleave at every await if they were not queued
    const tasks = (["F16", "BF16", "F16", "F32"] as const).map((dtype, i) =>
      randomTask({ out: 33, inF: 65, rank: 5, dtype, layout: i % 2 ? "in_out" : "out_in", seed: 40 + i }),
    );
    const originals = tasks.map((t) => t.weight.slice());
    await Promise.all(tasks.map((t) => small.merge([t])));
    tasks.forEach((t, i) => expect(checkMerge({ task: t, original: originals[i]! }).mismatches).toEqual([]));
  });
  it("says which backend ran", () => {
    expect(be.name).toBe("ort-cpu");
    expect(be.info?.device).toMatch(/cpu, \d+ threads?/);
  });
  it("a missing CUDA provider is COMPUTE_UNAVAILABLE with a reason, not a crash", async () => {
    const e = await createOrtBackend({ executionProvider: "cuda" }).then(
      async (b) => {
        await b.dispose?.();
        return undefined;
      },
      (x: unknown) => x,
    );
    if (e === undefined) return; // a machine with the CUDA provider installed
    expect(isVeraError(e) && e.code).toBe("COMPUTE_UNAVAILABLE");
    expect((e as Error).message).toMatch(/cuda/i);
  });
});

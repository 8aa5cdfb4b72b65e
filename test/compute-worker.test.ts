/**
 * The onnxruntime CPU backend on a worker thread (createWorkerBackend) against the same backend on the calling thread:
 * the same bytes for every dtype and layout (weights in a SharedArrayBuffer or not, fused and row-ordered weights of
 * the golden fixtures), the same MERGE_OVERFLOW, the worker ended by dispose (a process exits), and the fallback to
 * the calling thread when the worker's script is missing. Uses the built worker script (build first).
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ComputeBackend, MergeTask } from "../src/compute/backend.js";
import { createNodeBackend } from "../src/compute/node/create-node-backend.js";
import { createOrtBackend } from "../src/compute/node/ort-backend.js";
import { createWorkerBackend, locateMergeWorker } from "../src/compute/node/worker-backend.js";
import { isVeraError } from "../src/errors.js";
import * as api from "../src/merge/index.js";
import { cloneTask, DTYPES, LAYOUTS, randomTask } from "./compute-helpers.js";
import { expectOverflowLeavesWeight } from "./compute-conformance.js";
// @ts-expect-error: a plain JavaScript module shared with the fixture's generator
import { goldenCases, runCase } from "../fixtures/merge-golden/cases.mjs";

const workerFile = join(__dirname, "../dist/compute/node/merge-worker.js");
const work = mkdtempSync(join(tmpdir(), "vera-worker-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** The task with its weight in a SharedArrayBuffer (at an offset, as a reader's pooled buffer may be). */
function sharedCopy(t: MergeTask): MergeTask {
  const buf = new Uint8Array(new SharedArrayBuffer(t.weight.byteLength + 16));
  const weight = buf.subarray(8, 8 + t.weight.byteLength);
  weight.set(t.weight);
  return { ...t, weight };
}

describe("ort-cpu on a worker thread", { timeout: 120_000 }, () => {
  let here: ComputeBackend;
  let worker: ComputeBackend;
  beforeAll(async () => {
    here = await createOrtBackend({ blockBytes: 4096, spinning: false });
    worker = await createWorkerBackend({ workerFile, blockBytes: 4096, spinning: false });
  });
  afterAll(async () => {
    await here.dispose?.();
    await worker.dispose?.();
  });

  it("is the built script that the build's own code finds", () => {
    expect(existsSync(workerFile)).toBe(true);
    expect(locateMergeWorker()).toBeUndefined(); // from sources there is no built script next to this code
    expect(worker.name).toBe("ort-cpu");
    expect(worker.sharedBuffers).toBe(true);
    expect(worker.info?.device).toMatch(/cpu, \d+ threads? .*worker thread/);
  });

  for (const dtype of DTYPES)
    for (const layout of LAYOUTS) {
      it(`the same bytes and max |delta| as on the calling thread: ${dtype} ${layout}`, async () => {
        const tasks = [0, 1, 2].map((seed) =>
          randomTask({ out: 37, inF: 29 + seed, rank: 5, dtype, layout, seed: 100 + seed }),
        );
        const mine = tasks.map(cloneTask);
        const plain = tasks.map(cloneTask);
        const shared = tasks.map(sharedCopy);
        const want = await here.merge(mine);
        expect(await worker.merge(plain)).toEqual(want);
        expect(await worker.merge(shared)).toEqual(want);
        mine.forEach((t, i) => {
          expect(Buffer.from(plain[i]!.weight).equals(Buffer.from(t.weight))).toBe(true);
          expect(Buffer.from(shared[i]!.weight).equals(Buffer.from(t.weight))).toBe(true);
        });
      });
      it(`overflow: the same MERGE_OVERFLOW (code, message, details), weight unchanged: ${dtype} ${layout}`, async () => {
        await expectOverflowLeavesWeight(worker, dtype, layout);
        const errs = await Promise.all(
          [here, worker].map(async (be) => {
            const t = randomTask({ out: 8, inF: 9, rank: 2, dtype, layout, seed: 3 });
            t.lambdaB.fill(dtype === "F16" ? 1e6 : 1e38);
            t.lambdaD.fill(1e38);
            return be.merge([t]).then(
              () => undefined,
              (e: unknown) => e,
            );
          }),
        );
        expect(isVeraError(errs[1])).toBe(true);
        expect(JSON.parse(JSON.stringify(errs[1]))).toEqual(JSON.parse(JSON.stringify(errs[0])));
        expect((errs[1] as Error).message).toBe((errs[0] as Error).message);
      });
    }

  it("a bad task is the same typed error (COMPUTE_TASK_INVALID)", async () => {
    const t = randomTask({ out: 8, inF: 9, rank: 2, dtype: "F32", layout: "out_in", seed: 3 });
    t.lambdaB = new Float32Array(3);
    const e = await worker.merge([t]).catch((x: unknown) => x);
    expect(isVeraError(e) && e.code).toBe("COMPUTE_TASK_INVALID");
  });

  const digest = (dir: string): Record<string, string> =>
    Object.fromEntries(
      readdirSync(dir, { recursive: true })
        .map(String)
        .filter((f) => statSync(join(dir, f)).isFile())
        .map((f) => [
          f,
          createHash("sha256")
            .update(readFileSync(join(dir, f)))
            .digest("hex"),
        ]),
    );
  for (const c of goldenCases() as Array<{ name: string }>)
    it(`merges the golden fixture ${c.name} to the same files, into new files and in place`, async () => {
      const got = [];
      const started: ComputeBackend[] = [];
      const keep = (be: ComputeBackend): ComputeBackend => (started.push(be), be);
      try {
        for (const backend of [
          async () => keep(await createOrtBackend({ spinning: false })),
          async () => keep(await createWorkerBackend({ workerFile, spinning: false })),
        ]) {
          const dir = mkdtempSync(join(work, "g-"));
          got.push(await runCase({ api, backend, c, work: dir }));
          got.push(digest(dir));
        }
      } finally {
        for (const be of started) await be.dispose?.();
      }
      expect(started.map((b) => b.sharedBuffers === true)).toEqual([false, false, true, true]);
      expect(got[2]).toEqual(got[0]);
      expect(got[3]).toEqual(got[1]);
    });
});

describe("the worker's life", { timeout: 120_000 }, () => {
  it("a process that merges on the worker and disposes it exits by itself", () => {
    const code = `
      import { createNodeBackend } from ${JSON.stringify(join(__dirname, "../dist/node/index.js"))};
      const be = await createNodeBackend({ name: "ort-cpu", worker: true });
      const w = new Uint8Array(new SharedArrayBuffer(4 * 6 * 5));
      const r = await be.merge([{ name: "m", dtype: "F32", layout: "out_in", outFeatures: 6, inFeatures: 5, rank: 2,
        weight: w, a: new Float32Array(10).fill(1), b: new Float32Array(12).fill(1),
        lambdaD: new Float32Array(2).fill(1), lambdaB: new Float32Array(6).fill(0.5) }]);
      console.log(be.info.device, be.info.warnings ?? [], r[0].maxAbsDelta, new Float32Array(w.buffer)[0]);
      await be.dispose();
    `;
    const script = join(work, "merge-once.mjs");
    writeFileSync(script, code);
    const r = spawnSync(process.execPath, [script], { encoding: "utf8", timeout: 60_000 });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/worker threads? \[\] 1 1\n$/);
  });

  it("from sources (no built script) ort-cpu runs on the calling thread and says why in info.warnings", async () => {
    const be = await createNodeBackend({ name: "ort-cpu", worker: true });
    try {
      expect(be.info?.device).not.toMatch(/worker/);
      expect(be.info?.warnings?.[0]).toMatch(/merge worker thread cannot start.*merging on the main thread instead/);
      const c = (goldenCases() as Array<{ name: string; model: string; adapter: string }>).find(
        (x) => x.name === "safetensors/llama-bf16",
      )!;
      const report = await api.mergeCheckpoint({
        model: c.model,
        adapter: c.adapter,
        output: join(mkdtempSync(join(work, "w-")), "model"),
        durable: false,
        backend: be,
      });
      expect(report.warnings).toContain(be.info!.warnings![0]);
    } finally {
      await be.dispose?.();
    }
  });

  it("a missing script is COMPUTE_UNAVAILABLE", async () => {
    const e = await createWorkerBackend({ workerFile: join(work, "none.js") }).catch((x: unknown) => x);
    expect(isVeraError(e) && e.code).toBe("COMPUTE_UNAVAILABLE");
  });
});

/**
 * The model lock: a running in-place merge (a child process paused at a weight) holds its model;
 * a second in-place merge, a merge into new files, a dry run and a recovery are refused with
 * MERGE_BUSY (never told to recover), and the first merge then ends fully merged. A merge into new
 * files holds a shared lock that keeps in-place merges out, not other readers. A lock whose owner is
 * gone (another pid, or the same pid started at another time) is taken over.
 */
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, readdirSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { describe, expect, it } from "vitest";
import { mergeOnnx, MergeErrorCode, recoverMerge } from "../src/merge/index.js";
import { lockModel, type ModelLock } from "../src/merge/model-lock.js";
import { currentProcess } from "../src/node/process-alive.js";
import { veraError } from "./error-helpers.js";
import { cases, expected, pausedMerge, snapshot } from "./in-place-helpers.js";
import { useTempDirs } from "./temp-helpers.js";

const fresh = useTempDirs("vera-lock-");

/** The folder and head file name of a case's model (a split GGUF's lock lies beside its first part). */
function lockOf(model: string): string {
  const dir = existsSync(join(model, "model.safetensors.index.json")) ? model : dirname(model);
  const lock = readdirSync(dir).find((f) => f.endsWith(".vera-lock"));
  return lock === undefined ? "" : join(dir, lock);
}

describe.each(cases)("a running in-place merge: $name", (c) => {
  it("refuses a second in-place merge, a -o merge, a dry run and recover (MERGE_BUSY); then ends fully merged", async () => {
    const want = await expected(c, fresh);
    const dir = fresh();
    const model = c.setup(dir);
    const run = pausedMerge({ c, model, options: { inPlace: true }, pauseAt: 2, signals: fresh() });
    try {
      await run.ready;
      const lock = lockOf(model);
      expect(lock).not.toBe("");
      for (const p of [{ inPlace: true }, { output: c.outputIn(fresh()) }, { dryRun: true }]) {
        const e = await veraError(c.merge({ model, adapter: c.adapter, durable: false, ...p }));
        expect(e.code).toBe(MergeErrorCode.MERGE_BUSY);
        expect(e.message).toContain(`process ${run.child.pid} `);
        expect(e.message).toContain(lock);
        expect(e.message).not.toMatch(/recover /);
      }
      const e = await veraError(recoverMerge({ model }));
      expect(e.code).toBe(MergeErrorCode.MERGE_BUSY);
    } finally {
      run.go();
    }
    const end = await run.exited;
    expect(end.stderr).toBe("");
    expect(end.code).toBe(0);
    expect(snapshot(dir)).toEqual(want); // no journal, no lock, nothing else left
  });
});

describe("the shared lock of a merge into new files", () => {
  const c = cases[0]!;

  it("keeps in-place merges out while it reads the model, not other merges into new files", async () => {
    const dir = fresh();
    const model = c.setup(dir);
    const before = snapshot(dir);
    const out = fresh();
    const run = pausedMerge({ c, model, options: { output: c.outputIn(out) }, pauseAt: 2, signals: fresh() });
    try {
      await run.ready;
      const readers = readdirSync(dir).filter((f) => f.startsWith(".model.onnx.vera-read-"));
      expect(readers).toHaveLength(1);
      const e = await veraError(c.merge({ model, adapter: c.adapter, inPlace: true, durable: false }));
      expect(e.code).toBe(MergeErrorCode.MERGE_BUSY);
      expect(e.message).toContain(join(dir, readers[0]!));
      expect(e.message).toMatch(/reading it for a merge into new files/);
      await c.merge({ model, adapter: c.adapter, output: c.outputIn(fresh()), durable: false });
      expect(snapshot(dir)).toEqual({ ...before, [readers[0]!]: expect.any(String) });
    } finally {
      run.go();
    }
    expect((await run.exited).code).toBe(0);
    expect(snapshot(dir)).toEqual(before);
  });
});

describe("a model in a folder this process cannot write to", () => {
  // root writes anywhere: only an ordinary user sees the folder as read-only
  it.skipIf(process.getuid?.() === 0)(
    "merges into new files without a reader file; in place is an I/O error",
    async () => {
      const c = cases[0]!;
      const dir = fresh();
      const model = c.setup(dir);
      const before = snapshot(dir);
      chmodSync(dir, 0o555);
      try {
        await c.merge({ model, adapter: c.adapter, output: c.outputIn(fresh()), durable: false });
        const e = await veraError(c.merge({ model, adapter: c.adapter, inPlace: true, durable: false }));
        expect(e.code).toBe("IO_ERROR");
      } finally {
        chmodSync(dir, 0o755);
      }
      expect(snapshot(dir)).toEqual(before);
    },
  );
});

describe("stale locks", () => {
  const c = cases[0]!;
  const owner = (o: Partial<ReturnType<typeof currentProcess>>) =>
    JSON.stringify({
      ...currentProcess(),
      nonce: randomBytes(8).toString("hex"),
      mode: "exclusive",
      since: new Date().toISOString(),
      ...o,
    });

  it("a lock whose owner is gone is taken over; one whose owner runs is MERGE_BUSY", async () => {
    const dir = fresh();
    const model = c.setup(dir);
    const lock = join(dir, ".model.onnx.vera-lock");
    writeFileSync(lock, owner({ pid: 2 ** 22 + 12345 })); // above Linux's pid_max: no such process
    await mergeOnnx({ model, adapter: c.adapter, inPlace: true, durable: false });
    expect(existsSync(lock)).toBe(false);

    writeFileSync(lock, owner({})); // this very process
    const e = await veraError(mergeOnnx({ model, adapter: c.adapter, dryRun: true }));
    expect(e.code).toBe(MergeErrorCode.MERGE_BUSY);
    expect(e.message).toContain(`process ${process.pid} `);
    writeFileSync(lock, owner({ host: "elsewhere.example" })); // cannot be judged here: kept, and said so
    const f = await veraError(mergeOnnx({ model, adapter: c.adapter, output: c.outputIn(fresh()) }));
    expect(f.code).toBe(MergeErrorCode.MERGE_BUSY);
    expect(f.message).toContain(`remove ${lock}`);
  });

  it.runIf(existsSync("/proc/self/stat"))(
    "a pid now used by another process (another start time) is stale",
    async () => {
      const dir = fresh();
      const model = c.setup(dir);
      const lock = join(dir, ".model.onnx.vera-lock");
      writeFileSync(lock, owner({ start: "1" })); // this pid, but a process started at boot
      await mergeOnnx({ model, adapter: c.adapter, inPlace: true, durable: false });
      expect(readdirSync(dir).filter((f) => f.includes(basename(lock)))).toEqual([]);
    },
  );

  it("a takeover marker left by a process killed during a takeover does not block the next one", async () => {
    const dir = fresh();
    const model = c.setup(dir);
    const lock = join(dir, ".model.onnx.vera-lock");
    const stale = owner({ pid: 2 ** 22 + 1 });
    writeFileSync(lock, stale);
    const nonce = (JSON.parse(stale) as { nonce: string }).nonce;
    writeFileSync(`${lock}-${nonce}`, owner({ pid: 2 ** 22 + 2 }));
    await mergeOnnx({ model, adapter: c.adapter, inPlace: true, durable: false });
    expect(readdirSync(dir).filter((f) => f.includes(".vera-lock"))).toEqual([]);
  });

  it("many takers of one stale lock: exactly one holds it; a reader and a writer never both go on", async () => {
    const dir = fresh();
    const head = join(dir, "model.onnx");
    writeFileSync(head, "");
    const lock = join(dir, ".model.onnx.vera-lock");
    for (let round = 0; round < 5; round++) {
      writeFileSync(lock, owner({ pid: 2 ** 22 + round }));
      const takers = await Promise.allSettled(Array.from({ length: 8 }, () => lockModel({ head, mode: "exclusive" })));
      const won = takers.filter((t): t is PromiseFulfilledResult<ModelLock> => t.status === "fulfilled");
      expect(won).toHaveLength(1);
      for (const t of takers)
        if (t.status === "rejected") expect((t.reason as { code: string }).code).toBe(MergeErrorCode.MERGE_BUSY);
      await won[0]!.value.release();
      const both = await Promise.allSettled([
        lockModel({ head, mode: "shared" }),
        lockModel({ head, mode: "exclusive" }),
      ]);
      expect(both.filter((t) => t.status === "fulfilled").length).toBeLessThan(2);
      for (const t of both) if (t.status === "fulfilled") await t.value.release();
    }
    expect(readdirSync(dir)).toEqual(["model.onnx"]);
  });
});

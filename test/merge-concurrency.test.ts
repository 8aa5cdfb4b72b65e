/**
 * The compute stage with a backend that runs several merges at once (`concurrency`, as the onnxruntime worker
 * threads do): the same bytes as one at a time, the weights handed on in order, and a failure in one merge while
 * the next is in flight reported as itself with the model untouched (in place) and nothing left running.
 */
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { createHash } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { ComputeBackend, MergeTask, MergeTaskResult } from "../src/compute/backend.js";
import { createReferenceBackend } from "../src/compute/reference-backend.js";
import { VeraError, isVeraError } from "../src/errors.js";
import { mergeCheckpoint } from "../src/merge/index.js";

const FIX = join(__dirname, "../fixtures/safetensors/llama-bf16");
const work = mkdtempSync(join(tmpdir(), "vera-concurrency-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const digests = (dir: string): Record<string, string> =>
  Object.fromEntries(
    readdirSync(dir)
      .sort()
      .map((f) => [
        f,
        createHash("sha256")
          .update(readFileSync(join(dir, f)))
          .digest("hex"),
      ]),
  );

/** The reference backend, `concurrency` 2, each merge finishing after a delay (later calls sooner); `failAt` fails. */
function concurrent(log: string[], failAt?: number): ComputeBackend {
  const ref = createReferenceBackend();
  let calls = 0;
  let inFlight = 0;
  return {
    name: "concurrent",
    concurrency: 2,
    async merge(tasks: MergeTask[]): Promise<MergeTaskResult[]> {
      const n = calls++;
      inFlight++;
      log.push(`start ${n} (${inFlight} in flight)`);
      await new Promise((r) => setTimeout(r, n % 2 ? 5 : 30));
      try {
        if (n === failAt)
          throw new VeraError("MERGE_OVERFLOW", `merging ${JSON.stringify(tasks[0]!.name)} overflows`, {
            path: tasks[0]!.name,
          });
        return await ref.merge(tasks);
      } finally {
        inFlight--;
        log.push(`end ${n}`);
      }
    },
  };
}

describe("merges in flight at once", () => {
  const adapter = join(FIX, "adapter");
  it("the same bytes as the reference one at a time, into new files and in place; two in flight", async () => {
    const one = join(work, "one");
    const two = join(work, "two");
    await mergeCheckpoint({ model: join(FIX, "base"), adapter, output: one, durable: false });
    const log: string[] = [];
    const report = await mergeCheckpoint({
      model: join(FIX, "base"),
      adapter,
      output: two,
      durable: false,
      backend: concurrent(log),
    });
    expect(digests(two)).toEqual(digests(one));
    expect(log.some((l) => l.includes("(2 in flight)"))).toBe(true);
    expect(report.modules.every((m) => m.maxAbsDelta !== undefined)).toBe(true);
    const copy = join(work, "in-place");
    cpSync(join(FIX, "base"), copy, { recursive: true });
    await mergeCheckpoint({ model: copy, adapter, inPlace: true, durable: false, backend: concurrent([]) });
    expect(digests(copy)).toEqual(digests(one));
  });

  it("a failed merge with the next one in flight: its error, the model unchanged, no merge left running", async () => {
    const copy = join(work, "fail");
    cpSync(join(FIX, "base"), copy, { recursive: true });
    const before = digests(copy);
    const log: string[] = [];
    const e = await mergeCheckpoint({
      model: copy,
      adapter,
      inPlace: true,
      durable: false,
      backend: concurrent(log, 2),
    }).catch((x: unknown) => x);
    expect(isVeraError(e) && e.code).toBe("MERGE_OVERFLOW");
    expect(digests(copy)).toEqual(before);
    const started = log.filter((l) => l.startsWith("start")).length;
    expect(started).toBeGreaterThan(3); // the merge after the failed one was in flight
    expect(log.filter((l) => l.startsWith("end")).length).toBe(started);
  });
});

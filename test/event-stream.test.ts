import { describe, expect, it } from "vitest";
import { drain, eventStream } from "../src/util/event-stream.js";

/** A job that emits 1..n, then waits for its signal when `hang` (as a long transfer would). */
function job(n: number, seen: { aborted?: boolean }, hang = false) {
  return async (signal: AbortSignal, emit: (e: number) => void): Promise<string> => {
    for (let i = 1; i <= n; i++) emit(i);
    if (hang)
      await new Promise<void>((resolve) =>
        signal.addEventListener("abort", () => {
          seen.aborted = true;
          resolve();
        }),
      );
    return `done ${n}`;
  };
}

describe("eventStream and drain (the one callback-to-async-iterator)", () => {
  it("yields every event in order, then returns the job's result", async () => {
    const gen = eventStream({ run: job(3, {}) });
    const events: number[] = [];
    let r = await gen.next();
    while (!r.done) {
      events.push(r.value);
      r = await gen.next();
    }
    expect(events).toEqual([1, 2, 3]);
    expect(r.value).toBe("done 3");
  });

  it("rethrows the job's failure after its events", async () => {
    const events: number[] = [];
    const failing = eventStream<number, void>({
      run: async (_s, emit) => {
        emit(7);
        throw new Error("boom");
      },
    });
    await expect(drain(failing, (e) => events.push(e))).rejects.toThrow("boom");
    expect(events).toEqual([7]);
  });

  it("stopping early aborts the job's signal and waits for it to settle", async () => {
    const seen: { aborted?: boolean } = {};
    for await (const e of eventStream({ run: job(2, seen, true) })) if (e === 1) break;
    expect(seen.aborted).toBe(true);
  });

  it("a throwing callback in drain cancels the job and is rethrown", async () => {
    const seen: { aborted?: boolean } = {};
    const gen = eventStream({ run: job(2, seen, true) });
    await expect(
      drain(gen, () => {
        throw new Error("stop");
      }),
    ).rejects.toThrow("stop");
    expect(seen.aborted).toBe(true);
  });

  it("the caller's signal aborts the job", async () => {
    const seen: { aborted?: boolean } = {};
    const ac = new AbortController();
    const result = drain(eventStream({ run: job(1, seen, true), signal: ac.signal }), () => ac.abort());
    await expect(result).resolves.toBe("done 1");
    expect(seen.aborted).toBe(true);
  });
});

/**
 * The merge pipeline's buffers: reads into reused buffers (DataReader).
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { DataReader } from "../src/merge/data-reader.js";

const work = mkdtempSync(join(tmpdir(), "vera-buffers-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function bytes(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) b[i] = (s = (s * 1103515245 + 12345) >>> 0) >>> 24;
  return b;
}

describe("DataReader", () => {
  it("reads exact ranges, reuses released buffers, and never hands out a buffer still in use", async () => {
    const data = bytes(1 << 16, 9);
    const path = join(work, "data.bin");
    writeFileSync(path, data);
    const r = new DataReader({ poolBytes: 1 << 20 });
    const a = await r.read(path, 100, 4000);
    expect(a).toEqual(data.subarray(100, 4100));
    const b = await r.read(path, 5000, 4000);
    expect(b.buffer).not.toBe(a.buffer);
    r.release(a);
    const c = await r.read(path, 9000, 3000); // fits in a's buffer
    expect(c.buffer).toBe(a.buffer);
    expect(c).toEqual(data.subarray(9000, 12000));
    expect(b).toEqual(data.subarray(5000, 9000)); // untouched by the later read
    const d = await r.read(path, 0, 8000); // larger than any released buffer: a new one
    expect(d.buffer).not.toBe(c.buffer);
    expect(d).toEqual(data.subarray(0, 8000));
    r.release(new Uint8Array(10)); // not the reader's: ignored
    await r.close();
  });

  it("a failed read (past the end) throws and gives its buffer back", async () => {
    const path = join(work, "short.bin");
    writeFileSync(path, bytes(1000, 10));
    const r = new DataReader();
    await expect(r.read(path, 500, 1000)).rejects.toMatchObject({ code: "IO_ERROR" });
    const ok = await r.read(path, 0, 1000);
    expect(ok.byteLength).toBe(1000);
    await r.close();
  });

  it("keeps at most poolBytes of released buffers", async () => {
    const path = join(work, "pool.bin");
    writeFileSync(path, bytes(1 << 16, 11));
    const r = new DataReader({ poolBytes: 6000 });
    const a = await r.read(path, 0, 4000);
    const b = await r.read(path, 0, 4000);
    r.release(a);
    r.release(b); // over the pool's size: dropped
    const c = await r.read(path, 0, 4000);
    const d = await r.read(path, 0, 4000);
    expect(c.buffer).toBe(a.buffer);
    expect(d.buffer).not.toBe(b.buffer);
    await r.close();
  });
});

describe("undo journal entries hashed off the JavaScript thread", () => {
  it("large entries verify and roll back byte for byte; a flipped data byte is corruption", async () => {
    const { UndoJournal, applyUndoJournal } = await import("../src/merge/undo-journal.js");
    const { readFileSync } = await import("node:fs");
    const dir = mkdtempSync(join(work, "journal-"));
    const head = join(dir, "model.bin");
    const original = bytes(6 << 20, 12);
    writeFileSync(head, original);
    const journalOf = async (): Promise<string> => {
      const j = await UndoJournal.create({
        input: head,
        files: [{ path: head, size: original.length }],
        headChanges: false,
        durable: false,
      });
      // two large ranges (off thread) and one small (on thread), appended back to back
      const ranges: Array<[number, number]> = [
        [0, 3 << 20],
        [(3 << 20) + 100, (2 << 20) + 5],
        [(6 << 20) - 50, 50],
      ];
      const ends = ranges.map(([o, n]) => j.append(0, o, original.slice(o, o + n)));
      await j.syncThrough(Math.max(...(await Promise.all(ends))));
      await j.close();
      const merged = new Uint8Array(original);
      for (const [o, n] of ranges) merged.fill(0xab, o, o + n);
      writeFileSync(head, merged);
      return j.path;
    };
    const path = await journalOf();
    const r = await applyUndoJournal({ journal: path, durable: false });
    expect(r.ranges).toBe(3);
    expect(Buffer.from(readFileSync(head)).equals(Buffer.from(original))).toBe(true);

    const damaged = await journalOf();
    const jb = readFileSync(damaged);
    jb[jb.length - 60] ^= 1; // a data byte of the last entry... and of a large one:
    jb[jb.length - (2 << 20)] ^= 1;
    writeFileSync(damaged, jb);
    await expect(applyUndoJournal({ journal: damaged, durable: false })).rejects.toMatchObject({
      code: "MERGE_JOURNAL_CORRUPT",
    });
  });
});

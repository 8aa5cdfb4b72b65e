/**
 * In-place merges: only the adapted weights' ranges of the model's own files are written (same
 * inodes, no other byte touched), an undo journal holds their original bytes, a failure or a
 * cancellation rolls back at once, and after a crash (a process killed mid-merge) every merge
 * refuses the model until `recoverMerge` / `vera recover` puts the original bytes back.
 */
import { existsSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { describe, expect, it } from "vitest";
import type { ComputeBackend } from "../src/compute/backend.js";
import { createReferenceBackend } from "../src/compute/reference-backend.js";
import { mergeOnnx, MergeErrorCode, recoverMerge } from "../src/merge/index.js";
import {
  chainNext,
  chainStart,
  checksumBytes,
  DIGEST,
  encodeJournalHeader,
  encodeSlot,
  ENTRY_HEAD,
  JOURNAL_VERSION,
  recordChecksum,
  SLOT,
  type UndoJournalHeader,
} from "../src/merge/undo-journal-format.js";
import { runCli } from "./cli-helpers.js";
import { veraError } from "./error-helpers.js";
import { cases, crashingMerge, expected, failingBackend, ONNX, snapshot } from "./in-place-helpers.js";
import { tempPathFor } from "../src/node/temp-files.js";
import { useTempDirs } from "./temp-helpers.js";

const fresh = useTempDirs("vera-inplace-");

describe.each(cases)("in place: $name", (c) => {
  it("writes only the merged ranges into the model's own files: the same bytes as a merge to a new folder", async () => {
    const want = await expected(c, fresh);
    const dir = fresh();
    const model = c.setup(dir);
    const before = new Map(readdirSync(dir).map((f) => [f, statSync(join(dir, f))]));
    const r = await c.merge({ model, adapter: c.adapter, inPlace: true, durable: false });
    expect(r.inPlace).toBe(true);
    expect(snapshot(dir)).toEqual(want); // no journal, no temporary file left
    const written = new Set(r.files.map((f) => f.split("/").pop()!));
    for (const [f, st] of before) {
      const now = statSync(join(dir, f));
      if (!written.has(f)) expect({ f, mtime: now.mtimeMs }).toEqual({ f, mtime: st.mtimeMs });
      // data files are written where they are; only a head file that changes is replaced
      if (!(c.headChanges && f === "model.onnx")) expect({ f, ino: now.ino }).toEqual({ f, ino: st.ino });
    }
    // the merged weights' bytes in data files (none when they are inside the head), and the new head file
    const inData = c.name.includes("inside") ? 0 : r.bytesMerged;
    expect(r.bytesWritten).toBe(inData + (c.headChanges ? statSync(model).size : 0));
  });

  it("a failure mid-merge rolls back at once: the model is as it was, with no journal left", async () => {
    const dir = fresh();
    const model = c.setup(dir);
    const before = snapshot(dir);
    await expect(
      c.merge({ model, adapter: c.adapter, inPlace: true, backend: failingBackend(3), durable: false }),
    ).rejects.toThrow("device lost");
    expect(snapshot(dir)).toEqual(before);
  });

  it("after a crash: every merge refuses the model (MERGE_INTERRUPTED) until recoverMerge restores every byte", async () => {
    const dir = fresh();
    const model = c.setup(dir);
    const before = snapshot(dir);
    // killed at the 3rd weight, once a merged weight has reached the files (not the head: it is written last)
    crashingMerge(c, model, 3, !c.name.includes("inside"));
    const journal = readdirSync(dir).filter((f) => f.endsWith(".vera-undo"));
    expect(journal).toHaveLength(1);
    // the killed merge's lock is still there: its owner is dead, so it is taken over, never "busy"
    expect(readdirSync(dir).filter((f) => f.endsWith(".vera-lock"))).toHaveLength(1);
    const changed = Object.entries(snapshot(dir)).filter(([k, v]) => before[k] !== v && !k.includes(".vera-undo"));
    if (!c.name.includes("inside")) expect(changed.length).toBeGreaterThan(0); // weights were written in place
    if (c.extra?.untie) {
      // the untied copy (first in merge order) was appended: recovery must cut the file back
      const shared = join(dir, "m.model.embed_tokens.weight");
      expect(statSync(shared).size).toBeGreaterThan(
        statSync(join(ONNX, "legacy-llama-unfolded-wrapped", "m.model.embed_tokens.weight")).size,
      );
    }

    for (const p of [{ inPlace: true }, { output: c.outputIn(fresh()) }, { dryRun: true }] as const) {
      const e = await veraError(c.merge({ model, adapter: c.adapter, durable: false, ...p }));
      expect(e.code).toBe(MergeErrorCode.MERGE_INTERRUPTED);
      expect(e.message).toMatch(/vera recover/);
    }
    const r = await recoverMerge({ model, durable: false });
    expect(r.restored).toHaveLength(1);
    expect(snapshot(dir)).toEqual(before);
    expect((await recoverMerge({ model })).restored).toEqual([]);
    // and the model merges again
    await c.merge({ model, adapter: c.adapter, inPlace: true, durable: false });
    expect(snapshot(dir)).toEqual(await expected(c, fresh));
  });
});

/** {@link snapshot} without lock files (a killed merge's stale lock is taken over by the next one). */
function unlocked(dir: string): Record<string, string> {
  return Object.fromEntries(Object.entries(snapshot(dir)).filter(([k]) => !k.endsWith(".vera-lock")));
}

/** A journal's header, where its records start, and its records (each whole: head, checksum, data). */
function parseJournal(bytes: Buffer): { header: UndoJournalHeader; recordsAt: number; records: Buffer[] } {
  const n = bytes.readUInt32LE(12);
  const sum = checksumBytes(bytes.readUInt32LE(8));
  const header = JSON.parse(bytes.subarray(16, 16 + n).toString("utf8")) as UndoJournalHeader;
  const recordsAt = 16 + n + DIGEST + 2 * SLOT;
  const records: Buffer[] = [];
  for (let pos = recordsAt; pos + ENTRY_HEAD + sum <= bytes.length; ) {
    const end = pos + ENTRY_HEAD + sum + Number(bytes.readBigUInt64LE(pos + 16));
    if (end > bytes.length) break;
    records.push(bytes.subarray(pos, end));
    pos = end;
  }
  return { header, recordsAt, records };
}

/** A well-formed journal holding `header` and `records` (its count and chain computed). */
function encodeJournal(header: UndoJournalHeader, records: Buffer[]): Buffer {
  const head = encodeJournalHeader(header);
  let chain = chainStart(head);
  const sum = checksumBytes(JOURNAL_VERSION);
  for (const r of records) chain = chainNext(chain, r.subarray(ENTRY_HEAD, ENTRY_HEAD + sum));
  const slot = encodeSlot(records.length, chain);
  return Buffer.concat([head, slot, slot, ...records]);
}

/**
 * The same journal in `version`'s layout: each record's checksum recomputed in that version's kind
 * (version 2: SHA-256), its count and chain as that version's writer left them.
 */
function reencodeJournal(bytes: Buffer, version: number): Buffer {
  const { header, records } = parseJournal(bytes);
  const from = checksumBytes(bytes.readUInt32LE(8));
  const head = encodeJournalHeader(header, version);
  let chain = chainStart(head);
  const out = records.map((r) => {
    const sum = recordChecksum(version);
    sum.update(r.subarray(0, ENTRY_HEAD));
    sum.update(r.subarray(ENTRY_HEAD + from));
    const digest = sum.digest();
    chain = chainNext(chain, digest);
    return Buffer.concat([r.subarray(0, ENTRY_HEAD), digest, r.subarray(ENTRY_HEAD + from)]);
  });
  const slot = encodeSlot(records.length, chain);
  return Buffer.concat([head, slot, slot, ...out]);
}

describe("the undo journal", () => {
  const c = cases[0]!;

  it("cancelling an in-place merge rolls it back", async () => {
    const dir = fresh();
    const model = c.setup(dir);
    const before = snapshot(dir);
    const ac = new AbortController();
    const ref = createReferenceBackend();
    let calls = 0;
    const backend: ComputeBackend = {
      name: "cancel",
      async merge(tasks) {
        if (++calls === 3) ac.abort();
        return ref.merge(tasks);
      },
    };
    const e = await veraError(
      mergeOnnx({ model, adapter: c.adapter, inPlace: true, backend, signal: ac.signal, durable: false }),
    );
    expect(e.code).toBe(MergeErrorCode.MERGE_ABORTED);
    expect(snapshot(dir)).toEqual(before);
  });

  it("a damaged journal changes nothing: MERGE_JOURNAL_CORRUPT, the journal kept", async () => {
    const dir = fresh();
    const model = c.setup(dir);
    crashingMerge(c, model, 4);
    const journal = join(dir, ".model.onnx.vera-undo");
    const bytes = readFileSync(journal);
    const first = parseJournal(bytes).recordsAt + ENTRY_HEAD + checksumBytes(JOURNAL_VERSION); // the first entry's data
    bytes[first + 1]! ^= 0xff;
    writeFileSync(journal, bytes);
    const crashed = unlocked(dir);
    const e = await veraError(recoverMerge({ model }));
    expect(e.code).toBe(MergeErrorCode.MERGE_JOURNAL_CORRUPT);
    expect(e.path).toBe(journal);
    expect(unlocked(dir)).toEqual(crashed);
  });

  it("a journal cut short (a crash while it was written) is discarded: nothing had been overwritten yet", async () => {
    const dir = fresh();
    const model = c.setup(dir);
    const before = snapshot(dir);
    crashingMerge(c, model, 1); // killed before the first weight was merged: no range written
    const journal = join(dir, ".model.onnx.vera-undo");
    writeFileSync(journal, readFileSync(journal).subarray(0, 20)); // inside the header
    const r = await recoverMerge({ model });
    expect(r.restored.map((x) => x.ranges)).toEqual([0]);
    expect(snapshot(dir)).toEqual(before);
  });

  it("a journal naming a file outside the model's folder is refused, nothing written", async () => {
    const dir = fresh();
    const model = c.setup(dir);
    crashingMerge(c, model, 3);
    const journal = join(dir, ".model.onnx.vera-undo");
    const { header, records } = parseJournal(readFileSync(journal));
    const h = header as { files: Array<{ path: string }> };
    h.files[0]!.path = "../" + h.files[0]!.path;
    writeFileSync(journal, encodeJournal(header, records)); // well formed: its count and chain recomputed
    const crashed = unlocked(dir);
    const e = await veraError(recoverMerge({ model }));
    expect(e.code).toBe(MergeErrorCode.MERGE_JOURNAL_CORRUPT);
    expect(e.message).toMatch(/leaves its folder/);
    expect(unlocked(dir)).toEqual(crashed);
  });

  it("vera recover rolls back from the command line; without a journal it says so", async () => {
    const dir = fresh();
    const model = c.setup(dir);
    const before = snapshot(dir);
    crashingMerge(c, model, 2);
    const run = await runCli(["merge", model, c.adapter, "--in-place", "--backend", "reference"]);
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/MERGE_INTERRUPTED|interrupted/);
    const r = await runCli(["recover", model]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/rolled back \(\d+ ranges?, \d+ bytes in 1 file\)/);
    expect(snapshot(dir)).toEqual(before);
    const again = await runCli(["recover", model, "--json"]);
    expect(JSON.parse(again.stdout)).toEqual({ ok: true, restored: [] });
    expect(existsSync(join(dir, ".model.onnx.vera-undo"))).toBe(false);
  });
  it("a journal cut at a record boundary is refused (MERGE_JOURNAL_CORRUPT): nothing restored, the journal kept", async () => {
    const dir = fresh();
    const model = c.setup(dir);
    crashingMerge(c, model, 4, true);
    const journal = join(dir, ".model.onnx.vera-undo");
    const bytes = readFileSync(journal);
    const { recordsAt, records } = parseJournal(bytes);
    expect(records.length).toBeGreaterThan(1);
    const cut = recordsAt + records.slice(0, -1).reduce((n, r) => n + r.length, 0); // the last record dropped
    writeFileSync(journal, bytes.subarray(0, cut));
    const crashed = unlocked(dir);
    const e = await veraError(recoverMerge({ model }));
    expect(e.code).toBe(MergeErrorCode.MERGE_JOURNAL_CORRUPT);
    expect(e.message).toMatch(new RegExp(`counts ${records.length} records but holds ${records.length - 1}`));
    expect(unlocked(dir)).toEqual(crashed);
    // the slot holding the previous count damaged as well: the other one still counts every record
    const again = Buffer.from(bytes.subarray(0, cut));
    again[recordsAt - 2 * SLOT + ((records.length - 1) % 2) * SLOT + 5]! ^= 1;
    writeFileSync(journal, again);
    expect((await veraError(recoverMerge({ model }))).code).toBe(MergeErrorCode.MERGE_JOURNAL_CORRUPT);
  });

  it("journals are written in version 3 (CRC-32 per record); a version-2 journal (SHA-256 per record) is still recovered and checked", async () => {
    const dir = fresh();
    const model = c.setup(dir);
    const before = snapshot(dir);
    crashingMerge(c, model, 4, true);
    const journal = join(dir, ".model.onnx.vera-undo");
    const v3 = readFileSync(journal);
    expect(v3.readUInt32LE(8)).toBe(3);
    const { records } = parseJournal(v3);
    expect(records.length).toBeGreaterThan(1);
    const v2 = reencodeJournal(v3, 2);
    expect(v2.readUInt32LE(8)).toBe(2);
    expect(v2.length).toBe(v3.length + records.length * (32 - 4));
    // a damaged version-2 record is caught by its SHA-256
    const bad = Buffer.from(v2);
    const { recordsAt } = parseJournal(bad);
    bad[recordsAt + ENTRY_HEAD + 32 + 3]! ^= 0x10;
    writeFileSync(journal, bad);
    const crashed = unlocked(dir);
    const e = await veraError(recoverMerge({ model }));
    expect(e.code).toBe(MergeErrorCode.MERGE_JOURNAL_CORRUPT);
    expect(e.message).toMatch(/checksum of the entry/);
    expect(unlocked(dir)).toEqual(crashed);
    // the intact version-2 journal puts every byte back
    writeFileSync(journal, v2);
    const r = await recoverMerge({ model, durable: false });
    expect(r.restored).toHaveLength(1);
    expect(unlocked(dir)).toEqual(before);
  });

  it("a version-3 record's CRC-32 catches a torn record: zeros over the end of its data", async () => {
    const dir = fresh();
    const model = c.setup(dir);
    crashingMerge(c, model, 3, true);
    const journal = join(dir, ".model.onnx.vera-undo");
    const bytes = readFileSync(journal);
    const { recordsAt, records } = parseJournal(bytes);
    const end = recordsAt + records[0]!.length;
    const tail = Math.min(512, records[0]!.length - ENTRY_HEAD - 4);
    expect(records[0]!.subarray(-tail).some((b) => b !== 0)).toBe(true);
    bytes.fill(0, end - tail, end); // the record's last sector never reached the disk
    writeFileSync(journal, bytes);
    const e = await veraError(recoverMerge({ model }));
    expect(e.code).toBe(MergeErrorCode.MERGE_JOURNAL_CORRUPT);
    expect(e.message).toMatch(/checksum of the entry/);
  });

  it("a version-1 journal (no record count) is refused, nothing restored", async () => {
    const dir = fresh();
    const model = c.setup(dir);
    crashingMerge(c, model, 3);
    const journal = join(dir, ".model.onnx.vera-undo");
    const bytes = readFileSync(journal);
    bytes.writeUInt32LE(1, 8);
    writeFileSync(journal, bytes);
    const crashed = unlocked(dir);
    const e = await veraError(recoverMerge({ model }));
    expect(e.code).toBe(MergeErrorCode.MERGE_JOURNAL_CORRUPT);
    expect(e.message).toMatch(/version-1/);
    expect(unlocked(dir)).toEqual(crashed);
  });

  it("recover finds the journal through a symlink to the model, and a merge through a symlink journals beside the real file", async () => {
    const dir = fresh();
    const model = c.setup(dir);
    const before = snapshot(dir);
    const link = join(dir, "link.onnx"); // beside it: its data files are found next to the path given
    symlinkSync("model.onnx", link);
    crashingMerge(c, model, 3, true);
    const r = await recoverMerge({ model: link });
    expect(r.restored).toHaveLength(1);
    expect(unlocked(dir)).toEqual(before);
    crashingMerge(c, link, 3, true);
    expect(readdirSync(dir).filter((f) => f.endsWith(".vera-undo"))).toEqual([".model.onnx.vera-undo"]);
    expect((await recoverMerge({ model })).restored).toHaveLength(1);
    expect(unlocked(dir)).toEqual(before);
  });

  it("recover removes the partly written head file a killed merge left (weights inside the .onnx)", async () => {
    const inline = cases[1]!;
    const dir = fresh();
    const model = inline.setup(dir);
    const before = snapshot(dir);
    const pid = crashingMerge(inline, model, 3);
    // the temporary head file as the killed merge names it (its pid, this host's tag)
    const temp = basename(tempPathFor(model)).replace(`.${process.pid}.`, `.${pid}.`);
    writeFileSync(join(dir, temp), "partial head");
    writeFileSync(join(dir, ".model.onnx.1.zzzz.tmp"), "not ours"); // not the pattern: kept
    expect((await recoverMerge({ model })).restored).toHaveLength(1);
    expect(snapshot(dir)).toEqual({ ...before, ".model.onnx.1.zzzz.tmp": expect.any(String) });
  });
});

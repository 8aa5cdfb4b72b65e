/**
 * Internal (Node): the byte layout of an undo journal (versions 2 and 3), encoded and decoded here only.
 *
 * Little-endian:
 * - header: `VERAUNDO` (8 bytes), u32 version (3; 2 is still read), u32 length N, N bytes of UTF-8 JSON
 *   ({@link UndoJournalHeader}), 32-byte SHA-256 of the JSON;
 * - two record-count slots of {@link SLOT} bytes each: u32 count, 32-byte chain digest, 32-byte
 *   SHA-256 of those 36 bytes. After record `c` (1-based) is written, slot `c % 2` is rewritten with
 *   count `c` and the chain over the header and the first `c` records, before the journal is synced
 *   and the record's range overwritten; the other slot keeps the previous count, so a torn slot
 *   write loses nothing;
 * - then records: `VUE1`, u32 file index, u64 offset, u64 length, the record's checksum over the 24
 *   bytes before it and the data, then `length` bytes of data (the range's original bytes). The
 *   checksum is a u32 CRC-32 (ISO-HDLC, zlib's) in version 3 and a 32-byte SHA-256 in version 2.
 *
 * The journal guards against torn writes and crashes, not against someone who edits it (whoever
 * can write the journal can write the model), so version 3 checks each record with CRC-32, which
 * zlib computes several times faster than SHA-256 (bench/journal-checksum.mjs): every byte a merge
 * overwrites passes through it. The header and the slots keep their SHA-256 (a few bytes).
 *
 * The chain starts as SHA-256 of the header's bytes and takes each record's checksum in turn
 * (`chain' = SHA-256(chain || checksum)`), so the slot with the highest valid count checks the whole
 * journal: a record missing (a journal cut at a record boundary), added, reordered or changed, or a
 * changed header, no longer gives the slot's chain.
 */
import { createHash } from "node:crypto";
import { crc32 } from "node:zlib";

/** What the journal's header records. Paths are relative to the journal's folder. */
export interface UndoJournalHeader {
  /** The model's head file (relative), for messages. */
  model: string;
  /** The files changed in place, with their sizes before the merge. */
  files: Array<{ path: string; size: number }>;
  /** The head file replaced at the end; its original is kept as `<journal>-head` (a hard link, or a copy). */
  head: { path: string } | null;
}

export const JOURNAL_MAGIC = new TextEncoder().encode("VERAUNDO");
/** The version new journals are written in. */
export const JOURNAL_VERSION = 3;
/** The versions recovery reads (version 1 had no record count and is refused). */
export const READABLE_VERSIONS: readonly number[] = [2, 3];
/** Bytes before the header's JSON. */
export const JOURNAL_PREFIX = 16;
export const ENTRY_MAGIC = 0x31455556; // "VUE1" read as u32 LE
export const ENTRY_HEAD = 24;
export const DIGEST = 32;
/** Bytes of one record-count slot. */
export const SLOT = 4 + DIGEST + DIGEST;

/** Bytes of a record's checksum in a journal of `version`. */
export function checksumBytes(version: number): number {
  return version === 2 ? DIGEST : 4;
}

/** A record checksum computed part by part (the record's 24 opening bytes, then its data in any pieces). */
export interface RecordChecksum {
  update(part: Uint8Array): void;
  /** The checksum's bytes ({@link checksumBytes} of them). */
  digest(): Uint8Array;
}

/** A record checksum for a journal of `version`: SHA-256 (version 2) or CRC-32 (version 3). */
export function recordChecksum(version: number): RecordChecksum {
  if (version === 2) {
    const h = createHash("sha256");
    return { update: (p) => void h.update(p), digest: () => new Uint8Array(h.digest()) };
  }
  let crc = 0;
  return {
    update: (p) => void (crc = crc32(p, crc)),
    digest: () => {
      const d = new Uint8Array(4);
      new DataView(d.buffer).setUint32(0, crc, true);
      return d;
    },
  };
}

export function sha256(...parts: Uint8Array[]): Uint8Array {
  const h = createHash("sha256");
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b);
}

/** The header's bytes (prefix, JSON, its digest); the slots follow them. `version` is for tests of older journals. */
export function encodeJournalHeader(header: UndoJournalHeader, version = JOURNAL_VERSION): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const bytes = new Uint8Array(JOURNAL_PREFIX + json.length + DIGEST);
  bytes.set(JOURNAL_MAGIC, 0);
  const dv = new DataView(bytes.buffer);
  dv.setUint32(8, version, true);
  dv.setUint32(12, json.length, true);
  bytes.set(json, JOURNAL_PREFIX);
  bytes.set(sha256(json), JOURNAL_PREFIX + json.length);
  return bytes;
}

/** The chain digest before any record: over the header's bytes. */
export function chainStart(headerBytes: Uint8Array): Uint8Array {
  return sha256(headerBytes);
}

/** The chain digest once a record with `digest` is added. */
export function chainNext(chain: Uint8Array, digest: Uint8Array): Uint8Array {
  return sha256(chain, digest);
}

/** A record-count slot. */
export function encodeSlot(count: number, chain: Uint8Array): Uint8Array {
  const bytes = new Uint8Array(SLOT);
  new DataView(bytes.buffer).setUint32(0, count, true);
  bytes.set(chain, 4);
  bytes.set(sha256(bytes.subarray(0, 4 + DIGEST)), 4 + DIGEST);
  return bytes;
}

/** A slot's count and chain, or null when its own digest does not match (a torn write). */
export function decodeSlot(bytes: Uint8Array): { count: number; chain: Uint8Array } | null {
  if (bytes.length !== SLOT || !equalBytes(sha256(bytes.subarray(0, 4 + DIGEST)), bytes.subarray(4 + DIGEST)))
    return null;
  const count = new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0, true);
  return { count, chain: bytes.slice(4, 4 + DIGEST) };
}

/** Where the slot that records count `count` lies, given the header's length. */
export function slotOffset(headerLength: number, count: number): number {
  return headerLength + (count % 2) * SLOT;
}

/** The 24 bytes that open a record. */
export function encodeEntryHead(file: number, offset: number, length: number): Uint8Array {
  const head = new Uint8Array(ENTRY_HEAD);
  const dv = new DataView(head.buffer);
  dv.setUint32(0, ENTRY_MAGIC, true);
  dv.setUint32(4, file, true);
  dv.setBigUint64(8, BigInt(offset), true);
  dv.setBigUint64(16, BigInt(length), true);
  return head;
}

/** A record's opening fields (offset and length may be unsafe integers: the caller checks). */
export function decodeEntryHead(bytes: Uint8Array): { magic: boolean; file: number; offset: number; length: number } {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, ENTRY_HEAD);
  return {
    magic: dv.getUint32(0, true) === ENTRY_MAGIC,
    file: dv.getUint32(4, true),
    offset: Number(dv.getBigUint64(8, true)),
    length: Number(dv.getBigUint64(16, true)),
  };
}

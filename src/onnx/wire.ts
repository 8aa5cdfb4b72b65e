/**
 * Protocol-buffers WIRE format: the one reader and writer of the package. The reader works without
 * a schema and returns every field with its byte offsets, so callers can patch values in place and
 * re-encode length prefixes, leaving every other byte of the message as it was (unknown fields
 * included). The writer ({@link encodeVarint}, {@link ProtoWriter}) builds new messages.
 *
 * Limits: a varint has at most 10 bytes; deprecated groups nest at most {@link MAX_GROUP_DEPTH}
 * deep (skipped without recursion). Callers that descend into nested messages bound their own depth
 * (see readOnnxModel's `maxDepth`).
 *
 * Internal (not exported from the package index).
 */
import { VeraError } from "../errors.js";
import { concatBytes } from "../util/concat-bytes.js";
import { OnnxErrorCode } from "./error-codes.js";

export { concatBytes };

/** Wire types of protocol buffers. */
export const WireType = { VARINT: 0, I64: 1, LEN: 2, SGROUP: 3, EGROUP: 4, I32: 5 } as const;

/**
 * Deepest nesting of deprecated groups (start-group ... end-group) accepted inside one field, the
 * recursion limit of protobuf's own parsers. Deeper input is `ONNX_PARSE`.
 */
export const MAX_GROUP_DEPTH = 100;

/** One field of a message, with its offsets in the buffer. */
export interface WireField {
  /** Field number. */
  field: number;
  /** Wire type (see {@link WireType}). */
  wireType: number;
  /** Offset of the first byte of the tag. */
  start: number;
  /** Offset just after the field. */
  end: number;
  /** Offset of the first payload byte (after the tag, and after the length for LEN fields). */
  dataStart: number;
  /** Offset just after the payload. */
  dataEnd: number;
  /** LEN fields: offset of the length varint (it ends at dataStart). */
  lenStart: number;
}

function parseError(message: string, offset: number): VeraError {
  return new VeraError(OnnxErrorCode.ONNX_PARSE, `malformed ONNX protobuf at byte ${offset}: ${message}`, {
    path: `@${offset}`,
  });
}

/**
 * Read a varint at `pos` (at most 10 bytes, not beyond `limit`). Returns the value as a number
 * when it fits in 2^53, otherwise as a bigint (negative int64 values are 10-byte varints).
 */
export function readVarint(bytes: Uint8Array, pos: number, limit: number): { value: number | bigint; next: number } {
  let result = 0;
  let mul = 1;
  let i = pos;
  for (let n = 0; n < 10; n++) {
    if (i >= limit) throw parseError("truncated varint", pos);
    const b = bytes[i++]!;
    if (n < 7) {
      result += (b & 0x7f) * mul;
      mul *= 128;
      if (b < 0x80) return { value: result, next: i };
    } else {
      // bytes 8..10: continue in bigint
      let big = BigInt(result) + BigInt(b & 0x7f) * (1n << BigInt(7 * n));
      let k = n;
      let cur = b;
      while (cur >= 0x80) {
        k++;
        if (k >= 10) throw parseError("varint longer than 10 bytes", pos);
        if (i >= limit) throw parseError("truncated varint", pos);
        cur = bytes[i++]!;
        big += BigInt(cur & 0x7f) * (1n << BigInt(7 * k));
      }
      big &= (1n << 64n) - 1n;
      if (big <= BigInt(Number.MAX_SAFE_INTEGER)) return { value: Number(big), next: i };
      return { value: big, next: i };
    }
  }
  throw parseError("varint longer than 10 bytes", pos);
}

/** A varint that must be a non-negative safe integer (lengths, enums, dims). */
export function readSafeVarint(bytes: Uint8Array, pos: number, limit: number): { value: number; next: number } {
  const r = readVarint(bytes, pos, limit);
  if (typeof r.value !== "number") throw parseError("varint value out of range", pos);
  return { value: r.value, next: r.next };
}

/** Interpret a varint read as int64 (two's complement). */
export function asInt64(v: number | bigint): bigint {
  const b = BigInt(v);
  return b >= 1n << 63n ? b - (1n << 64n) : b;
}

/**
 * Encode an integer as a varint. Numbers must be non-negative safe integers; bigints are taken as
 * 64-bit two's complement (a negative int64 becomes a 10-byte varint).
 */
export function encodeVarint(value: number | bigint): Uint8Array {
  if (typeof value === "bigint") {
    let x = BigInt.asUintN(64, value);
    const out: number[] = [];
    while (x >= 0x80n) {
      out.push(Number(x & 0x7fn) | 0x80);
      x >>= 7n;
    }
    out.push(Number(x));
    return Uint8Array.from(out);
  }
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`cannot encode varint ${value}`);
  const out = new Uint8Array(varintLength(value));
  writeVarintAt(out, 0, value);
  return out;
}

/** Write the varint of a non-negative safe integer at `pos`; returns the offset after it. */
export function writeVarintAt(out: Uint8Array, pos: number, value: number): number {
  let v = value;
  let p = pos;
  while (v >= 0x80) {
    out[p++] = (v % 128) | 0x80;
    v = Math.floor(v / 128);
  }
  out[p++] = v;
  return p;
}

/** Number of bytes of the varint encoding of `value`. */
export function varintLength(value: number): number {
  let n = 1;
  let v = value;
  while (v >= 0x80) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

/** Read the field that starts at `pos` (within [pos, limit)). */
export function readField(bytes: Uint8Array, pos: number, limit: number): WireField {
  const tag = readSafeVarint(bytes, pos, limit);
  const field = Math.floor(tag.value / 8);
  const wireType = tag.value & 7;
  if (field < 1) throw parseError(`field number 0`, pos);
  let dataStart = tag.next;
  let dataEnd: number;
  let lenStart = -1;
  switch (wireType) {
    case WireType.VARINT: {
      const v = readVarint(bytes, dataStart, limit);
      dataEnd = v.next;
      break;
    }
    case WireType.I64:
      dataEnd = dataStart + 8;
      break;
    case WireType.I32:
      dataEnd = dataStart + 4;
      break;
    case WireType.LEN: {
      lenStart = dataStart;
      const len = readSafeVarint(bytes, dataStart, limit);
      dataStart = len.next;
      dataEnd = dataStart + len.value;
      break;
    }
    case WireType.SGROUP: {
      // Deprecated groups: skip nested fields until the matching end-group tag. Iterative, with
      // a stack of open group numbers bounded by MAX_GROUP_DEPTH (no recursion on hostile input).
      const open = [field];
      let p = dataStart;
      while (open.length > 0) {
        if (p >= limit) throw parseError("unterminated group", pos);
        const t = readSafeVarint(bytes, p, limit);
        const innerField = Math.floor(t.value / 8);
        const innerType = t.value & 7;
        if (innerField < 1) throw parseError(`field number 0`, p);
        if (innerType === WireType.SGROUP) {
          if (open.length >= MAX_GROUP_DEPTH) throw parseError(`groups nested deeper than ${MAX_GROUP_DEPTH}`, p);
          open.push(innerField);
          p = t.next;
        } else if (innerType === WireType.EGROUP) {
          if (innerField !== open.pop()) throw parseError("mismatched end-group", p);
          if (open.length === 0) dataEnd = p;
          p = t.next;
        } else {
          p = readField(bytes, p, limit).end;
        }
      }
      return { field, wireType, start: pos, end: p, dataStart, dataEnd: dataEnd!, lenStart };
    }
    case WireType.EGROUP:
      return { field, wireType, start: pos, end: dataStart, dataStart, dataEnd: dataStart, lenStart };
    default:
      throw parseError(`unknown wire type ${wireType}`, pos);
  }
  if (dataEnd > limit) throw parseError(`field ${field} runs past the end of its message`, pos);
  return { field, wireType, start: pos, end: dataEnd, dataStart, dataEnd, lenStart };
}

/** All fields of the message occupying [start, end). */
export function* fields(bytes: Uint8Array, start: number, end: number): Generator<WireField> {
  let p = start;
  while (p < end) {
    const f = readField(bytes, p, end);
    if (f.wireType === WireType.EGROUP) throw parseError("unexpected end-group", p);
    yield f;
    p = f.end;
  }
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** Decode a LEN field as UTF-8 text. */
export function fieldString(bytes: Uint8Array, f: WireField): string {
  if (f.wireType !== WireType.LEN) throw parseError(`field ${f.field} should be a string`, f.start);
  try {
    return utf8.decode(bytes.subarray(f.dataStart, f.dataEnd));
  } catch {
    throw parseError(`field ${f.field} is not valid UTF-8`, f.start);
  }
}

/** A varint field as a safe non-negative number. */
export function fieldUint(bytes: Uint8Array, f: WireField): number {
  if (f.wireType !== WireType.VARINT) throw parseError(`field ${f.field} should be a varint`, f.start);
  return readSafeVarint(bytes, f.dataStart, f.dataEnd).value;
}

/** A varint field interpreted as int64. */
export function fieldInt64(bytes: Uint8Array, f: WireField): bigint {
  if (f.wireType !== WireType.VARINT) throw parseError(`field ${f.field} should be a varint`, f.start);
  return asInt64(readVarint(bytes, f.dataStart, f.dataEnd).value);
}

/**
 * Values of a repeated integer field: packed (LEN with varints) or one varint per field.
 * Appends to `out` as int64 bigints.
 */
export function pushRepeatedInt64(bytes: Uint8Array, f: WireField, out: bigint[]): void {
  if (f.wireType === WireType.VARINT) {
    out.push(fieldInt64(bytes, f));
  } else if (f.wireType === WireType.LEN) {
    let p = f.dataStart;
    while (p < f.dataEnd) {
      const v = readVarint(bytes, p, f.dataEnd);
      out.push(asInt64(v.value));
      p = v.next;
    }
  } else {
    throw parseError(`field ${f.field} should hold integers`, f.start);
  }
}

/** Bytes of a packed varint field: tag (field, LEN) + length + varints of `values` (all non-negative safe integers). */
export function encodePackedVarints(field: number, values: ArrayLike<number>): Uint8Array {
  let payload = 0;
  for (let i = 0; i < values.length; i++) payload += varintLength(values[i]!);
  const tag = encodeVarint(field * 8 + WireType.LEN);
  const len = encodeVarint(payload);
  const out = new Uint8Array(tag.length + len.length + payload);
  out.set(tag, 0);
  out.set(len, tag.length);
  let p = tag.length + len.length;
  for (let i = 0; i < values.length; i++) p = writeVarintAt(out, p, values[i]!);
  return out;
}

/** Bytes of a LEN field: tag + length + `payload` (a string is written as its UTF-8 bytes). */
export function lenField(field: number, payload: Uint8Array | string): Uint8Array {
  const body = typeof payload === "string" ? new TextEncoder().encode(payload) : payload;
  return concatBytes([encodeVarint(field * 8 + WireType.LEN), encodeVarint(body.length), body]);
}

/** Bytes of a VARINT field holding a non-negative safe integer. */
export function varintField(field: number, value: number): Uint8Array {
  return concatBytes([encodeVarint(field * 8 + WireType.VARINT), encodeVarint(value)]);
}

/** Builds a protobuf message field by field (fields are written in the order of the calls). */
export class ProtoWriter {
  private chunks: Uint8Array[] = [];
  private len = 0;

  /** Append raw bytes (an already-encoded field). */
  raw(b: Uint8Array): this {
    this.chunks.push(b);
    this.len += b.length;
    return this;
  }
  /** A field's tag. */
  tag(field: number, wireType: number): this {
    return this.raw(encodeVarint(field * 8 + wireType));
  }
  /** A VARINT field (negative numbers and bigints as int64 two's complement). */
  int(field: number, v: number | bigint): this {
    return this.tag(field, WireType.VARINT).raw(encodeVarint(typeof v === "number" && v < 0 ? BigInt(v) : v));
  }
  /** A LEN field holding `b`. */
  bytes(field: number, b: Uint8Array): this {
    return this.tag(field, WireType.LEN).raw(encodeVarint(b.length)).raw(b);
  }
  /** A LEN field holding the UTF-8 bytes of `s`. */
  str(field: number, s: string): this {
    return this.bytes(field, new TextEncoder().encode(s));
  }
  /** A nested message. */
  msg(field: number, m: ProtoWriter): this {
    return this.bytes(field, m.finish());
  }
  /** An I32 field holding a float32. */
  float(field: number, v: number): this {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    return this.tag(field, WireType.I32).raw(b);
  }
  /** Length of the message so far. */
  get length(): number {
    return this.len;
  }
  /** The message bytes. */
  finish(): Uint8Array {
    return concatBytes(this.chunks);
  }
}

import { VeraError } from "../errors.js";
import { OnnxErrorCode } from "./error-codes.js";
import type { MessageSpan } from "./types.js";
import { concatBytes, encodeVarint } from "./wire.js";

/** Replace bytes [start, end) of a message with `data` (any length). */
export interface ByteEdit {
  start: number;
  end: number;
  data: Uint8Array;
  /** The innermost message that contains [start, end): its length prefix (and its ancestors') are re-encoded when the length changes. */
  span: MessageSpan;
}

/** Parameters of {@link applyEdits}. */
export interface ApplyEditsParams {
  /** The original protobuf bytes. */
  bytes: Uint8Array;
  /** Non-overlapping edits. */
  edits: ByteEdit[];
  /**
   * Largest allowed output (protobuf's 2 GiB limit).
   * @default 2147483647
   */
  maxBytes?: number;
}

/** The edited message as a list of chunks (views into the input and replacement bytes). */
export interface EditedBytes {
  chunks: Uint8Array[];
  /** Total length. */
  length: number;
}

function depth(s: MessageSpan): number {
  let d = 0;
  for (let p = s.parent; p; p = p.parent) d++;
  return d;
}

/**
 * Apply byte edits to a protobuf message. Edits that change a field's length re-encode the length
 * prefix of every enclosing message (TensorProto -> GraphProto -> AttributeProto -> NodeProto ->
 * ... -> ModelProto), cascading when a prefix itself changes size. Every other byte is kept.
 *
 * @throws VeraError `ONNX_TOO_LARGE` when the result would exceed `maxBytes`.
 */
export function applyEdits(params: ApplyEditsParams): EditedBytes {
  const { bytes } = params;
  const maxBytes = params.maxBytes ?? 2147483647;
  const edits = [...params.edits].sort((a, b) => a.start - b.start);
  for (let i = 1; i < edits.length; i++)
    if (edits[i]!.start < edits[i - 1]!.end) throw new RangeError(`overlapping edits at byte ${edits[i]!.start}`);

  const delta = new Map<MessageSpan, number>();
  const add = (s: MessageSpan | null, d: number): void => {
    for (let p = s; p; p = p.parent) if (p.lenStart >= 0) delta.set(p, (delta.get(p) ?? 0) + d);
  };
  for (const e of edits) {
    const d = e.data.length - (e.end - e.start);
    if (d !== 0) add(e.span, d);
  }
  // Re-encode length prefixes innermost first; a prefix that changes size shifts its ancestors.
  const spans = [...delta.keys()].sort((a, b) => depth(b) - depth(a));
  const prefixEdits: ByteEdit[] = [];
  for (const s of spans) {
    const d = delta.get(s)!;
    if (d === 0) continue;
    const newLen = s.end - s.start + d;
    const enc = encodeVarint(newLen);
    const oldPrefix = s.start - s.lenStart;
    prefixEdits.push({ start: s.lenStart, end: s.start, data: enc, span: s.parent! });
    const pd = enc.length - oldPrefix;
    if (pd !== 0) add(s.parent, pd);
  }
  const all = [...edits, ...prefixEdits].sort((a, b) => a.start - b.start);
  const chunks: Uint8Array[] = [];
  let pos = 0;
  let length = 0;
  for (const e of all) {
    if (e.start < pos) throw new RangeError(`edit at byte ${e.start} overlaps a length prefix`);
    if (e.start > pos) chunks.push(bytes.subarray(pos, e.start));
    if (e.data.length > 0) chunks.push(e.data);
    length += e.start - pos + e.data.length;
    pos = e.end;
  }
  if (pos < bytes.length) chunks.push(bytes.subarray(pos));
  length += bytes.length - pos;
  if (length > maxBytes)
    throw new VeraError(
      OnnxErrorCode.ONNX_TOO_LARGE,
      `the merged model would be ${length} bytes, above the protobuf limit of ${maxBytes}`,
      {
        expected: `<= ${maxBytes}`,
        received: length,
      },
    );
  return { chunks, length };
}

/** Concatenate {@link EditedBytes} into one buffer. */
export function concatEdited(e: EditedBytes): Uint8Array {
  return concatBytes(e.chunks);
}

/** Re-exported from the wire module, where every protobuf encoder lives. */
export { encodePackedVarints } from "./wire.js";

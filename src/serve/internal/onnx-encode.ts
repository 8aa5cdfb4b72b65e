/**
 * Internal: protobuf encoders for the few ONNX messages a graft appends (NodeProto, TensorProto, ValueInfoProto,
 * StringStringEntryProto), each returned as a complete field (tag + length + payload) of its parent message.
 */
import { concatBytes, encodeVarint, lenField, varintField } from "../../onnx/wire.js";

/** One node attribute: an INT (non-negative) or INTS (non-negative) value. */
export type NodeAttr = { name: string; i: number } | { name: string; ints: number[] };

/** A node to append. */
export interface NodeSpec {
  name: string;
  opType: string;
  inputs: string[];
  outputs: string[];
  attrs?: NodeAttr[];
}

function encodeAttr(a: NodeAttr): Uint8Array {
  if ("i" in a) return concatBytes([lenField(1, a.name), varintField(20, 2), varintField(3, a.i)]);
  return concatBytes([lenField(1, a.name), varintField(20, 7), ...a.ints.map((v) => varintField(8, v))]);
}

/** GraphProto field 1 (node). */
export function nodeField(n: NodeSpec): Uint8Array {
  const parts = [
    ...n.inputs.map((s) => lenField(1, s)),
    ...n.outputs.map((s) => lenField(2, s)),
    lenField(3, n.name),
    lenField(4, n.opType),
    ...(n.attrs ?? []).map((a) => lenField(5, encodeAttr(a))),
  ];
  return lenField(1, concatBytes(parts));
}

/** GraphProto field 5 (initializer): a tensor stored as raw_data. */
export function initializerField(name: string, dataType: number, dims: readonly number[], raw: Uint8Array): Uint8Array {
  const parts: Uint8Array[] = [];
  if (dims.length > 0) parts.push(lenField(1, concatBytes(dims.map((d) => encodeVarint(d)))));
  parts.push(varintField(2, dataType), lenField(8, name), lenField(9, raw));
  return lenField(5, concatBytes(parts));
}

/** GraphProto field 11 (input): a tensor input with dims given as numbers or symbolic names. */
export function inputField(name: string, elemType: number, dims: ReadonlyArray<number | string>): Uint8Array {
  const dimMsgs = dims.map((d) => lenField(1, typeof d === "number" ? varintField(1, d) : lenField(2, d)));
  const tensorType = concatBytes([varintField(1, elemType), lenField(2, concatBytes(dimMsgs))]);
  const type = lenField(1, tensorType);
  return lenField(11, concatBytes([lenField(1, name), lenField(2, type)]));
}

/** ModelProto field 14 (metadata_props). */
export function metadataField(key: string, value: string): Uint8Array {
  return lenField(14, concatBytes([lenField(1, key), lenField(2, value)]));
}

/** Little-endian int64 bytes. */
export function int64Bytes(values: readonly number[]): Uint8Array {
  const a = new BigInt64Array(values.map((v) => BigInt(v)));
  return new Uint8Array(a.buffer);
}

/** Little-endian float32 bytes. */
export function float32Bytes(values: Float32Array): Uint8Array {
  return new Uint8Array(values.buffer, values.byteOffset, values.byteLength).slice();
}

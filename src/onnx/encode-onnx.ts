/**
 * The one ONNX encoder of the package: NodeProto, TensorProto (raw_data), ValueInfoProto and metadata entries, as
 * complete fields of their parent message (to append to an existing model), and {@link buildOnnxModel} for the small
 * single-graph models the compute backends run. Only the protobuf fields these need are written. Pure.
 */
import { ProtoWriter } from "./wire.js";

/** ONNX TensorProto.DataType values used by the encoders' callers. */
export const OnnxType = { FLOAT: 1, UINT16: 4, INT32: 6, INT64: 7, FLOAT16: 10 } as const;

/** A dimension: a fixed size or a symbolic name. */
export type Dim = number | string;

/** A graph input or output. */
export interface ValueInfo {
  name: string;
  type: number;
  shape: Dim[];
}

/** A node attribute: an INT, INTS (non-negative) or FLOAT value. */
export type Attr = { name: string; i: number } | { name: string; ints: number[] } | { name: string; f: number };

/** A graph node. */
export interface NodeSpec {
  /** @default `n<position>` in {@link buildOnnxModel}, none in {@link nodeField} */
  name?: string;
  op: string;
  inputs: string[];
  outputs: string[];
  attrs?: Attr[];
}

/** A constant initializer with raw little-endian data. */
export interface Initializer {
  name: string;
  type: number;
  dims: number[];
  raw: Uint8Array;
}

function encodeAttr(a: Attr): ProtoWriter {
  const at = new ProtoWriter().str(1, a.name);
  if ("i" in a) at.int(3, a.i).int(20, 2);
  else if ("f" in a) at.float(2, a.f).int(20, 1);
  else {
    for (const v of a.ints) at.int(8, v);
    at.int(20, 7);
  }
  return at;
}

function encodeNode(n: NodeSpec): ProtoWriter {
  const node = new ProtoWriter();
  for (const i of n.inputs) node.str(1, i);
  for (const o of n.outputs) node.str(2, o);
  if (n.name !== undefined) node.str(3, n.name);
  node.str(4, n.op);
  for (const a of n.attrs ?? []) node.msg(5, encodeAttr(a));
  return node;
}

function encodeTensor(t: Initializer): ProtoWriter {
  const tp = new ProtoWriter();
  for (const d of t.dims) tp.int(1, d);
  return tp.int(2, t.type).str(8, t.name).bytes(9, t.raw);
}

function encodeValueInfo(v: ValueInfo): ProtoWriter {
  const shape = new ProtoWriter();
  for (const d of v.shape)
    shape.msg(1, typeof d === "number" ? new ProtoWriter().int(1, d) : new ProtoWriter().str(2, d));
  const tensor = new ProtoWriter().int(1, v.type).msg(2, shape);
  return new ProtoWriter().str(1, v.name).msg(2, new ProtoWriter().msg(1, tensor));
}

/** GraphProto field 1 (node), tag and length included. */
export function nodeField(n: NodeSpec): Uint8Array {
  return new ProtoWriter().msg(1, encodeNode(n)).finish();
}

/** GraphProto field 5 (initializer): a tensor stored as raw_data. */
export function initializerField(t: Initializer): Uint8Array {
  return new ProtoWriter().msg(5, encodeTensor(t)).finish();
}

/** GraphProto field 11 (input): a tensor input with dims given as numbers or symbolic names. */
export function inputField(v: ValueInfo): Uint8Array {
  return new ProtoWriter().msg(11, encodeValueInfo(v)).finish();
}

/** ModelProto field 14 (metadata_props). */
export function metadataField(key: string, value: string): Uint8Array {
  return new ProtoWriter().msg(14, new ProtoWriter().str(1, key).str(2, value)).finish();
}

/** Little-endian int64 bytes. */
export function int64Bytes(values: readonly number[]): Uint8Array {
  const a = new BigInt64Array(values.map((v) => BigInt(v)));
  return new Uint8Array(a.buffer);
}

/** Little-endian float32 bytes (a copy). */
export function float32Bytes(values: Float32Array): Uint8Array {
  return new Uint8Array(values.buffer, values.byteOffset, values.byteLength).slice();
}

/**
 * Serialize a single-graph ONNX model (IR 8, default domain opset 17). A minimal writer for the
 * merge graphs; exported from `verakit/node` for the benchmarks, not a general ONNX builder.
 */
export function buildOnnxModel(spec: {
  nodes: NodeSpec[];
  inputs: ValueInfo[];
  outputs: ValueInfo[];
  initializers?: Initializer[];
}): Uint8Array {
  const g = new ProtoWriter();
  spec.nodes.forEach((n, idx) => g.msg(1, encodeNode({ ...n, name: n.name ?? `n${idx}` })));
  g.str(2, "verakit_merge");
  for (const t of spec.initializers ?? []) g.msg(5, encodeTensor(t));
  for (const v of spec.inputs) g.msg(11, encodeValueInfo(v));
  for (const v of spec.outputs) g.msg(12, encodeValueInfo(v));
  return new ProtoWriter()
    .int(1, 8)
    .str(2, "verakit")
    .msg(7, g)
    .msg(8, new ProtoWriter().str(1, "").int(2, 17))
    .finish();
}

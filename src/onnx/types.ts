/**
 * The parts of an ONNX model the merger needs, read at the wire level with byte offsets of
 * everything that may be patched. Nothing here is a full ONNX object model: fields the merger does
 * not need are left in the bytes, untouched.
 */
import type { WireField } from "./wire.js";

/** TensorProto.DataType values. */
export const OnnxDataType = {
  UNDEFINED: 0,
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  UINT16: 4,
  INT16: 5,
  INT32: 6,
  INT64: 7,
  STRING: 8,
  BOOL: 9,
  FLOAT16: 10,
  DOUBLE: 11,
  UINT32: 12,
  UINT64: 13,
  COMPLEX64: 14,
  COMPLEX128: 15,
  BFLOAT16: 16,
  FLOAT8E4M3FN: 17,
  FLOAT8E4M3FNUZ: 18,
  FLOAT8E5M2: 19,
  FLOAT8E5M2FNUZ: 20,
  UINT4: 21,
  INT4: 22,
  FLOAT4E2M1: 23,
} as const;

/** Readable name of a TensorProto data type number. */
export function dataTypeName(t: number): string {
  for (const [k, v] of Object.entries(OnnxDataType)) if (v === t) return k;
  return `type ${t}`;
}

/**
 * A length-delimited sub-message of the model: where its length prefix and payload are. The
 * top-level ModelProto has `lenStart === -1` and no parent.
 */
export interface MessageSpan {
  /** Offset of the length varint (-1 for the top-level message). */
  lenStart: number;
  /** First payload byte. */
  start: number;
  /** Just after the payload. */
  end: number;
  /** The enclosing message. */
  parent: MessageSpan | null;
}

/** Where a tensor's values are. */
export type TensorStorage =
  /** `raw_data` (field 9): little-endian bytes at [start, end) of the model. */
  | { kind: "raw"; start: number; end: number }
  /** `float_data` (field 4): packed LEN fields and/or one fixed32 field per value. */
  | { kind: "float_data"; fields: WireField[]; count: number }
  /** `int32_data` (field 5): varints (packed or not), fp16/bf16 bit patterns for those types. */
  | { kind: "int32_data"; fields: WireField[]; count: number }
  /** External data: bytes in another file. */
  | {
      kind: "external";
      location: string;
      offset: number;
      length: number | undefined;
      checksum?: string;
      entries: Array<{ key: string; value: string }>;
    }
  /** No values at all (allowed for zero-sized tensors only). */
  | { kind: "empty" }
  /** Another typed field (int64_data, double_data, string_data, ...), never patched. */
  | { kind: "other"; field: number };

/** One TensorProto (an initializer or a tensor attribute). */
export interface OnnxTensor {
  name: string;
  /** Dimensions (non-negative safe integers). */
  dims: number[];
  /** TensorProto.DataType number (see {@link OnnxDataType}). */
  dataType: number;
  storage: TensorStorage;
  /** The TensorProto message. */
  span: MessageSpan;
  /** Index into {@link OnnxModel.graphs} of the graph holding it (-1 for a Constant node's tensor). */
  graphIndex: number;
}

/** One NodeProto attribute (only the parts the locator reads). */
export interface OnnxAttribute {
  name: string;
  /** AttributeProto.type. */
  type: number;
  i?: bigint;
  f?: number;
  s?: string;
  ints?: bigint[];
  /** Tensor value (Constant nodes). */
  t?: OnnxTensor;
  /** Indexes into {@link OnnxModel.graphs} of subgraph attributes (g, graphs). */
  graphs: number[];
}

/** One NodeProto. */
export interface OnnxNode {
  name: string;
  opType: string;
  domain: string;
  inputs: string[];
  outputs: string[];
  attributes: OnnxAttribute[];
  /** metadata_props (field 9, IR 10): e.g. `pkg.torch.onnx.name_scopes`. */
  metadata: Record<string, string>;
  /** Index into {@link OnnxModel.graphs} of the graph holding the node. */
  graphIndex: number;
  /** Position of the node in its graph's `nodes`. */
  index: number;
  span: MessageSpan;
}

/** One GraphProto: the main graph or a subgraph of an If/Loop/Scan node. */
export interface OnnxGraph {
  name: string;
  nodes: OnnxNode[];
  initializers: OnnxTensor[];
  /** Names of graph inputs. */
  inputs: string[];
  /** Names of graph outputs. */
  outputs: string[];
  /** Graph inputs with their types, in the order of `inputs`. */
  inputInfo: OnnxValueInfo[];
  /** Graph outputs with their types, in the order of `outputs`. */
  outputInfo: OnnxValueInfo[];
  /** Index of the enclosing graph (-1 for the main graph). */
  parentGraph: number;
  span: MessageSpan;
}

/** A graph input or output (ValueInfoProto): its name, element type and shape. */
export interface OnnxValueInfo {
  name: string;
  /** TensorProto element type (1 float32, 10 float16, 7 int64, ...); 0 when not a tensor or untyped. */
  elemType: number;
  /** Dimensions: a number when fixed, a string when symbolic (`batch`), null when unknown; null when no shape. */
  dims: Array<number | string | null> | null;
}

/** A parsed model: the bytes plus an index of graphs, nodes and initializers with offsets. */
export interface OnnxModel {
  /** The whole .onnx file; every offset refers to it. */
  bytes: Uint8Array;
  irVersion: number;
  opsetImports: Array<{ domain: string; version: number }>;
  producerName: string;
  producerVersion: string;
  /** ModelProto.metadata_props (a key given twice keeps its last value). */
  metadata: Record<string, string>;
  /** All graphs: index 0 is the main graph, then subgraphs in file order. */
  graphs: OnnxGraph[];
}

const BITS: Record<number, number> = {
  1: 32,
  2: 8,
  3: 8,
  4: 16,
  5: 16,
  6: 32,
  7: 64,
  9: 8,
  10: 16,
  11: 64,
  12: 32,
  13: 64,
  14: 64,
  15: 128,
  16: 16,
  17: 8,
  18: 8,
  19: 8,
  20: 8,
  21: 4,
  22: 4,
  23: 4,
};

/**
 * Bytes of a tensor's values in raw (little-endian, packed) form, from its type and dims;
 * undefined for strings and unknown types.
 */
export function tensorByteLength(t: Pick<OnnxTensor, "dims" | "dataType">): number | undefined {
  const bits = BITS[t.dataType];
  if (bits === undefined) return undefined;
  let n = 1;
  for (const d of t.dims) n *= d;
  return Math.ceil((n * bits) / 8);
}

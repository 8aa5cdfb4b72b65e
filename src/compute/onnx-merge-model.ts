/**
 * Builds the small ONNX graphs the onnxruntime backends run (internal; pure, no onnx package).
 * Only the protobuf fields these graphs need are written.
 */

import { ProtoWriter } from "../onnx/wire.js";

/** ONNX TensorProto.DataType values used here. */
export const OnnxType = { FLOAT: 1, UINT16: 4, INT32: 6, INT64: 7, FLOAT16: 10 } as const;

/** A dimension: a fixed size or a symbolic name. */
export type Dim = number | string;

/** A graph input or output. */
export interface ValueInfo {
  name: string;
  type: number;
  shape: Dim[];
}

/** A node attribute (int, ints or float). */
export type Attr = { name: string; i: number } | { name: string; ints: number[] } | { name: string; f: number };

/** A graph node. */
export interface NodeSpec {
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

function valueInfo(v: ValueInfo): ProtoWriter {
  const shape = new ProtoWriter();
  for (const d of v.shape)
    shape.msg(1, typeof d === "number" ? new ProtoWriter().int(1, d) : new ProtoWriter().str(2, d));
  const tensor = new ProtoWriter().int(1, v.type).msg(2, shape);
  return new ProtoWriter().str(1, v.name).msg(2, new ProtoWriter().msg(1, tensor));
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
  spec.nodes.forEach((n, idx) => {
    const node = new ProtoWriter();
    for (const i of n.inputs) node.str(1, i);
    for (const o of n.outputs) node.str(2, o);
    node.str(3, `n${idx}`).str(4, n.op);
    for (const a of n.attrs ?? []) {
      const at = new ProtoWriter().str(1, a.name);
      if ("i" in a) at.int(3, a.i).int(20, 2);
      else if ("f" in a) at.float(2, a.f).int(20, 1);
      else {
        for (const v of a.ints) at.int(8, v);
        at.int(20, 7);
      }
      node.msg(5, at);
    }
    g.msg(1, node);
  });
  g.str(2, "verakit_merge");
  for (const t of spec.initializers ?? []) {
    const tp = new ProtoWriter();
    for (const d of t.dims) tp.int(1, d);
    tp.int(2, t.type).str(8, t.name).bytes(9, t.raw);
    g.msg(5, tp);
  }
  for (const v of spec.inputs) g.msg(11, valueInfo(v));
  for (const v of spec.outputs) g.msg(12, valueInfo(v));
  return new ProtoWriter()
    .int(1, 8)
    .str(2, "verakit")
    .msg(7, g)
    .msg(8, new ProtoWriter().str(1, "").int(2, 17))
    .finish();
}

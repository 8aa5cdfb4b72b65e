import { VeraError } from "../errors.js";
import { OnnxErrorCode } from "./error-codes.js";
import type {
  MessageSpan,
  OnnxAttribute,
  OnnxGraph,
  OnnxModel,
  OnnxNode,
  OnnxTensor,
  OnnxValueInfo,
  TensorStorage,
} from "./types.js";
import {
  fieldInt64,
  fieldString,
  fieldUint,
  fields,
  pushRepeatedInt64,
  readSafeVarint,
  readVarint,
  WireType,
  type WireField,
} from "./wire.js";

/** Parameters of {@link readOnnxModel}. */
export interface ReadOnnxModelParams {
  /** The bytes of a `.onnx` file (a ModelProto). External data files are not read. */
  bytes: Uint8Array;
  /**
   * Deepest subgraph nesting followed (If/Loop/Scan bodies inside bodies, through attributes `g`
   * and `graphs`). Deeper models are refused with `ONNX_PARSE`. Values above
   * {@link MAX_SUBGRAPH_DEPTH} are treated as {@link MAX_SUBGRAPH_DEPTH}.
   * @default 64
   */
  maxDepth?: number;
}

/**
 * Hard limit on subgraph nesting. Each level is three nested messages (GraphProto -> NodeProto ->
 * AttributeProto), so the reader's message nesting, and its recursion, stay below 3 * 256 + 3
 * levels whatever the input. Deprecated groups are bounded separately (100 levels, skipped
 * without recursion); the reader descends into no other nested message (FunctionProto bodies,
 * sparse tensors and type protos are skipped as opaque bytes).
 */
export const MAX_SUBGRAPH_DEPTH = 256;

function invalid(message: string, path?: string): VeraError {
  return new VeraError(OnnxErrorCode.ONNX_INVALID, message, path === undefined ? {} : { path });
}

function sub(f: WireField, parent: MessageSpan): MessageSpan {
  if (f.wireType !== WireType.LEN)
    throw new VeraError(
      OnnxErrorCode.ONNX_PARSE,
      `malformed ONNX protobuf at byte ${f.start}: field ${f.field} should be a message`,
    );
  return { lenStart: f.lenStart, start: f.dataStart, end: f.dataEnd, parent };
}

function safeDim(v: bigint, where: string): number {
  if (v < 0n || v > BigInt(Number.MAX_SAFE_INTEGER)) throw invalid(`${where}: dimension ${v} is out of range`, where);
  return Number(v);
}

/** Read StringStringEntryProto {key(1), value(2)}. */
function readEntry(bytes: Uint8Array, span: MessageSpan): { key: string; value: string } {
  let key = "";
  let value = "";
  for (const f of fields(bytes, span.start, span.end)) {
    if (f.field === 1) key = fieldString(bytes, f);
    else if (f.field === 2) value = fieldString(bytes, f);
  }
  return { key, value };
}

class Reader {
  readonly graphs: OnnxGraph[] = [];
  constructor(
    readonly bytes: Uint8Array,
    readonly maxDepth: number,
  ) {}

  tensor(span: MessageSpan, graphIndex: number): OnnxTensor {
    const b = this.bytes;
    const dims: bigint[] = [];
    let dataType = 0;
    let name = "";
    let raw: WireField | undefined;
    const floatFields: WireField[] = [];
    const int32Fields: WireField[] = [];
    let otherField = 0;
    let location = 0;
    const entries: Array<{ key: string; value: string }> = [];
    for (const f of fields(b, span.start, span.end)) {
      switch (f.field) {
        case 1:
          pushRepeatedInt64(b, f, dims);
          break;
        case 2:
          dataType = fieldUint(b, f);
          break;
        case 4:
          floatFields.push(f);
          break;
        case 5:
          int32Fields.push(f);
          break;
        case 6:
        case 7:
        case 10:
        case 11:
          otherField = f.field;
          break;
        case 8:
          name = fieldString(b, f);
          break;
        case 9:
          if (f.wireType !== WireType.LEN)
            throw new VeraError(
              OnnxErrorCode.ONNX_PARSE,
              `malformed ONNX protobuf at byte ${f.start}: raw_data is not bytes`,
            );
          raw = f;
          break;
        case 13:
          entries.push(readEntry(b, sub(f, span)));
          break;
        case 14:
          location = fieldUint(b, f);
          break;
        default:
          break;
      }
    }
    const where = `initializer ${JSON.stringify(name)}`;
    const dimsN = dims.map((d) => safeDim(d, where));
    let storage: TensorStorage;
    if (location === 1) {
      const ext: Record<string, string> = {};
      for (const e of entries) {
        if (e.key in ext)
          throw new VeraError(
            OnnxErrorCode.ONNX_EXTERNAL_DATA,
            `${where}: external_data key "${e.key}" appears twice`,
            { path: name },
          );
        ext[e.key] = e.value;
      }
      const loc = ext["location"];
      if (loc === undefined || loc === "")
        throw new VeraError(OnnxErrorCode.ONNX_EXTERNAL_DATA, `${where}: external data without a "location"`, {
          path: name,
          expected: "location",
        });
      const num = (key: string): number | undefined => {
        const v = ext[key];
        if (v === undefined) return undefined;
        if (!/^[0-9]+$/.test(v) || !Number.isSafeInteger(Number(v)))
          throw new VeraError(
            OnnxErrorCode.ONNX_EXTERNAL_DATA,
            `${where}: external_data ${key} must be a non-negative integer`,
            {
              path: name,
              expected: "decimal integer",
              received: v,
            },
          );
        return Number(v);
      };
      const offset = num("offset") ?? 0;
      const length = num("length");
      storage = { kind: "external", location: loc, offset, length, entries };
      if (ext["checksum"] !== undefined) storage.checksum = ext["checksum"];
    } else if (location !== 0) {
      throw invalid(`${where}: unknown data_location ${location}`, name);
    } else if (raw) {
      storage = { kind: "raw", start: raw.dataStart, end: raw.dataEnd };
    } else if (floatFields.length > 0) {
      storage = { kind: "float_data", fields: floatFields, count: countFixed32(floatFields) };
    } else if (int32Fields.length > 0) {
      storage = { kind: "int32_data", fields: int32Fields, count: countVarints(b, int32Fields) };
    } else if (otherField !== 0) {
      storage = { kind: "other", field: otherField };
    } else {
      storage = { kind: "empty" };
    }
    return { name, dims: dimsN, dataType, storage, span, graphIndex };
  }

  attribute(span: MessageSpan, graphIndex: number, depth: number): OnnxAttribute {
    const b = this.bytes;
    const attr: OnnxAttribute = { name: "", type: 0, graphs: [] };
    const subgraphs: MessageSpan[] = [];
    for (const f of fields(b, span.start, span.end)) {
      switch (f.field) {
        case 1:
          attr.name = fieldString(b, f);
          break;
        case 20:
          attr.type = fieldUint(b, f);
          break;
        case 2:
          if (f.wireType === WireType.I32)
            attr.f = new DataView(b.buffer, b.byteOffset + f.dataStart, 4).getFloat32(0, true);
          break;
        case 3:
          attr.i = fieldInt64(b, f);
          break;
        case 4:
          if (f.wireType === WireType.LEN) {
            try {
              attr.s = fieldString(b, f);
            } catch {
              /* binary string: not needed */
            }
          }
          break;
        case 5:
          attr.t = this.tensor(sub(f, span), -1);
          break;
        case 6:
        case 11:
          subgraphs.push(sub(f, span));
          break;
        case 8:
          attr.ints ??= [];
          pushRepeatedInt64(b, f, attr.ints);
          break;
        default:
          break;
      }
    }
    for (const g of subgraphs) attr.graphs.push(this.graph(g, graphIndex, depth + 1));
    return attr;
  }

  node(span: MessageSpan, graphIndex: number, index: number, depth: number): OnnxNode {
    const b = this.bytes;
    const node: OnnxNode = {
      name: "",
      opType: "",
      domain: "",
      inputs: [],
      outputs: [],
      attributes: [],
      metadata: {},
      graphIndex,
      index,
      span,
    };
    const attrSpans: MessageSpan[] = [];
    for (const f of fields(b, span.start, span.end)) {
      switch (f.field) {
        case 1:
          node.inputs.push(fieldString(b, f));
          break;
        case 2:
          node.outputs.push(fieldString(b, f));
          break;
        case 3:
          node.name = fieldString(b, f);
          break;
        case 4:
          node.opType = fieldString(b, f);
          break;
        case 5:
          attrSpans.push(sub(f, span));
          break;
        case 7:
          node.domain = fieldString(b, f);
          break;
        case 9: {
          const e = readEntry(b, sub(f, span));
          node.metadata[e.key] = e.value;
          break;
        }
        default:
          break;
      }
    }
    for (const a of attrSpans) node.attributes.push(this.attribute(a, graphIndex, depth));
    return node;
  }

  valueInfo(span: MessageSpan): OnnxValueInfo {
    const b = this.bytes;
    const info: OnnxValueInfo = { name: "", elemType: 0, dims: null };
    for (const f of fields(b, span.start, span.end)) {
      if (f.field === 1) info.name = fieldString(b, f);
      else if (f.field === 2) Object.assign(info, tensorTypeOf(b, sub(f, span)));
    }
    return info;
  }

  /** Parse a GraphProto; returns its index in `graphs`. */
  graph(span: MessageSpan, parentGraph: number, depth: number): number {
    if (depth > this.maxDepth)
      throw new VeraError(
        OnnxErrorCode.ONNX_PARSE,
        `malformed ONNX protobuf at byte ${span.start}: subgraphs nested deeper than ${this.maxDepth}`,
        { path: `@${span.start}`, expected: `<= ${this.maxDepth} levels of subgraphs`, received: "deeper" },
      );
    const b = this.bytes;
    const index = this.graphs.length;
    const g: OnnxGraph = {
      name: "",
      nodes: [],
      initializers: [],
      inputs: [],
      outputs: [],
      inputInfo: [],
      outputInfo: [],
      parentGraph,
      span,
    };
    this.graphs.push(g);
    const nodeSpans: MessageSpan[] = [];
    for (const f of fields(b, span.start, span.end)) {
      switch (f.field) {
        case 1:
          nodeSpans.push(sub(f, span));
          break;
        case 2:
          g.name = fieldString(b, f);
          break;
        case 5:
          g.initializers.push(this.tensor(sub(f, span), index));
          break;
        case 11: {
          const v = this.valueInfo(sub(f, span));
          g.inputs.push(v.name);
          g.inputInfo.push(v);
          break;
        }
        case 12: {
          const v = this.valueInfo(sub(f, span));
          g.outputs.push(v.name);
          g.outputInfo.push(v);
          break;
        }
        default:
          break;
      }
    }
    nodeSpans.forEach((n, i) => g.nodes.push(this.node(n, index, i, depth)));
    return index;
  }
}

/** TypeProto (field 2 of a ValueInfoProto) -> element type and shape; tensor types only. */
function tensorTypeOf(b: Uint8Array, type: MessageSpan): Pick<OnnxValueInfo, "elemType" | "dims"> {
  let elemType = 0;
  let dims: OnnxValueInfo["dims"] = null;
  for (const t of fields(b, type.start, type.end)) {
    if (t.field !== 1) continue; // tensor_type
    const tensor = sub(t, type);
    for (const f of fields(b, tensor.start, tensor.end)) {
      if (f.field === 1) elemType = fieldUint(b, f);
      else if (f.field === 2) {
        const shape = sub(f, tensor);
        dims = [];
        for (const d of fields(b, shape.start, shape.end)) {
          if (d.field !== 1) continue;
          const dim = sub(d, shape);
          let v: number | string | null = null;
          for (const x of fields(b, dim.start, dim.end)) {
            if (x.field === 1 && x.wireType === WireType.VARINT) v = readSafeVarint(b, x.dataStart, x.dataEnd).value;
            else if (x.field === 2) v = fieldString(b, x);
          }
          dims.push(v);
        }
      }
    }
  }
  return { elemType, dims };
}

/** ModelProto.metadata_props entries (field 14) of a model's top-level message. */
function metadataOf(bytes: Uint8Array, top: MessageSpan): Record<string, string> {
  const out = new Map<string, string>();
  for (const f of fields(bytes, top.start, top.end)) {
    if (f.field !== 14) continue;
    const e = readEntry(bytes, sub(f, top));
    out.set(e.key, e.value);
  }
  // Own data properties only (a key such as "__proto__" stays a plain key).
  return Object.fromEntries(out);
}

/** Parameters of {@link readOnnxMetadata}. */
export interface ReadOnnxMetadataParams {
  /** The bytes of a `.onnx` file (a ModelProto); only its top-level fields are read, the graph is skipped. */
  bytes: Uint8Array;
}

/**
 * A model's metadata_props (ModelProto field 14) without parsing its graph.
 *
 * @throws VeraError `ONNX_PARSE` for bytes that are not a protobuf message.
 */
export function readOnnxMetadata(params: ReadOnnxMetadataParams): Record<string, string> {
  const { bytes } = params;
  return metadataOf(bytes, { lenStart: -1, start: 0, end: bytes.length, parent: null });
}

function countFixed32(fs: WireField[]): number {
  let n = 0;
  for (const f of fs) {
    if (f.wireType === WireType.I32) n += 1;
    else if (f.wireType === WireType.LEN) {
      const len = f.dataEnd - f.dataStart;
      if (len % 4 !== 0)
        throw new VeraError(
          OnnxErrorCode.ONNX_PARSE,
          `malformed ONNX protobuf at byte ${f.start}: packed float_data of ${len} bytes`,
        );
      n += len / 4;
    } else
      throw new VeraError(
        OnnxErrorCode.ONNX_PARSE,
        `malformed ONNX protobuf at byte ${f.start}: float_data has wire type ${f.wireType}`,
      );
  }
  return n;
}

function countVarints(bytes: Uint8Array, fs: WireField[]): number {
  let n = 0;
  for (const f of fs) {
    if (f.wireType === WireType.VARINT) n += 1;
    else if (f.wireType === WireType.LEN) {
      let p = f.dataStart;
      while (p < f.dataEnd) {
        p = readVarint(bytes, p, f.dataEnd).next;
        n++;
      }
    } else
      throw new VeraError(
        OnnxErrorCode.ONNX_PARSE,
        `malformed ONNX protobuf at byte ${f.start}: int32_data has wire type ${f.wireType}`,
      );
  }
  return n;
}

/**
 * Parse the structure of an ONNX ModelProto at the wire level: graphs (with If/Loop/Scan
 * subgraphs, their typed inputs and outputs), nodes (inputs, outputs, attributes, metadata_props), the model's
 * metadata_props, and initializers with the byte
 * offsets of their values. Unknown and unneeded fields are skipped, never dropped: the result
 * points into `bytes`, which stay the source of truth.
 *
 * Every recursion is bounded: subgraphs by `maxDepth` (at most {@link MAX_SUBGRAPH_DEPTH}), groups
 * by the wire reader's limit of 100, so no input makes it overflow the stack.
 *
 * @throws VeraError `ONNX_PARSE` (malformed protobuf, nesting beyond the limits), `ONNX_NO_GRAPH`, `ONNX_INVALID`, `ONNX_EXTERNAL_DATA`.
 */
export function readOnnxModel(params: ReadOnnxModelParams): OnnxModel {
  const { bytes } = params;
  const maxDepth = Math.max(0, Math.min(Math.floor(params.maxDepth ?? 64), MAX_SUBGRAPH_DEPTH));
  const reader = new Reader(bytes, Number.isNaN(maxDepth) ? 64 : maxDepth);
  const top: MessageSpan = { lenStart: -1, start: 0, end: bytes.length, parent: null };
  let irVersion = 0;
  let producerName = "";
  let producerVersion = "";
  const opsetImports: Array<{ domain: string; version: number }> = [];
  let graphSpan: MessageSpan | undefined;
  for (const f of fields(bytes, 0, bytes.length)) {
    switch (f.field) {
      case 1:
        irVersion = fieldUint(bytes, f);
        break;
      case 2:
        producerName = fieldString(bytes, f);
        break;
      case 3:
        producerVersion = fieldString(bytes, f);
        break;
      case 7:
        graphSpan = sub(f, top);
        break;
      case 8: {
        const s = sub(f, top);
        let domain = "";
        let version = 0;
        for (const g of fields(bytes, s.start, s.end)) {
          if (g.field === 1) domain = fieldString(bytes, g);
          else if (g.field === 2) version = Number(fieldInt64(bytes, g));
        }
        opsetImports.push({ domain, version });
        break;
      }
      default:
        break;
    }
  }
  if (!graphSpan)
    throw new VeraError(OnnxErrorCode.ONNX_NO_GRAPH, "the ONNX model has no graph (ModelProto field 7)", {
      expected: "graph",
    });
  reader.graph(graphSpan, -1, 0);
  const metadata = metadataOf(bytes, top);
  return { bytes, irVersion, opsetImports, producerName, producerVersion, metadata, graphs: reader.graphs };
}

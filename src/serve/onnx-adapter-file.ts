import { Builder } from "flatbuffers";
import { VeraError } from "../errors.js";
import { ServeErrorCode } from "./error-codes.js";

/**
 * onnxruntime's adapter file (`.onnx_adapter`, onnxruntime >= 1.20): a flatbuffer with file identifier "TORT" whose root
 * table is `onnxruntime.adapters.Adapter` (schema `onnxruntime/lora/adapter_format/adapter_schema.fbs`):
 *
 * ```
 * table Parameter { name:string; dims:[int64]; data_type:TensorDataType (int32); raw_data:[uint8] (force_align: 8); }
 * table Adapter { format_version:int; adapter_version:int; model_version:int; parameters:[Parameter]; }
 * ```
 *
 * onnxruntime feeds each parameter to the model input of the same name (`RunOptions.add_active_adapter`,
 * onnxruntime-genai `Adapters.LoadAdapter`). Only float32 and float16 parameters are written or read here.
 */

/** The only `format_version` onnxruntime accepts (`kAdapterFormatVersion`). */
export const ONNX_ADAPTER_FORMAT_VERSION = 1;
/** The flatbuffer file identifier of adapter files. */
export const ONNX_ADAPTER_FILE_IDENTIFIER = "TORT";

/** Element types this codec handles, with their `TensorDataType` values (the ONNX TensorProto numbering). */
const DATA_TYPES = { float32: 1, float16: 10 } as const;
/** Element type of an adapter parameter. */
export type OnnxAdapterDtype = keyof typeof DATA_TYPES;

/** One named tensor of an adapter file. */
export interface OnnxAdapterParameter {
  /** The model input it is fed to. */
  name: string;
  /** Shape; every entry a non-negative integer. */
  dims: number[];
  dtype: OnnxAdapterDtype;
  /** Row-major values: `Float32Array` for float32, `Uint16Array` of IEEE half bit patterns for float16. */
  data: Float32Array | Uint16Array;
}

/** An adapter file's content. */
export interface OnnxAdapterFile {
  parameters: OnnxAdapterParameter[];
  /** Free version number of the adapter. @default 0 */
  adapterVersion?: number;
  /** Free version number of the model it is for. @default 0 */
  modelVersion?: number;
}

/** An adapter file as read back: versions always present. */
export interface OnnxAdapterFileRead extends Required<OnnxAdapterFile> {
  formatVersion: number;
}

// Vtable slots (field id i is at byte 4 + 2i of the vtable).
const ADAPTER_FIELDS = { formatVersion: 0, adapterVersion: 1, modelVersion: 2, parameters: 3 } as const;
const PARAMETER_FIELDS = { name: 0, dims: 1, dataType: 2, rawData: 3 } as const;
/** Flatbuffers address at most 2 GiB. */
const MAX_FILE_BYTES = 0x7fff_ffff;

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function fail(message: string, extra: { path?: string; expected?: unknown; received?: unknown } = {}): VeraError {
  return new VeraError(ServeErrorCode.SERVE_ADAPTER_FILE, message, extra);
}

function elementSize(dtype: OnnxAdapterDtype): number {
  return dtype === "float32" ? 4 : 2;
}

function elementCount(dims: readonly number[], where: string): number {
  let n = 1;
  for (const d of dims) {
    if (!Number.isSafeInteger(d) || d < 0)
      throw fail(`${where}: dimension ${String(d)} is not a non-negative integer`, { path: where, received: dims });
    n *= d;
    if (!Number.isSafeInteger(n) || n > MAX_FILE_BYTES)
      throw fail(`${where}: shape [${dims.join(", ")}] is too large for an adapter file`, { path: where });
  }
  return n;
}

function checkInt32(value: number, where: string): number {
  if (!Number.isInteger(value) || value < -0x8000_0000 || value > 0x7fff_ffff)
    throw fail(`${where} must be a 32-bit integer`, { path: where, received: value });
  return value;
}

/** Little-endian bytes of a parameter's values (a view when the platform is little-endian). */
function leBytes(data: Float32Array | Uint16Array): Uint8Array {
  const view = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (LITTLE_ENDIAN) return view;
  const out = new Uint8Array(data.byteLength);
  const dv = new DataView(out.buffer);
  if (data instanceof Float32Array) data.forEach((v, i) => dv.setFloat32(i * 4, v, true));
  else data.forEach((v, i) => dv.setUint16(i * 2, v, true));
  return out;
}

/** Code-point order of names (the same on every platform). */
function byName(a: OnnxAdapterParameter, b: OnnxAdapterParameter): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/**
 * Encode an adapter file. The output is canonical: parameters sorted by name, so the same content always gives the same
 * bytes. Throws `SERVE_ADAPTER_FILE` on an empty or duplicate name, a bad shape, or values whose type or count does not
 * match the shape.
 */
export function writeOnnxAdapterFile(file: OnnxAdapterFile): Uint8Array {
  const adapterVersion = checkInt32(file.adapterVersion ?? 0, "adapterVersion");
  const modelVersion = checkInt32(file.modelVersion ?? 0, "modelVersion");
  const params = [...file.parameters].sort(byName);
  let total = 64;
  for (let i = 0; i < params.length; i++) {
    const p = params[i]!;
    if (typeof p.name !== "string" || p.name.length === 0)
      throw fail("a parameter has an empty name", { path: "name" });
    if (i > 0 && params[i - 1]!.name === p.name) throw fail(`parameter ${p.name} appears twice`, { path: p.name });
    if (!(p.dtype in DATA_TYPES))
      throw fail(`${p.name}: unsupported dtype`, { path: p.name, expected: "float32 | float16", received: p.dtype });
    const want = p.dtype === "float32" ? Float32Array : Uint16Array;
    if (!(p.data instanceof want))
      throw fail(`${p.name}: ${p.dtype} values must be a ${want.name}`, { path: p.name, expected: want.name });
    const n = elementCount(p.dims, p.name);
    if (p.data.length !== n)
      throw fail(`${p.name}: shape [${p.dims.join(", ")}] holds ${n} values, found ${p.data.length}`, {
        path: p.name,
        expected: n,
        received: p.data.length,
      });
    total += p.data.byteLength + 8 * p.dims.length + 3 * p.name.length + 64;
    if (total > MAX_FILE_BYTES)
      throw fail("the parameters exceed the 2 GiB an adapter file can address", { path: p.name });
  }

  const b = new Builder(total);
  const offsets = params.map((p) => {
    const name = b.createString(p.name);
    b.startVector(8, p.dims.length, 8);
    for (let i = p.dims.length - 1; i >= 0; i--) b.addInt64(BigInt(p.dims[i]!));
    const dims = b.endVector();
    const bytes = leBytes(p.data);
    // raw_data is declared force_align: 8, so the values start on an 8-byte boundary of the file
    b.prep(8, bytes.length);
    const raw = b.createByteVector(bytes);
    b.startObject(4);
    b.addFieldOffset(PARAMETER_FIELDS.name, name, 0);
    b.addFieldOffset(PARAMETER_FIELDS.dims, dims, 0);
    b.addFieldInt32(PARAMETER_FIELDS.dataType, DATA_TYPES[p.dtype], 0);
    b.addFieldOffset(PARAMETER_FIELDS.rawData, raw, 0);
    return b.endObject();
  });
  b.startVector(4, offsets.length, 4);
  for (let i = offsets.length - 1; i >= 0; i--) b.addOffset(offsets[i]!);
  const list = b.endVector();
  b.startObject(4);
  b.addFieldInt32(ADAPTER_FIELDS.formatVersion, ONNX_ADAPTER_FORMAT_VERSION, 0);
  b.addFieldInt32(ADAPTER_FIELDS.adapterVersion, adapterVersion, 0);
  b.addFieldInt32(ADAPTER_FIELDS.modelVersion, modelVersion, 0);
  b.addFieldOffset(ADAPTER_FIELDS.parameters, list, 0);
  b.finish(b.endObject(), ONNX_ADAPTER_FILE_IDENTIFIER);
  return b.asUint8Array().slice();
}

/** Bounds-checked reads over the file's bytes; every failure is `SERVE_ADAPTER_FILE` at the given place. */
class Reader {
  readonly dv: DataView;
  constructor(readonly bytes: Uint8Array) {
    this.dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  need(pos: number, size: number, where: string): void {
    if (!Number.isSafeInteger(pos) || pos < 0 || size < 0 || pos + size > this.bytes.length)
      throw fail(`${where}: ${size} bytes at offset ${pos} run past the end of the file (${this.bytes.length} bytes)`, {
        path: where,
      });
  }
  u32(pos: number, where: string): number {
    this.need(pos, 4, where);
    return this.dv.getUint32(pos, true);
  }
  i32(pos: number, where: string): number {
    this.need(pos, 4, where);
    return this.dv.getInt32(pos, true);
  }
  u8(pos: number, where: string): number {
    this.need(pos, 1, where);
    return this.bytes[pos]!;
  }
  u16(pos: number, where: string): number {
    this.need(pos, 2, where);
    return this.dv.getUint16(pos, true);
  }
  /** Position of field `slot` of the table at `table`, or null when absent. */
  field(table: number, slot: number, size: number, where: string): number | null {
    const vtable = table - this.i32(table, where);
    const vsize = this.u16(vtable, `${where} vtable`);
    if (vsize < 4 || vsize % 2 !== 0) throw fail(`${where}: malformed vtable`, { path: where });
    this.need(vtable, vsize, `${where} vtable`);
    const tsize = this.u16(vtable + 2, `${where} vtable`);
    this.need(table, tsize, where);
    const at = 4 + 2 * slot;
    if (at + 2 > vsize) return null;
    const off = this.u16(vtable + at, `${where} vtable`);
    if (off === 0) return null;
    if (off + size > tsize) throw fail(`${where}: field ${slot} lies outside its table`, { path: where });
    return table + off;
  }
  /** Follow the offset stored at `pos`; returns the target position. */
  deref(pos: number, where: string): number {
    const target = pos + this.u32(pos, where);
    this.need(target, 4, where);
    return target;
  }
  /** A vector at `pos` (its length prefix): start of elements and count, bounds-checked for `elemSize`. */
  vector(pos: number, elemSize: number, where: string): { start: number; length: number } {
    const length = this.u32(pos, where);
    this.need(pos + 4, length * elemSize, where);
    return { start: pos + 4, length };
  }
}

const TEXT = new TextDecoder("utf-8", { fatal: true });

/**
 * Decode and check an adapter file: identifier "TORT", format_version 1, every offset, vector and string inside the file,
 * names present, UTF-8 and unique, dims non-negative, element type float32 or float16, and exactly as many value bytes as
 * the shape needs. Throws `SERVE_ADAPTER_FILE` saying what and where on the first problem. Values are copied out.
 */
export function readOnnxAdapterFile(bytes: Uint8Array): OnnxAdapterFileRead {
  if (bytes.length < 8)
    throw fail(`an adapter file needs at least 8 bytes, found ${bytes.length}`, {
      expected: ">= 8",
      received: bytes.length,
    });
  const ident = String.fromCharCode(...bytes.subarray(4, 8));
  if (ident !== ONNX_ADAPTER_FILE_IDENTIFIER)
    throw fail(`not an onnxruntime adapter file: identifier ${JSON.stringify(ident)}`, {
      path: "file_identifier",
      expected: ONNX_ADAPTER_FILE_IDENTIFIER,
      received: ident,
    });
  const r = new Reader(bytes);
  const root = r.deref(0, "root");
  const int = (slot: number, name: string): number => {
    const at = r.field(root, slot, 4, "Adapter");
    return at === null ? 0 : r.i32(at, `Adapter.${name}`);
  };
  const formatVersion = int(ADAPTER_FIELDS.formatVersion, "format_version");
  if (formatVersion !== ONNX_ADAPTER_FORMAT_VERSION)
    throw fail(`unsupported adapter format_version ${formatVersion}`, {
      path: "format_version",
      expected: ONNX_ADAPTER_FORMAT_VERSION,
      received: formatVersion,
    });
  const adapterVersion = int(ADAPTER_FIELDS.adapterVersion, "adapter_version");
  const modelVersion = int(ADAPTER_FIELDS.modelVersion, "model_version");
  const listAt = r.field(root, ADAPTER_FIELDS.parameters, 4, "Adapter");
  const parameters: OnnxAdapterParameter[] = [];
  if (listAt !== null) {
    const list = r.vector(r.deref(listAt, "Adapter.parameters"), 4, "Adapter.parameters");
    const seen = new Set<string>();
    for (let i = 0; i < list.length; i++) {
      const where = `parameters[${i}]`;
      const table = r.deref(list.start + 4 * i, where);
      const nameAt = r.field(table, PARAMETER_FIELDS.name, 4, where);
      if (nameAt === null) throw fail(`${where} has no name`, { path: where });
      // a flatbuffer string: length, bytes, then a 0 terminator that must be inside the file too
      const nameVec = r.vector(r.deref(nameAt, `${where}.name`), 1, `${where}.name`);
      if (r.u8(nameVec.start + nameVec.length, `${where}.name`) !== 0)
        throw fail(`${where}.name has no terminating 0`, { path: `${where}.name` });
      let name: string;
      try {
        name = TEXT.decode(bytes.subarray(nameVec.start, nameVec.start + nameVec.length));
      } catch {
        throw fail(`${where}.name is not UTF-8`, { path: `${where}.name` });
      }
      if (name.length === 0) throw fail(`${where} has an empty name`, { path: where });
      if (seen.has(name)) throw fail(`parameter ${name} appears twice`, { path: name });
      seen.add(name);
      const typeAt = r.field(table, PARAMETER_FIELDS.dataType, 4, name);
      const code = typeAt === null ? 0 : r.i32(typeAt, `${name}.data_type`);
      const dtype = (Object.keys(DATA_TYPES) as OnnxAdapterDtype[]).find((k) => DATA_TYPES[k] === code);
      if (!dtype)
        throw fail(`${name}: element type ${code} is not supported (float32 = 1, float16 = 10)`, {
          path: `${name}.data_type`,
          expected: "1 | 10",
          received: code,
        });
      const dimsAt = r.field(table, PARAMETER_FIELDS.dims, 4, name);
      // onnxruntime dereferences dims and raw_data unconditionally: both must be present
      if (dimsAt === null) throw fail(`${name} has no dims`, { path: `${name}.dims` });
      const dimsVec = r.vector(r.deref(dimsAt, `${name}.dims`), 8, `${name}.dims`);
      const dims: number[] = [];
      for (let k = 0; k < dimsVec.length; k++) {
        const d = r.dv.getBigInt64(dimsVec.start + 8 * k, true);
        if (d < 0n || d > BigInt(MAX_FILE_BYTES))
          throw fail(`${name}: dimension ${d} is out of range`, { path: `${name}.dims`, received: d.toString() });
        dims.push(Number(d));
      }
      const count = elementCount(dims, name);
      const rawAt = r.field(table, PARAMETER_FIELDS.rawData, 4, name);
      if (rawAt === null) throw fail(`${name} has no raw_data`, { path: `${name}.raw_data` });
      const raw = r.vector(r.deref(rawAt, `${name}.raw_data`), 1, `${name}.raw_data`);
      const size = elementSize(dtype);
      if (raw.length !== count * size)
        throw fail(
          `${name}: shape [${dims.join(", ")}] needs ${count * size} bytes of ${dtype}, raw_data has ${raw.length}`,
          {
            path: `${name}.raw_data`,
            expected: count * size,
            received: raw.length,
          },
        );
      let data: Float32Array | Uint16Array;
      if (dtype === "float32") {
        data = new Float32Array(count);
        for (let k = 0; k < count; k++) data[k] = r.dv.getFloat32(raw.start + 4 * k, true);
      } else {
        data = new Uint16Array(count);
        for (let k = 0; k < count; k++) data[k] = r.dv.getUint16(raw.start + 2 * k, true);
      }
      parameters.push({ name, dims, dtype, data });
    }
  }
  return { formatVersion, adapterVersion, modelVersion, parameters };
}

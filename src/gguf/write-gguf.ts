import { VeraError } from "../errors.js";
import { concatBytes } from "../util/concat-bytes.js";
import { GgufErrorCode } from "./error-codes.js";
import { ggmlByteLength } from "./ggml-types.js";
import { GGUF_MAX_TENSOR_NAME } from "./read-gguf.js";
import {
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_MAGIC,
  GGUF_VERSION,
  GgufValueType,
  type GgufScalar,
  type GgufValue,
} from "./types.js";

/** A tensor to lay out: name, ggml type and ggml dims (ne[0] = row length). */
export interface GgufTensorSpec {
  name: string;
  type: number;
  ne: number[];
}

/** Parameters of {@link planGguf}. */
export interface PlanGgufParams {
  /** Metadata in the order it is written. general.alignment is added when `alignment` is not 32. */
  metadata: Iterable<[string, GgufValue]>;
  /** Tensors in the order their infos and data are written. */
  tensors: GgufTensorSpec[];
  /**
   * Data alignment (a power of two).
   * @default 32
   */
  alignment?: number;
}

/** Where one tensor's data goes in the planned file. */
export interface GgufPlannedTensor extends GgufTensorSpec {
  /** Absolute offset of the data in the file. */
  position: number;
  byteLength: number;
  /** Zero bytes written after the data (to the next multiple of the alignment). */
  padding: number;
}

/** The planned file: header bytes (up to the data section, padding included) and where each tensor's data goes. */
export interface GgufPlan {
  header: Uint8Array;
  tensors: GgufPlannedTensor[];
  size: number;
}

class Out {
  private parts: Uint8Array[] = [];
  length = 0;
  private push(b: Uint8Array) {
    this.parts.push(b);
    this.length += b.byteLength;
  }
  num(bytes: number, set: (v: DataView) => void) {
    const b = new Uint8Array(bytes);
    set(new DataView(b.buffer));
    this.push(b);
  }
  u32(v: number) {
    this.num(4, (d) => d.setUint32(0, v, true));
  }
  u64(v: number | bigint) {
    this.num(8, (d) => d.setBigUint64(0, BigInt(v), true));
  }
  str(s: string) {
    const b = new TextEncoder().encode(s);
    this.u64(b.byteLength);
    this.push(b);
  }
  pad(to: number) {
    const n = (to - (this.length % to)) % to;
    if (n) this.push(new Uint8Array(n));
  }
  bytes(): Uint8Array {
    return concatBytes(this.parts);
  }
}

function badValue(key: string, type: number, v: unknown): VeraError {
  return new VeraError(
    GgufErrorCode.GGUF_VALUE_TYPE,
    `metadata "${key}": ${String(v)} is not a value of type ${type}`,
    {
      path: key,
      expected: `type ${type}`,
      received: typeof v,
    },
  );
}

function scalar(o: Out, type: number, v: GgufScalar, key: string) {
  const num = () => {
    if (typeof v !== "number") throw badValue(key, type, v);
    return v;
  };
  const int = (lo: number, hi: number) => {
    const n = num();
    if (!Number.isInteger(n) || n < lo || n > hi) throw badValue(key, type, v);
    return n;
  };
  switch (type) {
    case 0:
      return o.num(1, (d) => d.setUint8(0, int(0, 255)));
    case 1:
      return o.num(1, (d) => d.setInt8(0, int(-128, 127)));
    case 2:
      return o.num(2, (d) => d.setUint16(0, int(0, 65535), true));
    case 3:
      return o.num(2, (d) => d.setInt16(0, int(-32768, 32767), true));
    case 4:
      return o.num(4, (d) => d.setUint32(0, int(0, 4294967295), true));
    case 5:
      return o.num(4, (d) => d.setInt32(0, int(-2147483648, 2147483647), true));
    case 6:
      return o.num(4, (d) => d.setFloat32(0, num(), true));
    case 7:
      if (typeof v !== "boolean") throw badValue(key, type, v);
      return o.num(1, (d) => d.setUint8(0, v ? 1 : 0));
    case 8:
      if (typeof v !== "string") throw badValue(key, type, v);
      return o.str(v);
    case 10:
    case 11: {
      if (typeof v !== "bigint" && !(typeof v === "number" && Number.isSafeInteger(v))) throw badValue(key, type, v);
      const b = BigInt(v);
      if (type === 10 && (b < 0n || b >= 1n << 64n)) throw badValue(key, type, v);
      if (type === 11 && (b < -(1n << 63n) || b >= 1n << 63n)) throw badValue(key, type, v);
      return o.num(8, (d) => (type === 10 ? d.setBigUint64(0, b, true) : d.setBigInt64(0, b, true)));
    }
    case 12:
      return o.num(8, (d) => d.setFloat64(0, num(), true));
    default:
      throw badValue(key, type, v);
  }
}

function value(o: Out, v: GgufValue, key: string) {
  if (v.type !== GgufValueType.ARRAY) return scalar(o, v.type, v.value, key);
  o.u32(v.itemType);
  o.u64(v.value.length);
  if (v.itemType === GgufValueType.ARRAY) for (const x of v.value as GgufValue[]) value(o, x, key);
  else for (const x of v.value as GgufScalar[]) scalar(o, v.itemType, x, key);
}

/**
 * Lay out a GGUF v3 file as llama.cpp's gguf-py GGUFWriter does: header, metadata in the given order,
 * tensor infos with offsets that are cumulative sizes padded to the alignment, zero padding up to
 * the data section, then each tensor's data followed by zero padding to the alignment. The header is
 * built here; the tensor data is written by the caller at the planned positions (so a large file never
 * sits in memory whole).
 */
export function planGguf(params: PlanGgufParams): GgufPlan {
  const alignment = params.alignment ?? GGUF_DEFAULT_ALIGNMENT;
  if (!Number.isInteger(alignment) || alignment < 1 || alignment > 2 ** 31 || (alignment & (alignment - 1)) !== 0)
    throw new VeraError(GgufErrorCode.GGUF_ALIGNMENT, `alignment must be a power of two, found ${alignment}`, {
      path: "alignment",
      received: alignment,
    });
  const kvs = [...params.metadata].filter(([k]) => k !== "general.alignment");
  if (alignment !== GGUF_DEFAULT_ALIGNMENT)
    kvs.push(["general.alignment", { type: GgufValueType.UINT32, value: alignment }]);
  const keys = new Set<string>();
  for (const [k] of kvs) {
    if (keys.has(k)) throw new VeraError(GgufErrorCode.GGUF_DUPLICATE, `metadata key "${k}" given twice`, { path: k });
    keys.add(k);
  }
  const names = new Set<string>();
  let rel = 0;
  const laid = params.tensors.map((t) => {
    const nameBytes = new TextEncoder().encode(t.name).byteLength;
    if (nameBytes === 0 || nameBytes > GGUF_MAX_TENSOR_NAME)
      throw new VeraError(GgufErrorCode.GGUF_STRING, `tensor name "${t.name}" must be 1..63 bytes (ggml's limit)`, {
        path: t.name,
        received: nameBytes,
      });
    if (names.has(t.name))
      throw new VeraError(GgufErrorCode.GGUF_DUPLICATE, `tensor "${t.name}" given twice`, { path: t.name });
    names.add(t.name);
    if (t.ne.length < 1 || t.ne.length > 4 || t.ne.some((d) => !Number.isSafeInteger(d) || d < 0))
      throw new VeraError(GgufErrorCode.GGUF_TENSOR_SHAPE, `tensor "${t.name}": dims must be 1..4 integers >= 0`, {
        path: t.name,
        received: t.ne,
      });
    const byteLength = ggmlByteLength(t.type, t.ne, t.name);
    const padding = (alignment - (byteLength % alignment)) % alignment;
    const r = { ...t, rel, byteLength, padding };
    rel += byteLength + padding;
    return r;
  });
  const o = new Out();
  o.u32(GGUF_MAGIC);
  o.u32(GGUF_VERSION);
  o.u64(laid.length);
  o.u64(kvs.length);
  for (const [k, v] of kvs) {
    o.str(k);
    o.u32(v.type);
    value(o, v, k);
  }
  for (const t of laid) {
    o.str(t.name);
    o.u32(t.ne.length);
    for (const d of t.ne) o.u64(d);
    o.u32(t.type);
    o.u64(t.rel);
  }
  o.pad(alignment);
  const header = o.bytes();
  const tensors = laid.map(({ rel: r, ...t }) => ({ ...t, position: header.byteLength + r }));
  return { header, tensors, size: header.byteLength + rel };
}

/** Parameters of {@link writeGguf}: a plan's inputs plus each tensor's encoded bytes. */
export interface WriteGgufParams extends Omit<PlanGgufParams, "tensors"> {
  tensors: (GgufTensorSpec & { data: Uint8Array })[];
}

/** Write a whole GGUF v3 file in memory (see {@link planGguf} for the layout). */
export function writeGguf(params: WriteGgufParams): Uint8Array {
  const plan = planGguf(params);
  const out = new Uint8Array(plan.size);
  out.set(plan.header, 0);
  plan.tensors.forEach((t, i) => {
    const data = params.tensors[i]!.data;
    if (data.byteLength !== t.byteLength)
      throw new VeraError(
        GgufErrorCode.GGUF_TENSOR_SHAPE,
        `tensor "${t.name}": ${data.byteLength} data bytes for ${t.byteLength} expected`,
        { path: t.name, expected: t.byteLength, received: data.byteLength },
      );
    out.set(data, t.position);
  });
  return out;
}

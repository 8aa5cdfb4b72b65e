import { ErrorCode, VeraError } from "../errors.js";
import { compareCodePoints } from "../util/compare-code-points.js";
import { DTYPE_SIZES, isDtype, type Dtype } from "./dtypes.js";

/** A tensor to write. */
export interface TensorToWrite {
  name: string;
  dtype: Dtype;
  shape: number[];
  /** Little-endian element bytes, exactly product(shape) * size(dtype) long. */
  data: Uint8Array;
}

/** A tensor's name, dtype and shape (its bytes come later): what {@link layoutSafetensors} needs. */
export interface TensorSpec {
  name: string;
  dtype: Dtype;
  shape: number[];
}

/**
 * Tensor order in the data section (and header):
 * - `"name"` (canonical): sorted by name, UTF-16 code unit order;
 * - `"given"`: the order of the tensors as passed;
 * - `"torch"`: as `safetensors.torch.save_file` (the Rust serialiser) writes them: dtype descending in its
 *   enum order, then name in byte (code point) order. PEFT's files are reproduced byte for byte this way.
 */
export type TensorOrder = "name" | "given" | "torch";

/** Parameters of {@link writeSafetensors}. */
export interface WriteSafetensorsParams {
  tensors: TensorToWrite[];
  /** `__metadata__`; omitted from the header when undefined. */
  metadata?: Record<string, string>;
  /**
   * Tensor order (see {@link TensorOrder}).
   * @default "name"
   */
  order?: TensorOrder;
}

/** Parameters of {@link layoutSafetensors}. */
export interface LayoutSafetensorsParams {
  /** Names, dtypes and shapes; no bytes. */
  tensors: TensorSpec[];
  /** `__metadata__`; omitted from the header when undefined. */
  metadata?: Record<string, string>;
  /**
   * Tensor order (see {@link TensorOrder}).
   * @default "name"
   */
  order?: TensorOrder;
}

/** A file's layout: the 8-byte length and padded header, each tensor's absolute offset, the file size. */
export interface SafetensorsLayout {
  header: Uint8Array;
  offsets: Map<string, number>;
  size: number;
}

/** The Rust serialiser's dtype enum order (it writes dtypes in descending order). */
const RUST_DTYPE_RANK: Record<Dtype, number> = {
  BOOL: 0,
  U8: 4,
  I8: 5,
  F8_E5M2: 6,
  F8_E4M3: 7,
  I16: 9,
  U16: 10,
  F16: 11,
  BF16: 12,
  I32: 13,
  U32: 14,
  F32: 15,
  F64: 16,
  I64: 17,
  U64: 18,
};

function ordered<T extends TensorSpec>(tensors: readonly T[], order: TensorOrder): T[] {
  const out = [...tensors];
  if (order === "name") out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  else if (order === "torch")
    out.sort((x, y) => RUST_DTYPE_RANK[y.dtype] - RUST_DTYPE_RANK[x.dtype] || compareCodePoints(x.name, y.name));
  return out;
}

function byteSize(t: TensorSpec): number {
  if (!isDtype(t.dtype)) throw new VeraError(ErrorCode.ST_DTYPE, `unknown dtype ${String(t.dtype)}`, { path: t.name });
  const count = t.shape.reduce((a, d) => a * d, 1);
  const nbytes = count * DTYPE_SIZES[t.dtype];
  if (!Number.isSafeInteger(nbytes) || t.shape.some((d) => !Number.isInteger(d) || d < 0))
    throw new VeraError(ErrorCode.ST_SHAPE, `bad shape ${JSON.stringify(t.shape)}`, { path: t.name });
  return nbytes;
}

function layoutOrdered(
  tensors: readonly TensorSpec[],
  metadata: Record<string, string> | undefined,
): SafetensorsLayout {
  const seen = new Set<string>();
  const parts: string[] = [];
  if (metadata !== undefined) {
    const keys = Object.keys(metadata).sort();
    parts.push(`"__metadata__":{${keys.map((k) => `${JSON.stringify(k)}:${JSON.stringify(metadata[k])}`).join(",")}}`);
  }
  const rel: Array<[string, number]> = [];
  let offset = 0;
  for (const t of tensors) {
    if (t.name === "__metadata__" || seen.has(t.name))
      throw new VeraError(ErrorCode.ST_DUPLICATE_KEY, `tensor name "${t.name}" is used twice or reserved`, {
        path: t.name,
      });
    seen.add(t.name);
    const nbytes = byteSize(t);
    parts.push(
      `${JSON.stringify(t.name)}:{"dtype":"${t.dtype}","shape":[${t.shape.join(",")}],"data_offsets":[${offset},${offset + nbytes}]}`,
    );
    rel.push([t.name, offset]);
    offset += nbytes;
  }
  const text = `{${parts.join(",")}}`;
  const enc = new TextEncoder();
  let hb = enc.encode(text);
  const pad = (8 - (hb.length % 8)) % 8;
  if (pad) hb = enc.encode(text + " ".repeat(pad));
  const header = new Uint8Array(8 + hb.length);
  const dv = new DataView(header.buffer);
  dv.setUint32(0, hb.length % 2 ** 32, true);
  dv.setUint32(4, Math.floor(hb.length / 2 ** 32), true);
  header.set(hb, 8);
  const start = header.length;
  return { header, offsets: new Map(rel.map(([k, o]) => [k, start + o])), size: start + offset };
}

/**
 * Lay out a safetensors file without its tensor bytes: the header (with its 8-byte length), every
 * tensor's absolute byte offset and the file size, so a file larger than memory can be streamed. The
 * header is compact JSON, `__metadata__` first (keys sorted), padded with spaces to a multiple of 8.
 */
export function layoutSafetensors(params: LayoutSafetensorsParams): SafetensorsLayout {
  return layoutOrdered(ordered(params.tensors, params.order ?? "name"), params.metadata);
}

/**
 * Serialise tensors to safetensors bytes. Canonical by default: `__metadata__` first (keys sorted),
 * then tensors sorted by name, each entry as {dtype, shape, data_offsets}; the header is padded with
 * spaces to a multiple of 8 bytes, so the same content always gives the same bytes. `order: "torch"`
 * gives the bytes `safetensors.torch.save_file` writes.
 */
export function writeSafetensors(params: WriteSafetensorsParams): Uint8Array {
  const tensors = ordered(params.tensors, params.order ?? "name");
  const { header, size } = layoutOrdered(tensors, params.metadata);
  for (const t of tensors)
    if (t.data.byteLength !== byteSize(t))
      throw new VeraError(
        ErrorCode.ST_SIZE_MISMATCH,
        `tensor "${t.name}" has ${t.data.byteLength} bytes, ${t.dtype} ${JSON.stringify(t.shape)} needs ${byteSize(t)}`,
        {
          path: t.name,
          expected: byteSize(t),
          received: t.data.byteLength,
        },
      );
  const out = new Uint8Array(size);
  out.set(header, 0);
  let pos = header.length;
  for (const t of tensors) {
    out.set(t.data, pos);
    pos += t.data.byteLength;
  }
  return out;
}

/** Little-endian bytes of a typed array (a view, no copy). */
export function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

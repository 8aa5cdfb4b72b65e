import { ErrorCode, VeraError } from "../errors.js";
import { DTYPE_SIZES, isDtype, type Dtype } from "./dtypes.js";

/** A tensor to write. */
export interface TensorToWrite {
  name: string;
  dtype: Dtype;
  shape: number[];
  /** Little-endian element bytes, exactly product(shape) * size(dtype) long. */
  data: Uint8Array;
}

/** Parameters of {@link writeSafetensors}. */
export interface WriteSafetensorsParams {
  tensors: TensorToWrite[];
  /** `__metadata__`; omitted from the header when undefined. */
  metadata?: Record<string, string>;
  /**
   * Tensor order in the data section. `"name"` (canonical): sorted by name, code unit order.
   * `"given"`: the order of `tensors`.
   * @default "name"
   */
  order?: "name" | "given";
}

/**
 * Serialise tensors to safetensors bytes. Canonical by default: `__metadata__` first (keys sorted),
 * then tensors sorted by name, each entry as {dtype, shape, data_offsets}; the header is padded with
 * spaces to a multiple of 8 bytes, so the same content always gives the same bytes.
 */
export function writeSafetensors(params: WriteSafetensorsParams): Uint8Array {
  const tensors = [...params.tensors];
  if ((params.order ?? "name") === "name") tensors.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const seen = new Set<string>();
  const parts: string[] = [];
  if (params.metadata !== undefined) {
    const keys = Object.keys(params.metadata).sort();
    parts.push(
      `"__metadata__":{${keys.map((k) => `${JSON.stringify(k)}:${JSON.stringify(params.metadata![k])}`).join(",")}}`,
    );
  }
  let offset = 0;
  for (const t of tensors) {
    if (t.name === "__metadata__" || seen.has(t.name))
      throw new VeraError(ErrorCode.ST_DUPLICATE_KEY, `tensor name "${t.name}" is used twice or reserved`, {
        path: t.name,
      });
    seen.add(t.name);
    if (!isDtype(t.dtype))
      throw new VeraError(ErrorCode.ST_DTYPE, `unknown dtype ${String(t.dtype)}`, { path: t.name });
    const count = t.shape.reduce((a, d) => a * d, 1);
    const nbytes = count * DTYPE_SIZES[t.dtype];
    if (!Number.isSafeInteger(nbytes) || t.shape.some((d) => !Number.isInteger(d) || d < 0))
      throw new VeraError(ErrorCode.ST_SHAPE, `bad shape ${JSON.stringify(t.shape)}`, { path: t.name });
    if (t.data.byteLength !== nbytes)
      throw new VeraError(
        ErrorCode.ST_SIZE_MISMATCH,
        `tensor "${t.name}" has ${t.data.byteLength} bytes, ${t.dtype} ${JSON.stringify(t.shape)} needs ${nbytes}`,
        {
          path: t.name,
          expected: nbytes,
          received: t.data.byteLength,
        },
      );
    parts.push(
      `${JSON.stringify(t.name)}:{"dtype":"${t.dtype}","shape":[${t.shape.join(",")}],"data_offsets":[${offset},${offset + nbytes}]}`,
    );
    offset += nbytes;
  }
  let header = `{${parts.join(",")}}`;
  const enc = new TextEncoder();
  let hb = enc.encode(header);
  const pad = (8 - (hb.length % 8)) % 8;
  if (pad) {
    header += " ".repeat(pad);
    hb = enc.encode(header);
  }
  const out = new Uint8Array(8 + hb.length + offset);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, hb.length % 2 ** 32, true);
  dv.setUint32(4, Math.floor(hb.length / 2 ** 32), true);
  out.set(hb, 8);
  let pos = 8 + hb.length;
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

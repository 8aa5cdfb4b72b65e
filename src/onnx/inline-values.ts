import { weightDtypeSize, type WeightDtype } from "../dtypes.js";
import { VeraError } from "../errors.js";
import { encodePackedVarints, type ByteEdit } from "./apply-edits.js";
import { OnnxErrorCode } from "./error-codes.js";
import type { OnnxTensor } from "./types.js";
import { readVarint, WireType } from "./wire.js";

/** Bytes per element of a mergeable dtype. */
export function dtypeSize(dtype: WeightDtype): number {
  return weightDtypeSize(dtype);
}

/** Number of elements of a tensor (product of dims). */
export function numel(dims: number[]): number {
  let n = 1;
  for (const d of dims) n *= d;
  return n;
}

/**
 * The little-endian element bytes of a tensor stored inside the model (raw_data, float_data or
 * int32_data holding fp16/bf16 bit patterns), as a fresh buffer the caller may modify.
 *
 * @throws VeraError `ONNX_STORAGE` when the stored values do not fit the tensor's type and shape.
 */
export function readInlineValues(bytes: Uint8Array, tensor: OnnxTensor, dtype: WeightDtype): Uint8Array {
  const n = numel(tensor.dims);
  const size = dtypeSize(dtype);
  const s = tensor.storage;
  const bad = (msg: string): VeraError =>
    new VeraError(OnnxErrorCode.ONNX_STORAGE, `initializer ${JSON.stringify(tensor.name)}: ${msg}`, {
      path: tensor.name,
    });
  switch (s.kind) {
    case "raw":
      // the stored size is checked before anything is allocated: dims are untrusted
      if (s.end - s.start !== n * size) throw bad(`raw_data holds ${s.end - s.start} bytes, expected ${n * size}`);
      return bytes.slice(s.start, s.end);
    case "float_data": {
      if (dtype !== "F32") throw bad(`float_data cannot hold ${dtype} values`);
      if (s.count !== n) throw bad(`float_data holds ${s.count} values, expected ${n}`);
      const out = new Uint8Array(n * size);
      let p = 0;
      for (const f of s.fields) {
        out.set(bytes.subarray(f.dataStart, f.dataEnd), p);
        p += f.dataEnd - f.dataStart;
      }
      return out;
    }
    case "int32_data": {
      if (dtype === "F32") throw bad(`int32_data cannot hold float32 values`);
      if (s.count !== n) throw bad(`int32_data holds ${s.count} values, expected ${n}`);
      const out = new Uint8Array(n * size);
      let k = 0;
      const put = (v: number | bigint, at: number): void => {
        if (typeof v !== "number" || v > 0xffff) throw bad(`int32_data value at byte ${at} is not a 16-bit pattern`);
        out[k * 2] = v & 0xff;
        out[k * 2 + 1] = v >>> 8;
        k++;
      };
      for (const f of s.fields) {
        if (f.wireType === WireType.VARINT) put(readVarint(bytes, f.dataStart, f.dataEnd).value, f.dataStart);
        else {
          let p = f.dataStart;
          while (p < f.dataEnd) {
            const v = readVarint(bytes, p, f.dataEnd);
            put(v.value, p);
            p = v.next;
          }
        }
      }
      return out;
    }
    default:
      throw bad(`values stored as ${s.kind} cannot be merged inline`);
  }
}

/**
 * The edits that store `values` (little-endian element bytes, same count) back into a tensor
 * stored inside the model. raw_data and float_data keep their length (patched in place);
 * int32_data is rewritten as one packed field (varints may change length: the enclosing length
 * prefixes are re-encoded by {@link applyEdits}).
 */
export function inlineValueEdits(tensor: OnnxTensor, dtype: WeightDtype, values: Uint8Array): ByteEdit[] {
  const s = tensor.storage;
  const span = tensor.span;
  switch (s.kind) {
    case "raw":
      return [{ start: s.start, end: s.end, data: values, span }];
    case "float_data": {
      const edits: ByteEdit[] = [];
      let p = 0;
      for (const f of s.fields) {
        const len = f.dataEnd - f.dataStart;
        edits.push({ start: f.dataStart, end: f.dataEnd, data: values.subarray(p, p + len), span });
        p += len;
      }
      return edits;
    }
    case "int32_data": {
      const n = values.length / 2;
      const u16 = new Uint16Array(n);
      for (let i = 0; i < n; i++) u16[i] = values[2 * i]! | (values[2 * i + 1]! << 8);
      const edits: ByteEdit[] = [];
      s.fields.forEach((f, i) => {
        edits.push({
          start: f.start,
          end: f.end,
          data: i === 0 ? encodePackedVarints(5, u16) : new Uint8Array(0),
          span,
        });
      });
      return edits;
    }
    default:
      throw new VeraError(
        OnnxErrorCode.ONNX_STORAGE,
        `initializer ${JSON.stringify(tensor.name)}: values stored as ${s.kind} cannot be merged inline`,
        {
          path: tensor.name,
        },
      );
  }
}

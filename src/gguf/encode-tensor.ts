import { VeraError } from "../errors.js";
import {
  f32ArrayToBf16,
  f32ArrayToF16,
  f32ToF16Bits,
  f16BitsToF32,
  bf16ArrayToF32,
  f16ArrayToF32,
} from "../numeric/half.js";
import { GgufErrorCode } from "./error-codes.js";
import { GgmlType, ggmlTypeName } from "./ggml-types.js";

/** The output types {@link encodeTensor} writes. */
export type GgufFloatOutType = "f32" | "f16" | "bf16" | "q8_0";

/** ggml type id of an output type name. */
export function ggmlTypeOf(t: GgufFloatOutType): number {
  return { f32: GgmlType.F32, f16: GgmlType.F16, bf16: GgmlType.BF16, q8_0: GgmlType.Q8_0 }[t];
}

/** numpy's round half away from zero, as gguf-py's np_roundf. */
function roundHalfAway(x: number): number {
  const a = Math.abs(x);
  const f = Math.floor(a);
  const r = f + Math.floor(2 * (a - f));
  return x < 0 ? -r : r;
}

/**
 * Encode float32 values (row-major, rows of `rowLength`) as a ggml type, as gguf-py's quantize does:
 * F32 and F16/BF16 (round to nearest even) element-wise; Q8_0 in blocks of 32 along the row:
 * d = max|x| / 127 (float32), q = round-half-away(x / d) as int8, d stored as float16.
 *
 * @throws VeraError GGUF_QUANT_BLOCK when Q8_0 rows are not a multiple of 32.
 */
export function encodeTensor(
  values: Float32Array,
  rowLength: number,
  type: GgufFloatOutType,
  where: string,
): Uint8Array {
  if (type === "f32") return new Uint8Array(values.buffer, values.byteOffset, values.byteLength).slice();
  if (type === "f16") {
    const h = f32ArrayToF16(values);
    return new Uint8Array(h.buffer, h.byteOffset, h.byteLength);
  }
  if (type === "bf16") {
    const h = f32ArrayToBf16(values);
    return new Uint8Array(h.buffer, h.byteOffset, h.byteLength);
  }
  if (rowLength % 32 !== 0)
    throw new VeraError(
      GgufErrorCode.GGUF_QUANT_BLOCK,
      `${where}: q8_0 needs rows of whole 32-element blocks, the row length is ${rowLength}`,
      { path: where, expected: "multiple of 32", received: rowLength },
    );
  const blocks = values.length / 32;
  const out = new Uint8Array(blocks * 34);
  const dv = new DataView(out.buffer);
  const one = Math.fround(1);
  for (let b = 0; b < blocks; b++) {
    let amax = 0;
    for (let i = 0; i < 32; i++) amax = Math.max(amax, Math.abs(values[b * 32 + i]!));
    const d = Math.fround(amax / 127);
    const id = d === 0 ? 0 : Math.fround(one / d);
    dv.setUint16(b * 34, f32ToF16Bits(d), true);
    for (let i = 0; i < 32; i++) dv.setInt8(b * 34 + 2 + i, roundHalfAway(Math.fround(values[b * 32 + i]! * id)));
  }
  return out;
}

/** Decode F32/F16/BF16/Q8_0 tensor bytes back to float32 (for checks and tests). */
export function decodeTensor(bytes: Uint8Array, type: number): Float32Array {
  const copy = bytes.slice();
  switch (type) {
    case GgmlType.F32:
      return new Float32Array(copy.buffer, 0, copy.byteLength / 4);
    case GgmlType.F16:
      return f16ArrayToF32(new Uint16Array(copy.buffer, 0, copy.byteLength / 2));
    case GgmlType.BF16:
      return bf16ArrayToF32(new Uint16Array(copy.buffer, 0, copy.byteLength / 2));
    case GgmlType.Q8_0: {
      const dv = new DataView(copy.buffer);
      const blocks = copy.byteLength / 34;
      const out = new Float32Array(blocks * 32);
      for (let b = 0; b < blocks; b++) {
        const d = f16BitsToF32(dv.getUint16(b * 34, true));
        for (let i = 0; i < 32; i++) out[b * 32 + i] = Math.fround(d * dv.getInt8(b * 34 + 2 + i));
      }
      return out;
    }
    default:
      throw new VeraError(GgufErrorCode.GGUF_QUANTIZED, `cannot decode ${ggmlTypeName(type)} tensors`, {
        received: ggmlTypeName(type),
      });
  }
}

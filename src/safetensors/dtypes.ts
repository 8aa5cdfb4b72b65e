/** safetensors dtypes verakit understands, with their element sizes in bytes. */
export const DTYPE_SIZES = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  I64: 8,
  U64: 8,
  F64: 8,
} as const;

/** A safetensors dtype name. */
export type Dtype = keyof typeof DTYPE_SIZES;

/** True when `s` names a dtype verakit knows. */
export function isDtype(s: unknown): s is Dtype {
  return typeof s === "string" && Object.prototype.hasOwnProperty.call(DTYPE_SIZES, s);
}

import { VeraError } from "../errors.js";
import { GgufErrorCode } from "./error-codes.js";

/** ggml tensor type ids (ggml.h `enum ggml_type`) of the types verakit writes. */
export const GgmlType = {
  F32: 0,
  F16: 1,
  Q8_0: 8,
  BF16: 30,
} as const;

/** Block size (elements) and bytes per block of every ggml type GGUF files use (gguf-py GGML_QUANT_SIZES). */
const TYPES: Record<number, { name: string; block: number; bytes: number }> = {
  0: { name: "F32", block: 1, bytes: 4 },
  1: { name: "F16", block: 1, bytes: 2 },
  2: { name: "Q4_0", block: 32, bytes: 18 },
  3: { name: "Q4_1", block: 32, bytes: 20 },
  6: { name: "Q5_0", block: 32, bytes: 22 },
  7: { name: "Q5_1", block: 32, bytes: 24 },
  8: { name: "Q8_0", block: 32, bytes: 34 },
  9: { name: "Q8_1", block: 32, bytes: 40 },
  10: { name: "Q2_K", block: 256, bytes: 84 },
  11: { name: "Q3_K", block: 256, bytes: 110 },
  12: { name: "Q4_K", block: 256, bytes: 144 },
  13: { name: "Q5_K", block: 256, bytes: 176 },
  14: { name: "Q6_K", block: 256, bytes: 210 },
  15: { name: "Q8_K", block: 256, bytes: 292 },
  16: { name: "IQ2_XXS", block: 256, bytes: 66 },
  17: { name: "IQ2_XS", block: 256, bytes: 74 },
  18: { name: "IQ3_XXS", block: 256, bytes: 98 },
  19: { name: "IQ1_S", block: 256, bytes: 50 },
  20: { name: "IQ4_NL", block: 32, bytes: 18 },
  21: { name: "IQ3_S", block: 256, bytes: 110 },
  22: { name: "IQ2_S", block: 256, bytes: 82 },
  23: { name: "IQ4_XS", block: 256, bytes: 136 },
  24: { name: "I8", block: 1, bytes: 1 },
  25: { name: "I16", block: 1, bytes: 2 },
  26: { name: "I32", block: 1, bytes: 4 },
  27: { name: "I64", block: 1, bytes: 8 },
  28: { name: "F64", block: 1, bytes: 8 },
  29: { name: "IQ1_M", block: 256, bytes: 56 },
  30: { name: "BF16", block: 1, bytes: 2 },
  34: { name: "TQ1_0", block: 256, bytes: 54 },
  35: { name: "TQ2_0", block: 256, bytes: 66 },
  39: { name: "MXFP4", block: 32, bytes: 17 },
};

/** Name, block size and block bytes of a ggml type, or undefined for an unknown id. */
export function ggmlTypeInfo(type: number): { name: string; block: number; bytes: number } | undefined {
  return TYPES[type];
}

/** The ggml type's name ("Q4_K"), or "type N" when unknown. */
export function ggmlTypeName(type: number): string {
  return TYPES[type]?.name ?? `type ${type}`;
}

/** Whether the type holds plain floats (F32, F16, BF16, F64) rather than quantized blocks or integers. */
export function isFloatGgmlType(type: number): boolean {
  return type === 0 || type === 1 || type === 30 || type === 28;
}

/**
 * Bytes of a tensor of type `type` and dims `ne`; throws GGUF_TENSOR_SHAPE when ne[0] is not a whole
 * number of blocks and GGUF_COUNT when the size exceeds 2^53.
 */
export function ggmlByteLength(type: number, ne: readonly number[], where: string): number {
  const info = TYPES[type];
  if (!info)
    throw new VeraError(GgufErrorCode.GGUF_TENSOR_TYPE, `${where}: unknown ggml type ${type}`, {
      path: where,
      received: type,
    });
  const ne0 = ne[0] ?? 1;
  if (ne0 % info.block !== 0)
    throw new VeraError(
      GgufErrorCode.GGUF_TENSOR_SHAPE,
      `${where}: a ${info.name} row holds whole blocks of ${info.block}, found ne[0] = ${ne0}`,
      { path: where, expected: `multiple of ${info.block}`, received: ne0 },
    );
  let n = (ne0 / info.block) * info.bytes;
  for (let i = 1; i < ne.length; i++) {
    n *= ne[i]!;
    if (!Number.isSafeInteger(n))
      throw new VeraError(GgufErrorCode.GGUF_COUNT, `${where}: tensor size overflows 2^53 bytes`, {
        path: where,
        received: ne,
      });
  }
  return n;
}

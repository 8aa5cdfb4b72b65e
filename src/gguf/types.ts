/** GGUF v3 types shared by the reader, the writer and the exporters. */
import type { ByteRangeSource } from "../util/byte-range-source.js";

/** The file's magic, "GGUF" read as a little-endian uint32. */
export const GGUF_MAGIC = 0x46554747;
/** The only version this module reads and writes. */
export const GGUF_VERSION = 3;
/** Alignment of tensor data when general.alignment is absent. */
export const GGUF_DEFAULT_ALIGNMENT = 32;

/** Metadata value types (gguf.md `gguf_metadata_value_type`). */
export const GgufValueType = {
  UINT8: 0,
  INT8: 1,
  UINT16: 2,
  INT16: 3,
  UINT32: 4,
  INT32: 5,
  FLOAT32: 6,
  BOOL: 7,
  STRING: 8,
  ARRAY: 9,
  UINT64: 10,
  INT64: 11,
  FLOAT64: 12,
} as const;

/** One of {@link GgufValueType}'s values. */
export type GgufValueTypeId = (typeof GgufValueType)[keyof typeof GgufValueType];

/** A scalar metadata value: numbers for types up to 32 bits and float64, bigint for (u)int64. */
export type GgufScalar = number | bigint | boolean | string;

/** A metadata value with its GGUF type (so a file can be rewritten with the same bytes). */
export type GgufValue =
  | { type: Exclude<GgufValueTypeId, 9>; value: GgufScalar }
  | { type: 9; itemType: Exclude<GgufValueTypeId, 9>; value: GgufScalar[] }
  | { type: 9; itemType: 9; value: GgufValue[] };

/** One tensor's entry in the tensor-info table. */
export interface GgufTensorInfo {
  name: string;
  /** ggml dimensions, ne[0] first (ne[0] is the row length: in_features of a Linear weight). */
  ne: number[];
  /** ggml type id (see {@link GgmlType}). */
  type: number;
  /** Offset relative to the start of the data section (a multiple of the alignment). */
  offset: number;
  /** Bytes of the tensor data. */
  byteLength: number;
}

/** What the reader returns: everything but the tensor data, plus where that data lies. */
export interface GgufFile {
  version: number;
  /** Metadata in file order. */
  metadata: Map<string, GgufValue>;
  tensors: GgufTensorInfo[];
  alignment: number;
  /** Absolute file offset where the data section starts. */
  dataOffset: number;
  /** Total size of the file. */
  size: number;
}

/** A random-access byte source over a GGUF file (see {@link ByteRangeSource}). */
export type GgufByteSource = ByteRangeSource;

/** A byte source over bytes already in memory. */
export function bytesSource(bytes: Uint8Array): GgufByteSource {
  return { size: bytes.byteLength, read: (o, n) => Promise.resolve(bytes.subarray(o, o + n)) };
}

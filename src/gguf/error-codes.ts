/**
 * Stable error codes of the GGUF reader, writer, tensor-name mapping and LoRA export. The string
 * values never change once released.
 */
export const GgufErrorCode = {
  /** The bytes end before a field, a string, an array or the tensor data they announce. */
  GGUF_TRUNCATED: "GGUF_TRUNCATED",
  /** The file does not start with the magic "GGUF". */
  GGUF_MAGIC: "GGUF_MAGIC",
  /** The version is not 3 (v1/v2 files predate 64-bit counts; big-endian files read as a huge version). */
  GGUF_VERSION: "GGUF_VERSION",
  /** A count or length that cannot fit in the bytes left (checked before anything is allocated). */
  GGUF_COUNT: "GGUF_COUNT",
  /**
   * A count, length or size within the file but beyond the reader's limits (GGUF_LIMITS: tensors,
   * metadata entries, array items, string bytes, header bytes), or a split count in a file name beyond
   * GGUF_LIMITS.maxSplitCount: refused before anything is allocated for it.
   */
  GGUF_LIMIT: "GGUF_LIMIT",
  /** A metadata value type that GGUF v3 does not define, or a value of the wrong type for its key. */
  GGUF_VALUE_TYPE: "GGUF_VALUE_TYPE",
  /** A key or tensor name that is not valid UTF-8, empty, or too long. */
  GGUF_STRING: "GGUF_STRING",
  /** Two metadata entries with the same key, or two tensors with the same name. */
  GGUF_DUPLICATE: "GGUF_DUPLICATE",
  /** general.alignment is not a power of two (or not a uint32). */
  GGUF_ALIGNMENT: "GGUF_ALIGNMENT",
  /** A ggml tensor type this reader does not know. */
  GGUF_TENSOR_TYPE: "GGUF_TENSOR_TYPE",
  /** A tensor's dimensions are not 1..4 positive numbers, or its row is not a whole number of blocks. */
  GGUF_TENSOR_SHAPE: "GGUF_TENSOR_SHAPE",
  /** A tensor's data is misaligned, outside the file, or overlaps another tensor. */
  GGUF_TENSOR_RANGE: "GGUF_TENSOR_RANGE",
  /** general.architecture has no known tensor-name mapping and no mapping file was given. */
  GGUF_UNKNOWN_ARCHITECTURE: "GGUF_UNKNOWN_ARCHITECTURE",
  /** A mapping file that is not a JSON object of module path -> tensor name. */
  GGUF_MAPPING: "GGUF_MAPPING",
  /** Adapted modules that llama.cpp cannot adapt (no tensor of the base under their name). */
  GGUF_MODULE_UNSUPPORTED: "GGUF_MODULE_UNSUPPORTED",
  /** The base's tensor or hyperparameters disagree with the adapter (shape, head counts). */
  GGUF_BASE_MISMATCH: "GGUF_BASE_MISMATCH",
  /** A quantized output type for a tensor whose rows are not a whole number of blocks. */
  GGUF_QUANT_BLOCK: "GGUF_QUANT_BLOCK",
  /** A quantized tensor where only float tensors can be used (merge into the F16 GGUF, then quantize). */
  GGUF_QUANTIZED: "GGUF_QUANTIZED",
  /**
   * The parts of a split GGUF (`<name>-00001-of-00003.gguf`, ...) do not form one model: a missing part,
   * split.no / split.count that disagree with the file names, split.tensors.count that is not the tensors of
   * all parts together, or a part with split.count but no split name.
   */
  GGUF_SPLIT: "GGUF_SPLIT",
} as const;

/** One of {@link GgufErrorCode}'s values. */
export type GgufErrorCodeValue = (typeof GgufErrorCode)[keyof typeof GgufErrorCode];

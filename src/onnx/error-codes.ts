/**
 * Stable error codes of the ONNX reader, weight locator and merge planner. The string values
 * never change once released. Path problems in external data use the core `IO_UNSAFE_PATH`.
 */
export const OnnxErrorCode = {
  /** The bytes are not a well-formed protobuf (truncated field, bad wire type, over-long varint, bad UTF-8). */
  ONNX_PARSE: "ONNX_PARSE",
  /** The ModelProto has no graph (field 7). */
  ONNX_NO_GRAPH: "ONNX_NO_GRAPH",
  /** A field has a value ONNX does not allow (negative dims, unknown data_location, ...). */
  ONNX_INVALID: "ONNX_INVALID",
  /** An adapted module has no weight in the model (no candidate matched its path). */
  ONNX_MODULE_NOT_FOUND: "ONNX_MODULE_NOT_FOUND",
  /** Several weights match one module path (e.g. by suffix); a mapping file must choose. */
  ONNX_AMBIGUOUS: "ONNX_AMBIGUOUS",
  /** The weight is used by several consumers (tied embeddings, de-duplicated constants). */
  ONNX_SHARED_WEIGHT: "ONNX_SHARED_WEIGHT",
  /** The weight is quantized (MatMulNBits, QDQ, int8/int4): merge into the float model, then quantize. */
  ONNX_QUANTIZED: "ONNX_QUANTIZED",
  /** The weight's shape disagrees with the adapter's in/out features. */
  ONNX_SHAPE_MISMATCH: "ONNX_SHAPE_MISMATCH",
  /** The weight's element type is not float32, float16 or bfloat16. */
  ONNX_DTYPE_UNSUPPORTED: "ONNX_DTYPE_UNSUPPORTED",
  /** The weight's storage cannot be patched (no data, wrong field for its type, size mismatch). */
  ONNX_STORAGE: "ONNX_STORAGE",
  /** An external_data entry is malformed (missing location, bad offset/length, beyond the file). */
  ONNX_EXTERNAL_DATA: "ONNX_EXTERNAL_DATA",
  /** A fused weight (qkv_proj) whose row blocks cannot be told apart; give them in a mapping file. */
  ONNX_FUSED_SPLIT: "ONNX_FUSED_SPLIT",
  /** Two adapter modules would write the same part of one weight. */
  ONNX_OVERLAP: "ONNX_OVERLAP",
  /** The mapping file is malformed or names an initializer the model lacks. */
  ONNX_MAPPING: "ONNX_MAPPING",
  /** The patched model would exceed protobuf's 2 GiB limit. */
  ONNX_TOO_LARGE: "ONNX_TOO_LARGE",
} as const;

/** One of {@link OnnxErrorCode}'s values. */
export type OnnxErrorCodeValue = (typeof OnnxErrorCode)[keyof typeof OnnxErrorCode];

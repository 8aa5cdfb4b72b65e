/** The merge pipeline (Node): VeRA adapter + ONNX model -> merged ONNX model. */
export * from "./error-codes.js";
export * from "./load-merge-adapter.js";
export * from "./merge-onnx.js";

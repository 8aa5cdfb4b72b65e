/** Wire-level ONNX reading, Linear-weight location and merge planning. Pure: no Node built-ins. */
export * from "./error-codes.js";
export * from "./types.js";
export * from "./read-onnx-model.js";
export * from "./list-linear-weights.js";
export * from "./weight-mapping.js";
export * from "./plan-onnx-merge.js";
export * from "./apply-edits.js";
export * from "./inline-values.js";
export * from "./external-location.js";
export * from "./untie-edits.js";
export * from "./locate-onnx-parameter.js";
export * from "./onnx-weight-locator.js";
export type * from "../locate/weight-locator.js";
export * from "../locate/module-path.js";

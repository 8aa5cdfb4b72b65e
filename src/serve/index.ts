/** Serving VeRA adapters unmerged: grafted ONNX graphs, adapter feeds, `.onnx_adapter` files. Pure: no Node built-ins. */
export * from "./error-codes.js";
export * from "./graft-spec.js";
export * from "./graft-onnx.js";
export * from "./read-graft-spec.js";
export * from "./adapter-feeds.js";
export * from "./onnx-adapter-file.js";
export * from "./write-onnx-adapter.js";
export * from "./write-onnx-adapter-lora.js";
export * from "./write-onnx-adapter-inputs.js";
export * from "./lora-for-engine.js";
export * from "./generate-greedy.js";

/** Serving VeRA adapters unmerged: grafted ONNX graphs, adapter feeds, `.onnx_adapter` files. Pure: no Node built-ins. */
export * from "./error-codes.js";
export * from "./graft-spec.js";

/** The merge pipeline (Node): VeRA adapter + model -> merged model, in stages shared by every container. */
export * from "./container.js";
export * from "./error-codes.js";
export * from "./file-copier.js";
export * from "./gguf-container.js";
export * from "./gguf-magic.js";
export * from "./merge-checkpoint.js";
export * from "./merge-gguf.js";
export * from "./merge-onnx.js";
export * from "./plan-data-files.js";
export * from "./merge-params.js";
export * from "./recover-merge.js";
export * from "./checkpoint-locator.js";

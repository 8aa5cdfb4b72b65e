/**
 * verakit/merge/node: the merge pipeline's Node edge (files, kernel copies, in-place writing and its undo journal,
 * locks, recovery): VeRA adapter + model on disk -> merged model on disk. Re-exports the browser-safe core
 * (verakit/merge) too.
 */
export * from "./core/index.js";
export * from "./file-copier.js";
export * from "./gguf-magic.js";
export * from "./merge-checkpoint.js";
export * from "./merge-gguf.js";
export * from "./merge-model.js";
export * from "./merge-onnx.js";
export * from "./merge-params.js";
export * from "./recover-merge.js";

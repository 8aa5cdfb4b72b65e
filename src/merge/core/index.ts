/**
 * verakit/merge: the merge core, browser-safe (no Node built-ins): the container interface and the containers'
 * locating logic, the data-file plan, the compute stage, the report and error codes, and {@link mergeModelFiles}
 * (merge an ONNX model, a safetensors checkpoint or a GGUF file given through a FileAccess into output files of
 * segments). The page imports it; the Node edge (files, kernel copies, in-place writing and its undo journal, locks,
 * recovery) is verakit/merge/node.
 */
export * from "./container.js";
export * from "../error-codes.js";
export * from "./compute-weights.js";
export * from "./detect-container.js";
export * from "./file-access-data.js";
export * from "./gguf-container.js";
export * from "./checkpoint-locator.js";
export * from "./checkpoint-container.js";
export * from "./read-checkpoint-files.js";
export * from "./merge-model-files.js";
export * from "./merge-report.js";
export * from "./merge-run.js";
export * from "./merged-files.js";
export * from "./onnx-container.js";
export * from "./opened-model.js";
export * from "./gguf-adapter-base.js";
export * from "./plan-data-files.js";

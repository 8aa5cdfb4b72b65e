/**
 * verakit/compute: the merge-kernel interface, the reference backend every other backend is
 * tested against, the WebGPU backend (browsers, Deno, or Node with a GPU object) and the backend
 * factory. Pure and browser-safe; the Node-only backends live in `verakit/node`.
 */
export * from "./backend.js";
export * from "./error-codes.js";
export * from "./round-to-dtype.js";
export * from "./validate-tasks.js";
export * from "./reference-backend.js";
export * from "./check-merge.js";
export * from "./webgpu-backend.js";
export * from "./create-backend.js";
export * from "./wasm-backend.js";
export * from "./merge-tasks.js";

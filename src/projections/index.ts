export * from "./mt19937.js";
export * from "./seed.js";
export * from "./generate.js";
export * from "./for-adapter.js";
export { wasmGeneratorAvailable } from "./wasm-generator.js";

/** Node-only edges: files, atomic writes. Never imported by the browser-safe core. */
export * from "./files.js";
export * from "./external-data-path.js";
export * from "./ranged-io.js";
export * from "./peft-folder.js";
export * from "./read-base-shapes.js";
export * from "./load-adapter.js";
export * from "./gguf-file.js";
export * from "../compute/node/index.js";

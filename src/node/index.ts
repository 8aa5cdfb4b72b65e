/** Node-only edges: files, atomic writes. Never imported by the browser-safe core. */
import { registerNodeSha256 } from "./node-sha256.js";

// Node programs get node:crypto's SHA-256 behind the core's sha256Hex.
registerNodeSha256();

export * from "./files.js";
export * from "./node-sha256.js";
export * from "./external-data-path.js";
export * from "./ranged-io.js";
export * from "./peft-folder.js";
export * from "./read-base-shapes.js";
export * from "./load-adapter.js";
export * from "./gguf-file.js";
export * from "../compute/node/index.js";
export * from "./node-file-access.js";

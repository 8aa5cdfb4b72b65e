/** Node-only edges: files, atomic writes. Never imported by the browser-safe core. */
export * from "./files.js";

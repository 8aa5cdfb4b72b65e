/** Serving, Node edge: graft a model file (external data referenced or linked, atomic write). */
export * from "./graft-onnx-file.js";

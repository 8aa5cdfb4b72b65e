/** Node-only compute backends: onnxruntime-node (cpu, webgpu, cuda) and WebGPU through the `webgpu` package. */
export * from "./ort-backend.js";
export * from "./webgpu-node.js";
export { createWorkerBackend, type CreateWorkerBackendParams } from "./worker-backend.js";
export {
  createNodeBackend,
  NODE_BACKENDS,
  type CreateNodeBackendParams,
  type NodeBackendName,
} from "./create-node-backend.js";
export * from "./probe-node-backends.js";
export { buildOnnxModel } from "../onnx-merge-model.js";

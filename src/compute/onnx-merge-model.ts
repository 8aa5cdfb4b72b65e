/**
 * The small ONNX graphs the onnxruntime backends run are built by the package's one ONNX encoder (src/onnx).
 */
export {
  buildOnnxModel,
  OnnxType,
  type Attr,
  type Dim,
  type Initializer,
  type NodeSpec,
  type ValueInfo,
} from "../onnx/encode-onnx.js";

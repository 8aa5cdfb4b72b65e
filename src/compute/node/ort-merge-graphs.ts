/**
 * Internal: the ONNX graphs the onnxruntime backends run (built as bytes, no file): the merge
 * graph per (A, dtype, layout) and the float32 overflow pre-scan.
 */
import type { MergeTask } from "../backend.js";
import { buildOnnxModel, OnnxType, type NodeSpec, type ValueInfo } from "../onnx-merge-model.js";

/**
 * What a merge graph computes: `f32` / `f16` merge a weight block of that type in place
 * (Y = W + M, max |M|); `delta` only computes the float32 delta block M, which the WebAssembly
 * kernel adds to a bf16 weight block (widening, addition, rounding and max |M| in one pass).
 */
export type GraphKind = "f32" | "f16" | "delta";

function bytesOf(a: Float32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/**
 * The merge graph for one (A, dtype, layout). Inputs per run (one row block):
 * out_in: W [rows, in], B [rows, r], LB [rows, 1], LD [1, r]; A [r, in] is a constant.
 *   M = MatMul((B * LB) * LD, A)
 * in_out: W [rows, out] (rows of in), AT [rows, r], BP [out, r] (= lambda_b B lambda_d, folded once per task).
 *   M = Gemm(AT, BP, transB = 1)
 * then, for `f32` / `f16`: Y = W + M (W cast to float32 first when it is f16, Y cast back),
 * D = ReduceMax(Abs(M)); for `delta`: M is the output (no W input).
 */
export function mergeModel(task: MergeTask, kind: GraphKind): Uint8Array {
  const { rank: r, inFeatures: n, layout } = task;
  const F = OnnxType.FLOAT;
  const wt = kind === "f16" ? OnnxType.FLOAT16 : F;
  const nodes: NodeSpec[] = [];
  const inputs: ValueInfo[] = [];
  const cols = layout === "out_in" ? n : "out";
  if (kind !== "delta") inputs.push({ name: "W", type: wt, shape: ["rows", cols] });
  let initializers;
  if (layout === "out_in") {
    inputs.push(
      { name: "B", type: F, shape: ["rows", r] },
      { name: "LB", type: F, shape: ["rows", 1] },
      { name: "LD", type: F, shape: [1, r] },
    );
    initializers = [{ name: "A", type: F, dims: [r, n], raw: bytesOf(task.a) }];
    nodes.push(
      { op: "Mul", inputs: ["B", "LB"], outputs: ["Bb"] },
      { op: "Mul", inputs: ["Bb", "LD"], outputs: ["Bp"] },
      { op: "MatMul", inputs: ["Bp", "A"], outputs: ["M"] },
    );
  } else {
    inputs.push({ name: "AT", type: F, shape: ["rows", r] }, { name: "BP", type: F, shape: ["out", r] });
    nodes.push({ op: "Gemm", inputs: ["AT", "BP"], outputs: ["M"], attrs: [{ name: "transB", i: 1 }] });
  }
  if (kind === "delta") {
    const outputs: ValueInfo[] = [{ name: "M", type: F, shape: ["rows", cols] }];
    return buildOnnxModel({ nodes, inputs, outputs, ...(initializers ? { initializers } : {}) });
  }
  const f16 = kind === "f16";
  if (f16) nodes.push({ op: "Cast", inputs: ["W"], outputs: ["Wf"], attrs: [{ name: "to", i: F }] });
  nodes.push({ op: "Add", inputs: [f16 ? "Wf" : "W", "M"], outputs: [f16 ? "Yf" : "Y"] });
  if (f16) nodes.push({ op: "Cast", inputs: ["Yf"], outputs: ["Y"], attrs: [{ name: "to", i: OnnxType.FLOAT16 }] });
  nodes.push(
    { op: "Abs", inputs: ["M"], outputs: ["Ma"] },
    { op: "ReduceMax", inputs: ["Ma"], outputs: ["D"], attrs: [{ name: "keepdims", i: 0 }] },
  );
  const outputs: ValueInfo[] = [
    { name: "Y", type: wt, shape: ["rows", cols] },
    { name: "D", type: F, shape: [] },
  ];
  return buildOnnxModel({ nodes, inputs, outputs, ...(initializers ? { initializers } : {}) });
}

/** Pre-scan graph for float32 weights: max and min of a chunk. */
export function scanModel(): Uint8Array {
  return buildOnnxModel({
    nodes: [
      { op: "ReduceMax", inputs: ["W"], outputs: ["MX"], attrs: [{ name: "keepdims", i: 0 }] },
      { op: "ReduceMin", inputs: ["W"], outputs: ["MN"], attrs: [{ name: "keepdims", i: 0 }] },
    ],
    inputs: [{ name: "W", type: OnnxType.FLOAT, shape: ["n"] }],
    outputs: [
      { name: "MX", type: OnnxType.FLOAT, shape: [] },
      { name: "MN", type: OnnxType.FLOAT, shape: [] },
    ],
  });
}

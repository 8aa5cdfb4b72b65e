/**
 * A Linear bias the model does not hold, added back (src/onnx/add-bias.ts): an Add right after the module's MatMul,
 * which produces the MatMul's original output, or Gemm's missing C; onnxruntime runs the result.
 */
import { describe, expect, it } from "vitest";
import { addBiasEdits, locateAddableBias } from "../src/onnx/add-bias.js";
import { applyEdits, concatEdited } from "../src/onnx/apply-edits.js";
import { indexGraph } from "../src/onnx/graph-index.js";
import { listLinearWeights } from "../src/onnx/list-linear-weights.js";
import { readOnnxModel } from "../src/onnx/read-onnx-model.js";
import { f32Bytes, loadOrt, modelProto } from "./onnx-helpers.js";

const X = [1, 2, -1, 0.5, -2, 0, 3, 1];
const W = [0.5, -1, 2, 1, 0, -0.5, -1, 1, 0.25, 2, -2, 1]; // (in 4, out 3) as MatMul stores it
const B = [10, -20, 30];

function model(op: "MatMul" | "Gemm"): Uint8Array {
  return modelProto({
    nodes: [
      { opType: op, inputs: ["x", "classifier.weight"], outputs: ["h"], name: "/classifier/op" },
      { opType: "Neg", inputs: ["h"], outputs: ["y"], name: "/neg" },
    ],
    initializers: [{ name: "classifier.weight", dims: [4, 3], dataType: 1, raw: f32Bytes(W) }],
    inputs: [{ name: "x", elemType: 1, shape: [2, 4] }],
    outputs: [{ name: "y", elemType: 1, shape: [2, 3] }],
  });
}

function expected(): number[] {
  const y: number[] = [];
  for (let r = 0; r < 2; r++)
    for (let o = 0; o < 3; o++) {
      let s = B[o]!;
      for (let i = 0; i < 4; i++) s += X[r * 4 + i]! * W[i * 3 + o]!;
      y.push(-s);
    }
  return y;
}

describe("a Linear bias the model does not hold is added", () => {
  for (const op of ["MatMul", "Gemm"] as const)
    it(`${op}: the output gets the bias, consumers unchanged`, async () => {
      const bytes = model(op);
      const m = readOnnxModel({ bytes });
      const weights = listLinearWeights({ model: m });
      const index = indexGraph(m);
      const bias = locateAddableBias({ model: m, index, weights, param: "classifier.bias", shape: [3] });
      expect(typeof bias).not.toBe("string");
      if (typeof bias === "string") return;
      expect(locateAddableBias({ model: m, index, weights, param: "classifier.bias", shape: [4] })).toMatch(/fit/);
      expect(locateAddableBias({ model: m, index, weights, param: "other.bias", shape: [3] })).toMatch(/no single/);
      const edits = addBiasEdits({
        model: m,
        bias,
        name: "classifier.bias",
        matmulOut: "h/no_bias",
        values: f32Bytes(B),
      });
      const out = concatEdited(applyEdits({ bytes, edits }));
      const g = readOnnxModel({ bytes: out }).graphs[0]!;
      if (op === "MatMul") {
        expect(g.nodes.map((n) => n.opType)).toEqual(["MatMul", "Add", "Neg"]);
        expect(g.nodes[1]!.inputs).toEqual(["h/no_bias", "classifier.bias"]);
        expect(g.nodes[1]!.outputs).toEqual(["h"]);
      } else expect(g.nodes[0]!.inputs).toEqual(["x", "classifier.weight", "classifier.bias"]);
      const ort = await loadOrt();
      const s = await ort.InferenceSession.create(out, { graphOptimizationLevel: "disabled", logSeverityLevel: 3 });
      const y = (await s.run({ x: new ort.Tensor("float32", Float32Array.from(X), [2, 4]) }))["y"]!.data;
      await s.release();
      expect(Array.from(y as Float32Array)).toEqual(expected());
    });
});

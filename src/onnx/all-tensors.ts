import type { OnnxModel, OnnxTensor } from "./types.js";

/** Every tensor of the model: the initializers of all its graphs and the tensors of its Constant nodes. */
export function allTensors(model: OnnxModel): OnnxTensor[] {
  const out: OnnxTensor[] = [];
  for (const g of model.graphs) {
    out.push(...g.initializers);
    for (const n of g.nodes) for (const a of n.attributes) if (a.t) out.push(a.t);
  }
  return out;
}

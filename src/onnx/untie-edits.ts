import type { ByteEdit } from "./apply-edits.js";
import type { PlannedWeight } from "./plan-onnx-merge.js";
import type { OnnxModel } from "./types.js";
import { concatBytes, encodeVarint, fields, lenField, varintField } from "./wire.js";

/** Parameters of {@link untieEdits}. */
export interface UntieEditsParams {
  /** The parsed model. */
  model: OnnxModel;
  /** A planned weight with `untie` set. */
  weight: PlannedWeight;
  /** Where the new initializer's (merged) values are: inline bytes, or a range of an external data file. */
  data: { values: Uint8Array } | { location: string; offset: number; length: number };
}

/**
 * The edits that untie a shared weight: a new initializer (the original's dims and type, its own
 * name, the merged values) appended to the graph holding the original, and the one node input on
 * the adapted path renamed to it. Every other user of the original keeps it, unchanged.
 */
export function untieEdits(params: UntieEditsParams): ByteEdit[] {
  const { model, weight } = params;
  const u = weight.untie;
  if (!u) throw new Error(`weight ${weight.initializer} is not planned for untying`);
  const bytes = model.bytes;
  const node = model.graphs[u.graph]!.nodes[u.node]!;
  let k = 0;
  let nameEdit: ByteEdit | undefined;
  for (const f of fields(bytes, node.span.start, node.span.end)) {
    if (f.field !== 1) continue;
    if (k++ === u.input) {
      nameEdit = { start: f.start, end: f.end, data: lenField(1, u.name), span: node.span };
      break;
    }
  }
  if (!nameEdit) throw new Error(`node ${node.name} has no input ${u.input}`);
  const t = weight.tensor;
  const parts: Uint8Array[] = [];
  if (t.dims.length > 0) parts.push(lenField(1, concatBytes(t.dims.map((d) => encodeVarint(d)))));
  parts.push(varintField(2, t.dataType), lenField(8, u.name));
  const d = params.data;
  if ("values" in d) parts.push(lenField(9, d.values));
  else {
    for (const [key, value] of [
      ["location", d.location],
      ["offset", String(d.offset)],
      ["length", String(d.length)],
    ] as const)
      parts.push(lenField(13, concatBytes([lenField(1, key), lenField(2, value)])));
    parts.push(varintField(14, 1));
  }
  const graph = model.graphs[t.graphIndex]!;
  const insert: ByteEdit = {
    start: graph.span.end,
    end: graph.span.end,
    data: lenField(5, concatBytes(parts)),
    span: graph.span,
  };
  return [nameEdit, insert];
}

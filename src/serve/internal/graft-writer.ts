/**
 * Internal: the additions a graft makes to a model, collected as byte edits: fresh names, int64 constants, the
 * projections (stored once, sliced per size), nodes before the main graph's first node, nodes after a given node,
 * initializers and inputs appended to the main graph.
 */
import type { VeraAdapter } from "../../format/types.js";
import { f32ToF16Bits } from "../../numeric/half.js";
import type { ByteEdit } from "../../onnx/apply-edits.js";
import {
  float32Bytes,
  initializerField,
  inputField,
  int64Bytes,
  nodeField,
  type Attr,
  type Dim,
  type NodeSpec,
} from "../../onnx/encode-onnx.js";
import type { GraphIndex } from "../../onnx/graph-index.js";
import { OnnxDataType, type MessageSpan, type OnnxModel, type OnnxNode } from "../../onnx/types.js";
import { concatBytes, fields, lenField } from "../../onnx/wire.js";
import { projectionsFor } from "../../projections/for-adapter.js";

export const GRAFT_PREFIX = "verakit.graft";
const FLOAT = OnnxDataType.FLOAT;
const INT64 = OnnxDataType.INT64;

/** Builds the nodes of one branch: `op(...)` appends a node and returns its (fresh) output name. */
export type OpFn = (opType: string, inputs: string[], out: string, attrs?: Attr[]) => string;

export class GraftWriter {
  private readonly taken: Set<string>;
  private readonly head: Uint8Array[] = [];
  private readonly tail: Uint8Array[] = [];
  private readonly before = new Map<OnnxNode, Uint8Array[]>();
  private readonly after = new Map<OnnxNode, Uint8Array[]>();
  private readonly edits: ByteEdit[] = [];
  private readonly constants = new Map<string, string>();
  private readonly projNames = new Map<string, string>();
  private readonly slices = new Map<string, string>();
  private projections: { at: Float32Array; bt: Float32Array } | undefined;

  constructor(
    readonly model: OnnxModel,
    index: GraphIndex,
    private readonly adapter: VeraAdapter,
  ) {
    this.taken = new Set<string>([...index.initializers.keys(), ...index.producer.keys(), ...index.uses.keys()]);
    for (const g of model.graphs) for (const i of g.inputs) this.taken.add(i);
  }

  /** Whether a value, initializer or input of that name exists already. */
  has(name: string): boolean {
    return this.taken.has(name);
  }

  /** A name the model does not use yet (`want`, else `want.2`, `want.3`, ...). */
  fresh(want: string): string {
    let name = want;
    for (let k = 2; this.taken.has(name); k++) name = `${want}.${k}`;
    this.taken.add(name);
    return name;
  }

  /** A graph input of the main graph (float32 unless `type` says otherwise); the name must be free. */
  input(name: string, dims: Dim[], type: number = FLOAT): void {
    this.taken.add(name);
    this.tail.push(inputField({ name, type, shape: dims }));
  }

  /** An initializer of the main graph (raw little-endian bytes). */
  initializer(name: string, type: number, dims: number[], raw: Uint8Array): void {
    this.taken.add(name);
    this.tail.push(initializerField({ name, type, dims, raw }));
  }

  /** An int64 constant (one per distinct value list). */
  int64(values: number[]): string {
    const key = values.join(",");
    let name = this.constants.get(key);
    if (!name) {
      name = this.fresh(`${GRAFT_PREFIX}.i64.${values.map((v) => (v < 0 ? `m${-v}` : String(v))).join("_")}`);
      this.constants.set(key, name);
      this.initializer(name, INT64, [values.length], int64Bytes(values));
    }
    return name;
  }

  /** A node builder whose nodes and values are named `<prefix>/<out>`; `nodes` collects them. */
  ops(prefix: string, nodes: NodeSpec[]): OpFn {
    return (opType, inputs, out, attrs) => {
      const name = this.fresh(`${prefix}/${out}`);
      const spec: NodeSpec = { name: this.fresh(`${name}/${opType}`), op: opType, inputs, outputs: [name] };
      if (attrs) spec.attrs = attrs;
      nodes.push(spec);
      return name;
    };
  }

  /** Nodes placed before the main graph's first node (they read only inputs and initializers). */
  atHead(nodes: NodeSpec[]): void {
    for (const n of nodes) this.head.push(nodeField(n));
  }

  /** Nodes placed right before / after `node`, in its graph. */
  around(node: OnnxNode, where: "before" | "after", nodes: NodeSpec[]): void {
    const map = where === "before" ? this.before : this.after;
    const list = map.get(node) ?? [];
    list.push(...nodes.map(nodeField));
    map.set(node, list);
  }

  /** Rename the `k`-th input (field 1) or output (field 2) of a node. */
  rename(node: OnnxNode, field: 1 | 2, k: number, to: string): void {
    const bytes = this.model.bytes;
    let seen = 0;
    for (const f of fields(bytes, node.span.start, node.span.end)) {
      if (f.field !== field) continue;
      if (seen++ !== k) continue;
      this.edits.push({ start: f.start, end: f.end, data: lenField(field, to), span: node.span });
      return;
    }
  }

  /** A's transpose (max_in x r) or B's (r x max_out), stored once per element type. */
  projection(which: "A" | "B", type: number): string {
    const key = `${which}${type}`;
    let name = this.projNames.get(key);
    if (name) return name;
    const a = this.adapter;
    const rank = a.rank;
    if (!this.projections) {
      // regenerated from the PRNG spec, or the adapter's stored projections (recorded in the graft spec by digest)
      const { A, B } = projectionsFor(a);
      const at = new Float32Array(a.maxIn * rank);
      for (let i = 0; i < rank; i++) for (let j = 0; j < a.maxIn; j++) at[j * rank + i] = A[i * a.maxIn + j]!;
      const bt = new Float32Array(rank * a.maxOut);
      for (let o = 0; o < a.maxOut; o++) for (let i = 0; i < rank; i++) bt[i * a.maxOut + o] = B[o * rank + i]!;
      this.projections = { at, bt };
    }
    const src = which === "A" ? this.projections.at : this.projections.bt;
    const dims = which === "A" ? [a.maxIn, rank] : [rank, a.maxOut];
    let raw: Uint8Array;
    if (type === FLOAT) raw = float32Bytes(src);
    else {
      const h = new Uint16Array(src.length);
      for (let i = 0; i < src.length; i++) h[i] = f32ToF16Bits(src[i]!);
      raw = new Uint8Array(h.buffer);
    }
    name = this.fresh(`${GRAFT_PREFIX}.vera_${which}_t${type === FLOAT ? "" : ".f16"}`);
    this.projNames.set(key, name);
    this.initializer(name, type, dims, raw);
    return name;
  }

  /** The projection sliced to `size` rows of A^T / columns of B^T (one Slice node per distinct size). */
  sliced(which: "A" | "B", type: number, size: number): string {
    const full = which === "A" ? this.adapter.maxIn : this.adapter.maxOut;
    const src = this.projection(which, type);
    if (size === full) return src;
    const key = `${which}${type}:${size}`;
    let name = this.slices.get(key);
    if (!name) {
      name = this.fresh(`${src}.${which === "A" ? "in" : "out"}${size}`);
      this.slices.set(key, name);
      const axis = which === "A" ? 0 : 1;
      this.atHead([
        {
          name: this.fresh(`${name}/Slice`),
          op: "Slice",
          inputs: [src, this.int64([0]), this.int64([size]), this.int64([axis])],
          outputs: [name],
        },
      ]);
    }
    return name;
  }

  /** Every collected addition as byte edits of the model, plus `extra` appended at the end of the file. */
  finish(extra: Uint8Array): ByteEdit[] {
    const { model } = this;
    const bytes = model.bytes;
    const graphOf = (n: OnnxNode): MessageSpan => model.graphs[n.graphIndex]!.span;
    const starts = new Map<number, number>();
    for (const g of model.graphs)
      for (const f of fields(bytes, g.span.start, g.span.end)) if (f.field === 1) starts.set(f.dataStart, f.start);
    // Insertions, in the order their nodes must run where they share a position: after a node, then the head, then
    // before the next node, then the main graph's appended fields.
    const inserts: ByteEdit[] = [];
    for (const [node, encoded] of this.after)
      inserts.push({ start: node.span.end, end: node.span.end, data: concatBytes(encoded), span: graphOf(node) });
    const main = model.graphs[0]!;
    if (this.head.length > 0) {
      const first = main.nodes[0];
      const at = first ? starts.get(first.span.start)! : main.span.end;
      inserts.push({ start: at, end: at, data: concatBytes(this.head), span: main.span });
    }
    for (const [node, encoded] of this.before) {
      const at = starts.get(node.span.start)!;
      inserts.push({ start: at, end: at, data: concatBytes(encoded), span: graphOf(node) });
    }
    inserts.push({ start: main.span.end, end: main.span.end, data: concatBytes(this.tail), span: main.span });
    const merged = new Map<string, ByteEdit>();
    for (const e of inserts) {
      const key = `${e.start}:${e.span.start}`;
      const same = merged.get(key);
      if (same) same.data = concatBytes([same.data, e.data]);
      else merged.set(key, e);
    }
    const top: MessageSpan = { lenStart: -1, start: 0, end: bytes.length, parent: null };
    const edits = [...this.edits, ...merged.values()];
    edits.push({ start: bytes.length, end: bytes.length, data: extra, span: top });
    return edits;
  }
}

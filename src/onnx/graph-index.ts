/**
 * Internal: producer / consumer / initializer indexes over every graph of a model (subgraphs may
 * use names of enclosing graphs, so uses are counted model-wide, which can only over-count and
 * therefore errs on the side of refusing a merge).
 */
import type { OnnxModel, OnnxNode, OnnxTensor } from "./types.js";

/** Indexes over a model. */
export interface GraphIndex {
  /** Value name -> node producing it. */
  producer: Map<string, OnnxNode>;
  /** Value name -> number of uses (node inputs in any graph + graph outputs). */
  uses: Map<string, number>;
  /** Value name -> nodes using it. */
  consumers: Map<string, OnnxNode[]>;
  /** Initializer name -> tensor (main graph first; a subgraph initializer shadowing an outer name is kept separately). */
  initializers: Map<string, OnnxTensor>;
  /** Names of initializers also declared as graph inputs (overridable at run time). */
  overridable: Set<string>;
}

/** Build the indexes for `model`. */
export function indexGraph(model: OnnxModel): GraphIndex {
  const producer = new Map<string, OnnxNode>();
  const uses = new Map<string, number>();
  const consumers = new Map<string, OnnxNode[]>();
  const initializers = new Map<string, OnnxTensor>();
  const overridable = new Set<string>();
  for (const g of model.graphs) {
    for (const t of g.initializers) if (!initializers.has(t.name)) initializers.set(t.name, t);
    const inputSet = new Set(g.inputs);
    for (const t of g.initializers) if (inputSet.has(t.name)) overridable.add(t.name);
    for (const n of g.nodes) {
      for (const o of n.outputs) if (o !== "" && !producer.has(o)) producer.set(o, n);
      for (const i of n.inputs) {
        if (i === "") continue;
        uses.set(i, (uses.get(i) ?? 0) + 1);
        const list = consumers.get(i);
        if (list) list.push(n);
        else consumers.set(i, [n]);
      }
    }
    for (const o of g.outputs) uses.set(o, (uses.get(o) ?? 0) + 1);
  }
  return { producer, uses, consumers, initializers, overridable };
}

/** An integer attribute of a node, or `fallback`. */
export function intAttr(node: OnnxNode, name: string, fallback: bigint): bigint {
  const a = node.attributes.find((x) => x.name === name);
  return a?.i ?? fallback;
}

/** An ints attribute of a node, or undefined. */
export function intsAttr(node: OnnxNode, name: string): bigint[] | undefined {
  return node.attributes.find((x) => x.name === name)?.ints;
}

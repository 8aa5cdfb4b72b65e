/**
 * Internal: where a graft goes. {@link locateGraftTargets} holds the one call into the ONNX weight locator; the rest
 * turns its answer into MatMul/Gemm nodes to branch on (every branch of an If node that holds the same weight).
 */
import type { Issue } from "../../errors.js";
import type { VeraAdapter } from "../../format/types.js";
import { indexGraph, intAttr, type GraphIndex } from "../../onnx/graph-index.js";
import { listLinearWeights, type LinearWeight } from "../../onnx/list-linear-weights.js";
import { findWeightsForModule } from "../../onnx/plan-onnx-merge.js";
import { onnxWeightLocator } from "../../onnx/onnx-weight-locator.js";
import { OnnxErrorCode } from "../../onnx/error-codes.js";
import { dataTypeName, OnnxDataType, type OnnxModel, type OnnxNode } from "../../onnx/types.js";
import type { WeightMapping } from "../../onnx/weight-mapping.js";
import { ServeErrorCode } from "../error-codes.js";

/** One module to graft: its weight and every node whose output receives the branch. */
export interface GraftTarget {
  module: string;
  w: LinearWeight;
  /** The consumer nodes: one, or one per branch of an If node whose branches share the weight. */
  nodes: OnnxNode[];
  /** Element type of the activations. */
  act: number;
  inFeatures: number;
  outFeatures: number;
}

/** Parameters of {@link locateGraftTargets}. */
export interface LocateGraftTargetsParams {
  model: OnnxModel;
  adapter: VeraAdapter;
  dtype: "f32" | "f16";
  skipMissing?: boolean;
  mapping?: WeightMapping;
}

interface Located {
  module: string;
  w: LinearWeight;
  inFeatures: number;
  outFeatures: number;
  /** For MatMulNBits: the shape check is done here, not by the planner. */
  nbits: boolean;
}

/** The weights a module may map to, one per distinct weight use: copies in sibling If branches are left out. */
function representatives(weights: LinearWeight[]): LinearWeight[] {
  const seen = new Set<string>();
  return weights.filter((w) => {
    const key = `${w.initializer}\u0000${w.module}\u0000${w.opType}\u0000${w.via.join(",")}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/**
 * The locator's answer for every adapter module: the ONE place graft asks where weights are (listLinearWeights,
 * findWeightsForModule, the ONNX weight locator's plan). Refusals are the locator's `ONNX_*` errors, thrown as they come.
 */
function locateWeights(params: LocateGraftTargetsParams): {
  located: Located[];
  skipped: string[];
  all: LinearWeight[];
  issues: Issue[];
} {
  const { model, adapter } = params;
  const all = listLinearWeights({ model });
  const weights = representatives(all);
  const located: Located[] = [];
  const issues: Issue[] = [];
  // 4-bit MatMulNBits weights: a merge cannot change them exactly, but a branch on the node's output needs no change
  // to the weight, so they are grafted like float weights.
  const planned = adapter.modules.filter((m) => {
    if (params.mapping?.[m.name]) return true;
    const hits = findWeightsForModule({ module: m.name, weights });
    const only = hits.length === 1 ? hits[0]! : undefined;
    if (!only || only.weight.opType !== "MatMulNBits" || only.part !== undefined) return true;
    located.push({ module: m.name, w: only.weight, inFeatures: m.inFeatures, outFeatures: m.outFeatures, nbits: true });
    return false;
  });
  // A branch is added to one node's output: a weight shared with other nodes is never changed (untie).
  const locator = onnxWeightLocator({
    model,
    weights,
    untie: true,
    ...(params.mapping !== undefined ? { mapping: params.mapping } : {}),
  });
  const plan =
    planned.length === 0
      ? { weights: [], skipped: [] as string[] }
      : locator.plan({
          modules: planned.map((m) => ({ name: m.name, inFeatures: m.inFeatures, outFeatures: m.outFeatures })),
          ...(params.skipMissing !== undefined ? { skipMissing: params.skipMissing } : {}),
        });
  for (const p of plan.weights) {
    for (const pm of p.modules) {
      if (pm.outStart !== 0 || pm.outEnd !== p.outFeatures) {
        issues.push({
          code: ServeErrorCode.SERVE_GRAPH_UNSUPPORTED,
          message: `${pm.module}: its weight is rows [${pm.outStart}, ${pm.outEnd}) of the fused weight ${JSON.stringify(p.initializer)}; grafting fused weights is not supported (merge instead)`,
          path: pm.module,
        });
        continue;
      }
      const w = p.untie
        ? weights.find(
            (x) =>
              x.initializer === p.initializer &&
              x.entry.graph === p.untie!.graph &&
              x.entry.node === p.untie!.node &&
              x.entry.input === p.untie!.input,
          )
        : weights.find((x) => x.initializer === p.initializer && (p.node === "" || x.node === p.node));
      if (!w) {
        issues.push(noConsumer(pm.module, p.initializer));
        continue;
      }
      located.push({ module: pm.module, w, inFeatures: pm.inFeatures, outFeatures: pm.outFeatures, nbits: false });
    }
  }
  return { located, skipped: plan.skipped, all, issues };
}

function noConsumer(module: string, initializer: string): Issue {
  return {
    code: ServeErrorCode.SERVE_GRAPH_UNSUPPORTED,
    message: `${module}: weight ${JSON.stringify(initializer)} has no MatMul/Gemm consumer to graft onto`,
    path: module,
  };
}

/** The element type the consumer sees at its weight input (through Transpose/Identity; a Cast decides). */
function weightComputeType(index: GraphIndex, node: OnnxNode, slot: number): number {
  let cur = node.inputs[slot] ?? "";
  for (let steps = 0; steps < 8; steps++) {
    const p = index.producer.get(cur);
    if (!p) break;
    if (p.opType === "Cast") return Number(intAttr(p, "to", 0n));
    cur = p.inputs[0] ?? "";
  }
  return index.initializers.get(cur)?.dataType ?? 0;
}

/** The MatMul/Gemm node of a located weight: its entry node, followed forward through the ops in `via`. */
function consumerOf(model: OnnxModel, index: GraphIndex, w: LinearWeight): OnnxNode | undefined {
  const graph = model.graphs[w.entry.graph];
  let cur: OnnxNode | undefined = graph?.nodes[w.entry.node];
  for (let i = 1; i < w.via.length + 1 && cur; i++) {
    const want = i < w.via.length ? w.via[i] : w.opType;
    const next: OnnxNode[] = (index.consumers.get(cur.outputs[0] ?? "") ?? []).filter(
      (n) => n.graphIndex === cur!.graphIndex,
    );
    cur = next.find((n) => n.opType === want && (i < w.via.length || n.name === w.node)) ?? undefined;
  }
  return cur && cur.opType === w.opType && cur.name === w.node ? cur : undefined;
}

/** The graph's If ancestry: a weight used the same way in sibling If branches is the same layer in each branch. */
function siblingUses(all: LinearWeight[], w: LinearWeight): LinearWeight[] {
  return all.filter(
    (x) =>
      x.initializer === w.initializer &&
      x.module === w.module &&
      x.opType === w.opType &&
      x.via.join(",") === w.via.join(","),
  );
}

function f16ActivationIssue(module: string, node: OnnxNode, act: number): Issue {
  return {
    code: ServeErrorCode.SERVE_GRAPH_UNSUPPORTED,
    message: `${module}: a float16 branch needs float16 activations; node ${JSON.stringify(node.name)} computes in ${dataTypeName(act)} (use dtype f32)`,
    path: module,
    expected: "FLOAT16",
    received: dataTypeName(act),
  };
}

/** The activation type of a located weight's consumer, or the issue that refuses it. */
function activationType(index: GraphIndex, l: Located, node: OnnxNode, dtype: "f32" | "f16"): number | Issue {
  const act = l.nbits
    ? (index.initializers.get(node.inputs[2] ?? "")?.dataType ?? 0)
    : weightComputeType(index, node, 1);
  const ok = l.nbits
    ? act === OnnxDataType.FLOAT || act === OnnxDataType.FLOAT16
    : act === OnnxDataType.FLOAT || act === OnnxDataType.FLOAT16 || act === OnnxDataType.BFLOAT16;
  if (!ok)
    return {
      code: ServeErrorCode.SERVE_GRAPH_UNSUPPORTED,
      message: l.nbits
        ? `${l.module}: MatMulNBits ${JSON.stringify(node.name)} has no float32/float16 scales initializer to tell its activation type`
        : `${l.module}: node ${JSON.stringify(node.name)} computes in ${dataTypeName(act)}`,
      path: l.module,
    };
  if (dtype === "f16" && act !== OnnxDataType.FLOAT16) return f16ActivationIssue(l.module, node, act);
  return act;
}

/**
 * Every adapter module's consumer nodes (sorted by module), the modules left out (`skipMissing`), and every issue
 * found (the caller throws them together).
 */
export function locateGraftTargets(params: LocateGraftTargetsParams): {
  targets: GraftTarget[];
  skipped: string[];
  issues: Issue[];
  index: GraphIndex;
} {
  const { model } = params;
  const index = indexGraph(model);
  const { located, skipped, all, issues } = locateWeights(params);
  const targets: GraftTarget[] = [];
  for (const l of located) {
    if (l.nbits && (l.w.inFeatures !== l.inFeatures || l.w.outFeatures !== l.outFeatures)) {
      issues.push({
        code: OnnxErrorCode.ONNX_SHAPE_MISMATCH,
        message: `${l.module}: the adapter says in=${l.inFeatures}, out=${l.outFeatures}, but MatMulNBits ${JSON.stringify(l.w.node)} has K=${l.w.inFeatures}, N=${l.w.outFeatures}`,
        path: l.module,
        expected: { inFeatures: l.inFeatures, outFeatures: l.outFeatures },
        received: { inFeatures: l.w.inFeatures, outFeatures: l.w.outFeatures },
      });
      continue;
    }
    const uses = l.w.uses > 1 && model.graphs.length > 1 ? siblingUses(all, l.w) : [l.w];
    const nodes = uses.map((u) => consumerOf(model, index, u));
    const bad = nodes.findIndex((n) => !n || n.outputs.length < 1 || !n.inputs[0]);
    if (bad >= 0) {
      issues.push(noConsumer(l.module, l.w.initializer));
      continue;
    }
    const act = activationType(index, l, nodes[0]!, params.dtype);
    if (typeof act !== "number") {
      issues.push(act);
      continue;
    }
    targets.push({
      module: l.module,
      w: l.w,
      nodes: nodes as OnnxNode[],
      act,
      inFeatures: l.inFeatures,
      outFeatures: l.outFeatures,
    });
  }
  const seenNodes = new Map<OnnxNode, string>();
  for (const t of targets)
    for (const node of t.nodes) {
      const other = seenNodes.get(node);
      if (other !== undefined)
        issues.push({
          code: ServeErrorCode.SERVE_GRAPH_UNSUPPORTED,
          message: `${t.module} and ${other} resolve to the same node ${JSON.stringify(node.name)}`,
          path: t.module,
        });
      seenNodes.set(node, t.module);
    }
  targets.sort((a, b) => (a.module < b.module ? -1 : a.module > b.module ? 1 : 0));
  return { targets, skipped, issues, index };
}

import { VeraError } from "../errors.js";
import type { VeraAdapter } from "../format/types.js";
import { applyEdits, concatEdited } from "../onnx/apply-edits.js";
import { float32Bytes, metadataField, type NodeSpec } from "../onnx/encode-onnx.js";
import { dataTypeName, OnnxDataType, type OnnxModel, type OnnxNode } from "../onnx/types.js";
import type { WeightMapping } from "../onnx/weight-mapping.js";
import { ServeErrorCode } from "./error-codes.js";
import { encodeGraftSpec, GRAFT_METADATA_KEY, graftInputNames, graftSpecOf, type GraftSpec } from "./graft-spec.js";
import { graftCarriedTensors } from "./internal/graft-carried.js";
import { locateGraftTargets, type GraftTarget } from "./internal/graft-targets.js";
import { GRAFT_PREFIX, GraftWriter } from "./internal/graft-writer.js";

/** Parameters of {@link graftOnnx}. */
export interface GraftOnnxParams {
  /** The parsed base model ({@link readOnnxModel}); external data stays where it is (locations are kept). */
  model: OnnxModel;
  /** The adapter whose PRNG spec, rank and target modules the graph is grafted for; its vectors are not used. */
  adapter: VeraAdapter;
  /**
   * Inputs `[batch, r]` / `[batch, out]` (one adapter per sequence of a batch) instead of `[r]` / `[out]`.
   * @default false
   */
  batched?: boolean;
  /**
   * Arithmetic of the branch. `f32`: float32 (float16/bfloat16 activations go through Casts); `f16`: float16 (only
   * for float16 activations; the projections are stored rounded to float16).
   * @default "f32"
   */
  dtype?: "f32" | "f16";
  /**
   * Leave out adapter modules that have no weight in this model (listed in the result) instead of refusing.
   * @default false
   */
  skipMissing?: boolean;
  /**
   * Also give every d/b input a default initializer of the same name (d = ones, b = zeros), so that a run feeding
   * nothing is the base model. Only for runtimes that feed such inputs: onnxruntime's Python, C, C++, C# and Java APIs
   * do, and its adapter API (`RunOptions` adapters, onnxruntime-web's `LoraAdapter`) needs them; the JavaScript
   * bindings (onnxruntime-node, onnxruntime-web) silently ignore feeds for such inputs, so fed from JavaScript such a
   * graph runs the base model. By default every input is a plain input, fed on every run (`baseFeeds` gives the base
   * model's feeds), and works in every binding alike. Carried tensors (heads) get defaults too (zeros, use = 0).
   * @default false
   */
  defaults?: boolean;
  /** Explicit module -> initializer entries, as for `vera merge`. @default none */
  mapping?: WeightMapping;
}

/** One grafted module. */
export interface GraftedModule {
  /** The adapter's module path (the inputs are named after it). */
  module: string;
  /** Graph inputs that carry the module's vectors. */
  inputs: { d: string; b: string };
  /** The weight's initializer (unchanged). */
  initializer: string;
  /** The MatMul/Gemm node whose output receives the branch (the first one, see `nodes`). */
  node: string;
  /** Every node that receives the branch: one, or one per branch of an If node whose branches share the weight. */
  nodes: string[];
  opType: string;
  /** Element type of the node's activations. */
  activations: "FLOAT" | "FLOAT16" | "BFLOAT16";
  inFeatures: number;
  outFeatures: number;
}

/** What {@link graftOnnx} returns. */
export interface GraftOnnxResult {
  /** The grafted model: the base model's bytes with nodes, initializers, inputs and the graft record appended. */
  bytes: Uint8Array;
  /** The record stored under `verakit.graft` in the model's metadata_props. */
  spec: GraftSpec;
  modules: GraftedModule[];
  /** Carried tensors (modules_to_save, trainable biases) made per-adapter inputs: base parameter -> initializer. */
  carried: Array<{ param: string; initializer: string; input: string }>;
  /** Adapter modules left out (not in this model; only with `skipMissing`). */
  skipped: string[];
  /** Whether the d/b inputs have default initializers (see {@link GraftOnnxParams.defaults}). */
  defaults: boolean;
  /** Bytes added to the model (projections, default vectors, nodes). */
  addedBytes: number;
  warnings: string[];
}

const FLOAT = OnnxDataType.FLOAT;
const FLOAT16 = OnnxDataType.FLOAT16;

function unsupported(message: string, path?: string): VeraError {
  return new VeraError(ServeErrorCode.SERVE_GRAPH_UNSUPPORTED, message, path === undefined ? {} : { path });
}

/** Refusals before anything is located: a grafted model, an old opset, stored projections of the wrong size. */
function checkGraftable(model: OnnxModel, adapter: VeraAdapter): void {
  if (GRAFT_METADATA_KEY in model.metadata)
    throw unsupported(
      `the model is grafted already (metadata_props has "${GRAFT_METADATA_KEY}"); graft the base model`,
    );
  const opset = model.opsetImports.find((o) => o.domain === "" || o.domain === "ai.onnx")?.version ?? 0;
  if (opset < 13)
    throw new VeraError(
      ServeErrorCode.SERVE_GRAPH_UNSUPPORTED,
      `the model's default-domain opset is ${opset}; grafting needs opset 13 or later`,
      { expected: ">= 13", received: opset },
    );
  const p = adapter.storedProjections;
  const want = [adapter.rank * adapter.maxIn, adapter.maxOut * adapter.rank];
  if (p && (p.A.length !== want[0] || p.B.length !== want[1]))
    throw new VeraError(
      ServeErrorCode.SERVE_GRAPH_UNSUPPORTED,
      `the adapter's stored projections hold ${p.A.length} / ${p.B.length} values; rank ${adapter.rank}, max_in ` +
        `${adapter.maxIn} and max_out ${adapter.maxOut} need ${want[0]} / ${want[1]}`,
      { path: "storedProjections", expected: want, received: [p.A.length, p.B.length] },
    );
}

/** The batch dimension of the main graph's first input that is not an initializer (its name, else "batch"). */
function batchDimOf(model: OnnxModel): string | number {
  const main = model.graphs[0]!;
  const inits = new Set(main.initializers.map((t) => t.name));
  const first = main.inputInfo.find((i) => !inits.has(i.name));
  const d = first?.dims?.[0];
  return typeof d === "string" ? d : "batch";
}

/** Options of one branch. */
interface BranchOptions {
  rank: number;
  batched: boolean;
  dtype: "f32" | "f16";
  defaults: boolean;
  batchDim: string | number;
}

/** d and b inputs of a module (and their defaults). */
function branchInputs(w: GraftWriter, t: GraftTarget, o: BranchOptions): { d: string; b: string } {
  const { d, b } = graftInputNames(t.module);
  w.input(d, o.batched ? [o.batchDim, o.rank] : [o.rank]);
  w.input(b, o.batched ? [o.batchDim, t.outFeatures] : [t.outFeatures]);
  if (o.defaults) {
    w.initializer(d, FLOAT, o.batched ? [1, o.rank] : [o.rank], float32Bytes(new Float32Array(o.rank).fill(1)));
    w.initializer(b, FLOAT, o.batched ? [1, t.outFeatures] : [t.outFeatures], new Uint8Array(4 * t.outFeatures));
  }
  return { d, b };
}

/**
 * The branch of one target on each of its nodes: y becomes `y + (((x A_s^T) * d) B_s^T) * b` (per row of the batch
 * with `batched`), the node's output renamed and an Add restoring it.
 */
/**
 * `x A_s^T` computed once per distinct (graph, x, in_features) and shared by every branch that needs it (q, k and v
 * read the same activations): fewer reads of A^T, the branch's main cost per token. Placed right before the first node
 * of the graph that reads x, so every branch that uses it comes later.
 */
class SharedXA {
  private readonly made = new Map<string, string>();
  private readonly first = new Map<string, OnnxNode>();
  constructor(
    private readonly w: GraftWriter,
    targets: GraftTarget[],
    private readonly branchType: number,
  ) {
    for (const t of targets)
      for (const n of t.nodes) {
        const k = this.key(n, t);
        const cur = this.first.get(k);
        if (!cur || n.index < cur.index) this.first.set(k, n);
      }
  }
  private key(n: OnnxNode, t: GraftTarget): string {
    return `${n.graphIndex}\u0000${n.inputs[0]}\u0000${t.inFeatures}\u0000${t.act}`;
  }
  of(n: OnnxNode, t: GraftTarget): string {
    const k = this.key(n, t);
    let name = this.made.get(k);
    if (name) return name;
    const nodes: NodeSpec[] = [];
    const op = this.w.ops(`${GRAFT_PREFIX}/${t.module}`, nodes);
    const x0 = n.inputs[0]!;
    const x = t.act === this.branchType ? x0 : op("Cast", [x0], "x_cast", [{ name: "to", i: this.branchType }]);
    name = op("MatMul", [x, this.w.sliced("A", this.branchType, t.inFeatures)], "xA");
    this.w.around(this.first.get(k)!, "before", nodes);
    this.made.set(k, name);
    return name;
  }
}

function emitBranch(
  w: GraftWriter,
  t: GraftTarget,
  inputs: { d: string; b: string },
  o: BranchOptions,
  shared: SharedXA,
): void {
  const branchType = o.dtype === "f16" ? FLOAT16 : FLOAT;
  for (const node of t.nodes) {
    const p = `${GRAFT_PREFIX}/${t.module}`;
    const nodes: NodeSpec[] = [];
    const op = w.ops(p, nodes);
    const y = node.outputs[0]!;
    const yBase = w.fresh(`${y}/verakit_base`);
    let dIn = inputs.d;
    let bIn = inputs.b;
    if (branchType !== FLOAT) {
      dIn = op("Cast", [inputs.d], "d_cast", [{ name: "to", i: branchType }]);
      bIn = op("Cast", [inputs.b], "b_cast", [{ name: "to", i: branchType }]);
    }
    const xa = shared.of(node, t);
    let delta: string;
    if (!o.batched) {
      const xd = op("Mul", [xa, dIn], "xAd");
      const xb = op("MatMul", [xd, w.sliced("B", branchType, t.outFeatures)], "xAdB");
      delta = op("Mul", [xb, bIn], "delta");
    } else {
      // [..., r] -> [batch, tokens, r]; d [batch, r] -> [batch, 1, r]; back to the shape of y at the end.
      const dShape = op("Shape", [inputs.d], "d_shape");
      const bsz = op("Slice", [dShape, w.int64([0]), w.int64([1]), w.int64([0])], "batch");
      const shape3 = op("Concat", [bsz, w.int64([-1]), w.int64([o.rank])], "shape3", [{ name: "axis", i: 0 }]);
      const xa3 = op("Reshape", [xa, shape3], "xA3");
      const d3 = op("Unsqueeze", [dIn, w.int64([1])], "d3");
      const xd = op("Mul", [xa3, d3], "xAd");
      const xb = op("MatMul", [xd, w.sliced("B", branchType, t.outFeatures)], "xAdB");
      const b3 = op("Unsqueeze", [bIn, w.int64([1])], "b3");
      const xbb = op("Mul", [xb, b3], "xAdBb");
      const yShape = op("Shape", [yBase], "y_shape");
      delta = op("Reshape", [xbb, yShape], "delta");
    }
    if (t.act !== branchType) delta = op("Cast", [delta], "delta_cast", [{ name: "to", i: t.act }]);
    nodes.push({ name: w.fresh(`${p}/Add`), op: "Add", inputs: [yBase, delta], outputs: [y] });
    w.around(node, "after", nodes);
    w.rename(node, 2, 0, yBase);
  }
}

/**
 * Graft VeRA branches into an ONNX model so that one base model serves any adapter of the same projections without
 * merging. For each target module (found by the locator of `vera merge`: torch dynamo and legacy exports,
 * MatMul/Gemm/Transpose layouts, GPT-2 Conv1D, wrapped models, and both branches of a merged decoder's If node), the
 * output y of its MatMul/Gemm becomes `y + (((x A_s^T) * d) B_s^T) * b`:
 * - A^T (max_in x r) and B^T (r x max_out), regenerated from the adapter's PRNG spec (or the adapter's stored
 *   projections, e.g. PVeRA's, recorded in the spec by their SHA-256: the graph then serves only adapters with those
 *   projections), are stored once and sliced per distinct size (Slice nodes, shared by the modules of that size);
 * - d and b are plain graph inputs named by {@link graftInputNames} (float32 `[r]` / `[out]`, or `[batch, r]` /
 *   `[batch, out]` with `batched`, broadcast over the sequence axis), fed on every run ({@link adapterFeeds},
 *   {@link baseFeeds}); with `defaults`, each also gets a default initializer (d = ones, b = zeros);
 * - tensors the adapter carries (modules_to_save heads, trainable biases) become per-adapter inputs too, each with a
 *   `use` flag that picks the fed tensor or the base model's (per row with `batched`);
 * - float16/bfloat16 activations: the branch runs in float32 between Casts (`dtype: "f32"`) or in float16 (`"f16"`);
 * - 4-bit MatMulNBits weights (which a merge must refuse) take a branch like float weights: the weight is not touched.
 * The edit is additive: every original byte stays (outputs and inputs of consumers are renamed, new fields are
 * appended), so initializers and external data are untouched. The {@link GraftSpec} is stored in metadata_props.
 *
 * @throws VeraError the locator's `ONNX_*` refusals (as `vera merge`, except that MatMulNBits weights are grafted),
 *   `SERVE_GRAPH_UNSUPPORTED` (including a carried tensor that cannot be placed, named).
 */
export function graftOnnx(params: GraftOnnxParams): GraftOnnxResult {
  const { model, adapter } = params;
  const batched = params.batched ?? false;
  const dtype = params.dtype ?? "f32";
  const defaults = params.defaults ?? false;
  checkGraftable(model, adapter);
  const located = locateGraftTargets({
    model,
    adapter,
    dtype,
    ...(params.skipMissing !== undefined ? { skipMissing: params.skipMissing } : {}),
    ...(params.mapping !== undefined ? { mapping: params.mapping } : {}),
  });
  const { targets, issues, index } = located;
  const w = new GraftWriter(model, index, adapter);
  for (const t of targets) {
    const { d, b } = graftInputNames(t.module);
    for (const n of [d, b])
      if (w.has(n))
        issues.push({
          code: ServeErrorCode.SERVE_GRAPH_UNSUPPORTED,
          message: `the model already has a value named ${JSON.stringify(n)}`,
          path: t.module,
        });
  }
  const carried = graftCarriedTensors({
    writer: w,
    adapter,
    index,
    batched,
    batchDim: batchDimOf(model),
    defaults,
    issues,
  });
  if (issues.length > 0) throw VeraError.fromIssues(issues);

  const opts: BranchOptions = { rank: adapter.rank, batched, dtype, defaults, batchDim: batchDimOf(model) };
  const shared = new SharedXA(w, targets, dtype === "f16" ? FLOAT16 : FLOAT);
  for (const t of targets) emitBranch(w, t, branchInputs(w, t, opts), opts, shared);

  const grafted = new Set(targets.map((t) => t.module));
  const spec = graftSpecOf({
    adapter,
    batched,
    dtype,
    modules: adapter.modules
      .filter((m) => grafted.has(m.name))
      .map((m) => ({ name: m.name, inFeatures: m.inFeatures, outFeatures: m.outFeatures, layout: m.layout })),
  });
  if (carried.length > 0) spec.carried = carried.map((c) => c.spec);
  const edits = w.finish(metadataField(GRAFT_METADATA_KEY, encodeGraftSpec(spec)));
  const out = concatEdited(applyEdits({ bytes: model.bytes, edits }));
  const warnings: string[] = [];
  if (located.skipped.length > 0)
    warnings.push(
      `${located.skipped.length} adapter module(s) have no weight in this model and were not grafted: ${located.skipped.join(", ")}`,
    );
  return {
    bytes: out,
    spec,
    modules: targets.map((t) => ({
      module: t.module,
      inputs: graftInputNames(t.module),
      initializer: t.w.initializer,
      node: t.nodes[0]!.name,
      nodes: t.nodes.map((n) => n.name),
      opType: t.nodes[0]!.opType,
      activations: dataTypeName(t.act) as GraftedModule["activations"],
      inFeatures: t.inFeatures,
      outFeatures: t.outFeatures,
    })),
    carried: carried.map((c) => ({ param: c.spec.param, initializer: c.initializer, input: c.spec.input })),
    skipped: located.skipped,
    defaults,
    addedBytes: out.length - model.bytes.length,
    warnings,
  };
}

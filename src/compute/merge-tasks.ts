/**
 * The backend tasks for one weight, and the projection slices they use: the step between a located weight and a
 * backend, the same for every container (ONNX, safetensors, GGUF) and in browsers. Whole weights and row blocks of
 * (out, in) weights are merged in place; a column block of an (in, out) weight (fused qkv) is gathered into a buffer
 * and scattered back by `finish`.
 */
import type { WeightDtype, WeightLayout } from "../dtypes.js";
import { weightDtypeSize } from "../dtypes.js";
import type { VeraAdapter, VeraModule } from "../format/types.js";
import { projectionsFor } from "../projections/for-adapter.js";
import { sliceA, sliceB } from "../projections/generate.js";
import type { MergeTask } from "./backend.js";

/** Projection slices for a module shape (the same arrays for equal sizes). */
export type SliceFor = (inFeatures: number, outFeatures: number) => { a: Float32Array; b: Float32Array };

/**
 * A weight's stored order of output rows when it is not the adapter's (llama.cpp's permuted q/k rows): maps a
 * row-major matrix in the adapter's row order (rows of `rowLength` values) to a new one in the stored order. Pass the
 * same function for every weight with the same order (the permuted projection slices are kept per function).
 */
export type RowOrder = (rows: Float32Array, rowLength: number) => Float32Array;

/** What {@link buildMergeTasks} needs of a located weight (a merge container's weight, or an ONNX planned weight). */
export interface MergeTaskWeight {
  dtype: WeightDtype;
  layout: WeightLayout;
  inFeatures: number;
  outFeatures: number;
  /** Modules merged into this weight, each owning output features [outStart, outEnd). */
  modules: ReadonlyArray<{ module: string; inFeatures: number; outFeatures: number; outStart: number; outEnd: number }>;
  /**
   * The stored order of the output rows, when it is not the adapter's: the rows of B and lambda_b are put in that
   * order instead of the weight's bytes, which go to the backend as stored. Whole (out, in) weights of one module
   * only. @default the adapter's order
   */
  rowOrder?: RowOrder;
}

/** Parameters of {@link buildMergeTasks}. */
export interface BuildMergeTasksParams {
  weight: MergeTaskWeight;
  /** The weight's stored bytes; merged in place. */
  values: Uint8Array;
  /** The adapter's modules by name. */
  modules: ReadonlyMap<string, VeraModule>;
  rank: number;
  sliceFor: SliceFor;
}

/** The adapter's projections, sliced per input and output size (one array per size, shared by all tasks). */
export function projectionSlices(adapter: VeraAdapter): SliceFor {
  const proj = projectionsFor(adapter);
  const aSlices = new Map<number, Float32Array>();
  const bSlices = new Map<number, Float32Array>();
  return (inF, outF) => {
    let a = aSlices.get(inF);
    if (!a) aSlices.set(inF, (a = sliceA(proj.A, { rank: adapter.rank, maxIn: adapter.maxIn, inFeatures: inF })));
    let b = bSlices.get(outF);
    if (!b) bSlices.set(outF, (b = sliceB(proj.B, { rank: adapter.rank, outFeatures: outF })));
    return { a, b };
  };
}

/** B slices put in a row order, per order and slice. */
const orderedB = new WeakMap<RowOrder, WeakMap<Float32Array, Float32Array>>();

/** `b` (out x rank) in the row order `order`, computed once per (order, b). */
function reorderB(order: RowOrder, b: Float32Array, rank: number): Float32Array {
  let byB = orderedB.get(order);
  if (!byB) orderedB.set(order, (byB = new WeakMap()));
  let out = byB.get(b);
  if (!out) byB.set(b, (out = order(b, rank)));
  return out;
}

/** Tasks for one weight, and the step that puts gathered blocks back once they are merged. */
export function buildMergeTasks(params: BuildMergeTasksParams): { tasks: MergeTask[]; finish: () => void } {
  const { weight: w, values, rank } = params;
  const order = w.rowOrder;
  if (order && (w.layout !== "out_in" || w.modules.some((m) => m.outStart !== 0 || m.outEnd !== w.outFeatures)))
    throw new Error("internal: a row order applies to whole (out, in) weights only");
  const size = weightDtypeSize(w.dtype);
  const tasks: MergeTask[] = [];
  const scatters: Array<() => void> = [];
  for (const m of w.modules) {
    const mod = params.modules.get(m.module);
    if (!mod) throw new Error(`internal: no adapter module ${m.module}`);
    const { a, b } = params.sliceFor(m.inFeatures, m.outFeatures);
    let weight: Uint8Array;
    const whole = m.outStart === 0 && m.outEnd === w.outFeatures;
    if (whole) weight = values;
    else if (w.layout === "out_in")
      weight = values.subarray(m.outStart * w.inFeatures * size, m.outEnd * w.inFeatures * size);
    else {
      const cols = m.outEnd - m.outStart;
      const tmp = new Uint8Array(w.inFeatures * cols * size);
      for (let j = 0; j < w.inFeatures; j++) {
        const src = (j * w.outFeatures + m.outStart) * size;
        tmp.set(values.subarray(src, src + cols * size), j * cols * size);
      }
      weight = tmp;
      scatters.push(() => {
        for (let j = 0; j < w.inFeatures; j++)
          values.set(tmp.subarray(j * cols * size, (j + 1) * cols * size), (j * w.outFeatures + m.outStart) * size);
      });
    }
    tasks.push({
      name: m.module,
      dtype: w.dtype,
      layout: w.layout,
      outFeatures: m.outFeatures,
      inFeatures: m.inFeatures,
      rank,
      weight,
      a,
      b: order ? reorderB(order, b, rank) : b,
      lambdaD: mod.lambdaD,
      lambdaB: order ? order(mod.lambdaB, 1) : mod.lambdaB,
    });
  }
  return { tasks, finish: () => scatters.forEach((s) => s()) };
}

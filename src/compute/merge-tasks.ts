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

/** What {@link buildMergeTasks} needs of a located weight (a merge container's weight, or an ONNX planned weight). */
export interface MergeTaskWeight {
  dtype: WeightDtype;
  layout: WeightLayout;
  inFeatures: number;
  outFeatures: number;
  /** Modules merged into this weight, each owning output features [outStart, outEnd). */
  modules: ReadonlyArray<{ module: string; inFeatures: number; outFeatures: number; outStart: number; outEnd: number }>;
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

/** Tasks for one weight, and the step that puts gathered blocks back once they are merged. */
export function buildMergeTasks(params: BuildMergeTasksParams): { tasks: MergeTask[]; finish: () => void } {
  const { weight: w, values, rank } = params;
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
      b,
      lambdaD: mod.lambdaD,
      lambdaB: mod.lambdaB,
    });
  }
  return { tasks, finish: () => scatters.forEach((s) => s()) };
}

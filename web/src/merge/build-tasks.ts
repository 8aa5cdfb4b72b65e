import type { MergeTask } from "verakit/compute";
import type { VeraAdapter } from "verakit/format";
import { dtypeSize, type PlannedWeight } from "verakit/onnx";
import { projectionsFor, sliceA, sliceB } from "verakit/projections";

/** The adapter's projections, sliced per input and output size (one array per size, shared by all tasks). */
export function projectionSlicer(
  adapter: VeraAdapter,
): (inF: number, outF: number) => { a: Float32Array; b: Float32Array } {
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

/**
 * Merge tasks for one weight (as the CLI builds them): whole weights and row blocks of (out, in)
 * weights are merged in place; a column block of an (in, out) weight (fused qkv) is gathered into a
 * buffer and scattered back by `finish`.
 */
export function buildTasks(
  w: PlannedWeight,
  values: Uint8Array,
  byName: Map<string, VeraAdapter["modules"][number]>,
  rank: number,
  sliceFor: (inF: number, outF: number) => { a: Float32Array; b: Float32Array },
): { tasks: MergeTask[]; finish: () => void } {
  const size = dtypeSize(w.dtype);
  const tasks: MergeTask[] = [];
  const scatters: Array<() => void> = [];
  for (const m of w.modules) {
    const mod = byName.get(m.module)!;
    const { a, b } = sliceFor(m.inFeatures, m.outFeatures);
    let weight: Uint8Array;
    if (m.outStart === 0 && m.outEnd === w.outFeatures) weight = values;
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

import type { VeraAdapter } from "./types.js";

/** A plain-object description of an adapter, for `vera inspect` and reports. */
export interface AdapterSummary {
  baseModel: { id?: string; revision?: string } | null;
  prng: { algorithm: string; seed: string; arithmetic: string };
  rank: number;
  maxIn: number;
  maxOut: number;
  projectionRounding: string;
  projectionStorage: "regenerate" | "stored";
  vectorDtype: string;
  moduleCount: number;
  /** Trainable parameters: sum over modules of rank + out_features. */
  parameterCount: number;
  /** Module groups by their last path component (e.g. q_proj), with shapes. */
  targets: Array<{ suffix: string; count: number; shapes: string[]; layout: string }>;
  modules: Array<{ name: string; inFeatures: number; outFeatures: number; layout: string }>;
  extraTensors: string[];
  training: Record<string, unknown> | null;
}

/** Describe an adapter as a plain object (no vectors). */
export function summarizeAdapter(adapter: VeraAdapter): AdapterSummary {
  const groups = new Map<string, { count: number; shapes: Set<string>; layouts: Set<string> }>();
  for (const m of adapter.modules) {
    const suffix = m.name.split(".").pop()!;
    const g = groups.get(suffix) ?? { count: 0, shapes: new Set(), layouts: new Set() };
    g.count++;
    g.shapes.add(`${m.outFeatures}x${m.inFeatures}`);
    g.layouts.add(m.layout);
    groups.set(suffix, g);
  }
  return {
    baseModel: adapter.baseModel ?? null,
    prng: {
      algorithm: adapter.prng.algorithm,
      seed: adapter.prng.seed.toString(),
      arithmetic: adapter.prng.arithmetic,
    },
    rank: adapter.rank,
    maxIn: adapter.maxIn,
    maxOut: adapter.maxOut,
    projectionRounding: adapter.projectionRounding,
    projectionStorage: adapter.storedProjections ? "stored" : "regenerate",
    vectorDtype: adapter.vectorDtype,
    moduleCount: adapter.modules.length,
    parameterCount: adapter.modules.reduce((s, m) => s + m.lambdaD.length + m.lambdaB.length, 0),
    targets: [...groups].map(([suffix, g]) => ({
      suffix,
      count: g.count,
      shapes: [...g.shapes],
      layout: [...g.layouts].join(","),
    })),
    modules: adapter.modules.map((m) => ({
      name: m.name,
      inFeatures: m.inFeatures,
      outFeatures: m.outFeatures,
      layout: m.layout,
    })),
    extraTensors: (adapter.extraTensors ?? []).map((t) => t.name),
    training: adapter.training ?? null,
  };
}

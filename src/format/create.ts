import { ErrorCode, VeraError } from "../errors.js";
import type { Arithmetic, ProjectionRounding } from "../projections/generate.js";
import { parseSeed } from "../projections/seed.js";
import { PRNG_TORCH_MT19937_KAIMING, type Layout, type VeraAdapter, type VectorDtype } from "./types.js";

/** One module of a new adapter. */
export interface CreateModuleSpec {
  name: string;
  inFeatures: number;
  outFeatures: number;
  /** @default "linear" */
  layout?: Layout;
}

/** Parameters of {@link createAdapter}. */
export interface CreateAdapterParams {
  modules: CreateModuleSpec[];
  /** VeRA rank r. @default 256 */
  rank?: number;
  /** projection_prng_key. @default 0 */
  seed?: bigint | number | string;
  /** Initial value of every d entry, as PEFT's d_initial. @default 0.1 */
  dInitial?: number;
  /** @default "fused" */
  arithmetic?: Arithmetic;
  /** @default "none" */
  projectionRounding?: ProjectionRounding;
  /** @default "F32" */
  vectorDtype?: VectorDtype;
  baseModel?: { id?: string; revision?: string };
}

/**
 * A new adapter initialised as PEFT initialises one (init_weights=True): d = d_initial, b = 0, so it
 * is a no-op until trained. max_in / max_out are the largest in/out features over the modules.
 */
export function createAdapter(params: CreateAdapterParams): VeraAdapter {
  const rank = params.rank ?? 256;
  const dInitial = params.dInitial ?? 0.1;
  if (params.modules.length === 0)
    throw new VeraError(ErrorCode.ARG_INVALID, "an adapter needs at least one module", { path: "modules" });
  if (!Number.isSafeInteger(rank) || rank < 1)
    throw new VeraError(ErrorCode.VERA_RANK, "rank must be a positive integer", { received: rank });
  if (!Number.isFinite(dInitial))
    throw new VeraError(ErrorCode.VERA_NONFINITE, "d_initial must be finite", { received: dInitial });
  for (const m of params.modules)
    for (const k of ["inFeatures", "outFeatures"] as const)
      if (!Number.isSafeInteger(m[k]) || m[k] < 1)
        throw new VeraError(ErrorCode.VERA_MODULE_DIMS, `module "${m.name}" ${k} must be a positive integer`, {
          path: m.name,
          received: m[k],
        });
  const modules = params.modules
    .map((m) => ({
      name: m.name,
      inFeatures: m.inFeatures,
      outFeatures: m.outFeatures,
      layout: m.layout ?? "linear",
      lambdaD: new Float32Array(rank).fill(dInitial),
      lambdaB: new Float32Array(m.outFeatures),
    }))
    .sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
  const adapter: VeraAdapter = {
    prng: {
      algorithm: PRNG_TORCH_MT19937_KAIMING,
      seed: parseSeed(params.seed ?? 0),
      arithmetic: params.arithmetic ?? "fused",
    },
    rank,
    maxIn: Math.max(...modules.map((m) => m.inFeatures)),
    maxOut: Math.max(...modules.map((m) => m.outFeatures)),
    projectionRounding: params.projectionRounding ?? "none",
    vectorDtype: params.vectorDtype ?? "F32",
    modules,
    training: { d_initial: dInitial },
  };
  if (params.baseModel) adapter.baseModel = params.baseModel;
  return adapter;
}

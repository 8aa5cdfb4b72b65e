import { VeraError, type Issue } from "../errors.js";
import type { Layout, PrngSpec, VeraAdapter } from "../format/types.js";
import { PRNG_TORCH_MT19937_KAIMING } from "../format/types.js";
import type { ProjectionRounding } from "../projections/generate.js";
import { sha256Hex } from "../util/sha256.js";
import { canonicalJson } from "../util/strict-json.js";
import { ServeErrorCode } from "./error-codes.js";

/** Key of the model's `metadata_props` entry where a grafted model records what it was grafted for. */
export const GRAFT_METADATA_KEY = "verakit.graft";
/** Version of the record; bumped on an incompatible change. */
export const GRAFT_SPEC_VERSION = 1;

/** One grafted module: its path in the verakit module table and its shape. */
export interface GraftModule {
  name: string;
  inFeatures: number;
  outFeatures: number;
  layout: Layout;
}

/**
 * A tensor the adapter carries (a modules_to_save parameter, a trainable bias) made a per-adapter input of the graph:
 * the graph computes with the fed tensor where `use` is 1 and with the base model's where it is 0.
 */
export interface GraftCarried {
  /** The base model's parameter it replaces (transformers state-dict key, e.g. `classifier.out_proj.weight`). */
  param: string;
  kind: "modules_to_save" | "bias";
  /** Input that takes the tensor: float32, `dims` (`[batch, ...dims]` when batched). */
  input: string;
  /** Input that picks the fed tensor (1) or the base model's (0): float32 `[1]` (`[batch]` when batched). */
  use: string;
  /** The stored layout of the tensor in the graph (the base's initializer dims). */
  dims: number[];
  /** The graph stores the parameter transposed (a Linear weight as (in, out)): feeds are transposed. */
  transposed: boolean;
}

/** Names of the inputs of a carried tensor. */
export function carriedInputNames(param: string): { input: string; use: string } {
  return { input: `${param}.vera_carried`, use: `${param}.vera_carried_use` };
}

/**
 * What a grafted graph computes with: the projections (PRNG, rank, shapes, rounding), the grafted modules, the form of its
 * inputs. An adapter can be fed to the graph exactly when its projections are the same (see {@link checkAdapterAgainstGraft}).
 */
export interface GraftSpec {
  version: typeof GRAFT_SPEC_VERSION;
  prng: PrngSpec;
  rank: number;
  maxIn: number;
  maxOut: number;
  projectionRounding: ProjectionRounding;
  /** Inputs are [batch, r] / [batch, out] (one adapter per sequence) instead of [r] / [out]. */
  batched: boolean;
  /** Precision of the branch's arithmetic. */
  dtype: "f32" | "f16";
  /** Sorted by name. */
  modules: GraftModule[];
  /** Carried tensors served per adapter (absent when the adapter given to graft had none). */
  carried?: GraftCarried[];
  /**
   * Present when the graph holds the adapter's stored projections (kept explicitly because no seed regenerates them,
   * e.g. PEFT's PVeRA) instead of regenerated ones: their SHA-256 ({@link storedProjectionsDigest}). Only adapters
   * with the same stored projections can be fed to it.
   */
  storedProjections?: { sha256: string };
}

const digests = new WeakMap<object, string>();

/**
 * SHA-256 (lowercase hex) of an adapter's stored projections: A (rank x max_in) then B (max_out x rank), float32
 * little-endian; undefined when the adapter regenerates its projections. Cached per projections object.
 */
export function storedProjectionsDigest(adapter: VeraAdapter): string | undefined {
  const p = adapter.storedProjections;
  if (!p) return undefined;
  let hex = digests.get(p);
  if (hex === undefined) {
    const bytes = new Uint8Array(4 * (p.A.length + p.B.length));
    const view = new DataView(bytes.buffer);
    p.A.forEach((x, i) => view.setFloat32(4 * i, x, true));
    p.B.forEach((x, i) => view.setFloat32(4 * (p.A.length + i), x, true));
    hex = sha256Hex(bytes);
    digests.set(p, hex);
  }
  return hex;
}

/** Names of the graph inputs (and, with defaults, their initializers) that carry a module's d and b. */
export function graftInputNames(moduleName: string): { d: string; b: string } {
  return { d: `${moduleName}.vera_lambda_d`, b: `${moduleName}.vera_lambda_b` };
}

/** Parameters of {@link graftSpecOf}. */
export interface GraftSpecOfParams {
  /** The adapter whose projections and target modules the graph is grafted for (its vectors are not used). */
  adapter: VeraAdapter;
  /** @default false */
  batched?: boolean;
  /** @default "f32" */
  dtype?: "f32" | "f16";
  /** The modules actually grafted (a subset of the adapter's); @default all of the adapter's modules */
  modules?: GraftModule[];
}

/** The graft record for an adapter. */
export function graftSpecOf(params: GraftSpecOfParams): GraftSpec {
  const { adapter } = params;
  const modules = (
    params.modules ??
    adapter.modules.map((m) => ({
      name: m.name,
      inFeatures: m.inFeatures,
      outFeatures: m.outFeatures,
      layout: m.layout,
    }))
  )
    .map((m) => ({ name: m.name, inFeatures: m.inFeatures, outFeatures: m.outFeatures, layout: m.layout }))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const digest = storedProjectionsDigest(adapter);
  return {
    ...(digest !== undefined ? { storedProjections: { sha256: digest } } : {}),
    version: GRAFT_SPEC_VERSION,
    prng: { ...adapter.prng },
    rank: adapter.rank,
    maxIn: adapter.maxIn,
    maxOut: adapter.maxOut,
    projectionRounding: adapter.projectionRounding,
    batched: params.batched ?? false,
    dtype: params.dtype ?? "f32",
    modules,
  };
}

/** The record as stored in `metadata_props` (canonical JSON; the seed as a decimal string). */
export function encodeGraftSpec(spec: GraftSpec): string {
  return canonicalJson({ ...spec, prng: { ...spec.prng, seed: spec.prng.seed.toString() } });
}

/** Parse a stored record; a malformed one is `SERVE_NOT_GRAFTED`. */
export function parseGraftSpec(text: string, where = GRAFT_METADATA_KEY): GraftSpec {
  const bad = (why: string): VeraError =>
    new VeraError(ServeErrorCode.SERVE_NOT_GRAFTED, `${where}: malformed graft record (${why})`, { path: where });
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw bad("not JSON");
  }
  const o = v as Record<string, unknown>;
  if (typeof o !== "object" || o === null || Array.isArray(o)) throw bad("not an object");
  if (o.version !== GRAFT_SPEC_VERSION) throw bad(`version ${String(o.version)}, expected ${GRAFT_SPEC_VERSION}`);
  const prng = o.prng as Record<string, unknown> | undefined;
  if (!prng || prng.algorithm !== PRNG_TORCH_MT19937_KAIMING) throw bad("unknown PRNG");
  if (typeof prng.seed !== "string" || !/^-?\d{1,20}$/.test(prng.seed)) throw bad("seed");
  if (prng.arithmetic !== "fused" && prng.arithmetic !== "separate") throw bad("arithmetic");
  const int = (x: unknown): x is number => typeof x === "number" && Number.isSafeInteger(x) && x > 0;
  if (!int(o.rank) || !int(o.maxIn) || !int(o.maxOut)) throw bad("rank/maxIn/maxOut");
  if (!["none", "bf16", "fp16"].includes(o.projectionRounding as string)) throw bad("projectionRounding");
  if (typeof o.batched !== "boolean") throw bad("batched");
  if (o.dtype !== "f32" && o.dtype !== "f16") throw bad("dtype");
  if (!Array.isArray(o.modules)) throw bad("modules");
  const modules: GraftModule[] = [];
  for (const m of o.modules as Record<string, unknown>[]) {
    if (typeof m !== "object" || m === null || typeof m.name !== "string") throw bad("module name");
    if (!int(m.inFeatures) || !int(m.outFeatures)) throw bad(`module ${m.name} shape`);
    if (m.layout !== "linear" && m.layout !== "conv1d") throw bad(`module ${m.name} layout`);
    modules.push({ name: m.name, inFeatures: m.inFeatures, outFeatures: m.outFeatures, layout: m.layout });
  }
  const carried = o.carried === undefined ? undefined : parseCarried(o.carried, bad);
  const stored = o.storedProjections as Record<string, unknown> | undefined;
  if (
    stored !== undefined &&
    (typeof stored !== "object" || stored === null || !/^[0-9a-f]{64}$/.test(String(stored.sha256)))
  )
    throw bad("storedProjections");
  return {
    ...(carried ? { carried } : {}),
    ...(stored ? { storedProjections: { sha256: stored.sha256 as string } } : {}),
    version: GRAFT_SPEC_VERSION,
    prng: { algorithm: PRNG_TORCH_MT19937_KAIMING, seed: BigInt(prng.seed), arithmetic: prng.arithmetic },
    rank: o.rank,
    maxIn: o.maxIn,
    maxOut: o.maxOut,
    projectionRounding: o.projectionRounding as ProjectionRounding,
    batched: o.batched,
    dtype: o.dtype,
    modules,
  };
}

function parseCarried(v: unknown, bad: (why: string) => VeraError): GraftCarried[] {
  if (!Array.isArray(v)) throw bad("carried");
  return v.map((c: Record<string, unknown>) => {
    if (typeof c !== "object" || c === null) throw bad("carried entry");
    const { param, kind, input, use, dims, transposed } = c;
    if (typeof param !== "string" || typeof input !== "string" || typeof use !== "string") throw bad("carried names");
    if (kind !== "modules_to_save" && kind !== "bias") throw bad(`carried ${param} kind`);
    if (!Array.isArray(dims) || !dims.every((d) => Number.isSafeInteger(d) && (d as number) > 0))
      throw bad(`carried ${param} dims`);
    if (typeof transposed !== "boolean" || (transposed && dims.length !== 2)) throw bad(`carried ${param} transposed`);
    return { param, kind, input, use, dims: dims as number[], transposed };
  });
}

/**
 * Stored projections: a graph grafted with regenerated projections takes only adapters that regenerate theirs, and a
 * graph that holds stored projections only adapters whose stored projections are the same (one pair of matrices per
 * graph: adapters with other projections, e.g. PVeRA adapters of other trainings, need their own graft).
 */
function checkStoredProjections(adapter: VeraAdapter, spec: GraftSpec, issues: Issue[]): void {
  const want = spec.storedProjections?.sha256;
  const have = storedProjectionsDigest(adapter);
  if (want === have) return;
  const message =
    want === undefined
      ? "the adapter keeps stored projections (not regenerable from its seed) and the graph regenerates its " +
        "projections from the seed: graft the model for this adapter"
      : have === undefined
        ? "the graph holds stored projections (not regenerable from a seed, e.g. PVeRA's) and the adapter " +
          "regenerates its own from the seed: its vectors were trained with other matrices"
        : "the adapter's stored projections differ from the ones the graph holds: a graph serves one pair of " +
          "projections, so adapters with other projections need their own graft";
  issues.push({
    code: ServeErrorCode.SERVE_SPEC_MISMATCH,
    message,
    path: "storedProjections",
    expected: want === undefined ? "projections regenerated from the seed" : `stored projections sha256 ${want}`,
    received: have === undefined ? "projections regenerated from the seed" : `stored projections sha256 ${have}`,
  });
}

/** What {@link checkAdapterAgainstGraft} found besides refusals. */
export interface GraftCheck {
  /** Grafted modules the adapter has no vectors for: they are fed zeros (no change to those layers). */
  missing: string[];
}

/**
 * Check that an adapter's vectors mean the same thing in a grafted graph as in the adapter: same PRNG (algorithm, seed,
 * arithmetic), rank, maxIn/maxOut, projection rounding, the same stored projections where the graph holds stored ones
 * (none where it regenerates them), and every adapter module grafted with the same shape.
 * Throws `SERVE_SPEC_MISMATCH` / `SERVE_MODULE_NOT_GRAFTED` listing every problem; returns the grafted modules the
 * adapter leaves out.
 */
export function checkAdapterAgainstGraft(params: { adapter: VeraAdapter; spec: GraftSpec }): GraftCheck {
  const { adapter, spec } = params;
  const issues: Issue[] = [];
  const same = (path: string, expected: unknown, received: unknown): void => {
    if (expected !== received)
      issues.push({
        code: ServeErrorCode.SERVE_SPEC_MISMATCH,
        message: `${path}: the graph was grafted for ${String(expected)}, the adapter has ${String(received)}`,
        path,
        expected: typeof expected === "bigint" ? expected.toString() : expected,
        received: typeof received === "bigint" ? received.toString() : received,
      });
  };
  same("prng.algorithm", spec.prng.algorithm, adapter.prng.algorithm);
  same("prng.seed", spec.prng.seed, adapter.prng.seed);
  same("prng.arithmetic", spec.prng.arithmetic, adapter.prng.arithmetic);
  same("rank", spec.rank, adapter.rank);
  same("maxIn", spec.maxIn, adapter.maxIn);
  same("maxOut", spec.maxOut, adapter.maxOut);
  same("projectionRounding", spec.projectionRounding, adapter.projectionRounding);
  checkStoredProjections(adapter, spec, issues);
  const grafted = new Map(spec.modules.map((m) => [m.name, m]));
  for (const m of adapter.modules) {
    const g = grafted.get(m.name);
    if (!g) {
      issues.push({
        code: ServeErrorCode.SERVE_MODULE_NOT_GRAFTED,
        message: `module ${m.name} is not grafted in the model: its vectors would be ignored`,
        path: m.name,
      });
      continue;
    }
    same(`${m.name}.inFeatures`, g.inFeatures, m.inFeatures);
    same(`${m.name}.outFeatures`, g.outFeatures, m.outFeatures);
  }
  if (issues.length > 0) throw VeraError.fromIssues(issues);
  const have = new Set(adapter.modules.map((m) => m.name));
  return { missing: spec.modules.filter((m) => !have.has(m.name)).map((m) => m.name) };
}

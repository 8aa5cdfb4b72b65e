import { VeraError, type Issue } from "../errors.js";
import type { ExtraTensor, VeraAdapter } from "../format/types.js";
import { carriedTensorTargets } from "../peft/carried-tensors.js";
import { decodeFloat } from "../peft/internal.js";
import { ServeErrorCode } from "./error-codes.js";
import { checkAdapterAgainstGraft, graftInputNames, type GraftCarried, type GraftSpec } from "./graft-spec.js";

/**
 * One input tensor, in the shape of onnxruntime's tensor constructor arguments: wrap it as
 * `new ort.Tensor(t.type, t.data, t.dims)` (onnxruntime-node and onnxruntime-web alike).
 */
export interface FeedTensor {
  type: "float32";
  dims: number[];
  data: Float32Array;
}

/** Parameters of {@link adapterFeeds}: `adapter` for one adapter, or `adapters` (one per sequence) for a batched graph. */
export interface AdapterFeedsParams {
  /** The graft record of the model ({@link readGraftSpec}). */
  spec: GraftSpec;
  /** One adapter for the whole run; `null` for none (the base model). In a batched graph it applies to every row. */
  adapter?: VeraAdapter | null;
  /** A batched graph only: one entry per sequence of the batch, `null` for a sequence served without an adapter. */
  adapters?: ReadonlyArray<VeraAdapter | null>;
  /**
   * The session's input names (`session.inputNames`): when given, the feeds are checked against them with
   * {@link checkFeeds} (a feed the session does not take, an adapter input it takes that is not fed).
   * @default not checked
   */
  sessionInputs?: readonly string[];
}

/** What {@link adapterFeeds} returns. */
export interface AdapterFeeds {
  /**
   * Input name -> tensor, for every grafted module (`<module>.vera_lambda_d`, `<module>.vera_lambda_b`) and every
   * carried tensor (`<param>.vera_carried`, `<param>.vera_carried_use`).
   */
  feeds: Record<string, FeedTensor>;
  /** Rows of the batch (1 for `adapter`). */
  batch: number;
  /**
   * Per adapter (by position; 0 for `adapter`), the grafted modules it has no vectors for (fed zeros: no change to
   * that layer) and the carried tensors it lacks (the base model's tensor is used for its row).
   */
  missing: Array<{ index: number; modules: string[]; carried?: string[] }>;
}

/** An adapter's carried tensors by base parameter; those the graph does not serve are issues (never dropped). */
function carriedOf(a: VeraAdapter, spec: GraftSpec, where: string, issues: Issue[]): Map<string, ExtraTensor> {
  const served = new Set((spec.carried ?? []).map((c) => c.param));
  const out = new Map<string, ExtraTensor>();
  for (const t of carriedTensorTargets({ adapter: a })) {
    if (t.kind !== "other" && served.has(t.param)) out.set(t.param, t.tensor);
    else
      issues.push({
        code: ServeErrorCode.SERVE_MODULE_NOT_GRAFTED,
        message: `${where}carried tensor ${t.tensor.name} (${t.kind}) is not served by the graph: graft with an adapter that carries it, or the run would compute a different function`,
        path: `${where}${t.tensor.name}`,
      });
  }
  return out;
}

/** One row of a carried tensor's feed, in the graph's stored layout. */
function carriedRow(c: GraftCarried, t: ExtraTensor, where: string): Float32Array {
  const v = decodeFloat(t.data, t.dtype);
  const n = c.dims.reduce((x, y) => x * y, 1);
  const shapeOk = c.transposed
    ? t.shape.length === 2 && t.shape[0] === c.dims[1] && t.shape[1] === c.dims[0]
    : t.shape.length === c.dims.length && t.shape.every((d, i) => d === c.dims[i]);
  if (!shapeOk || v.length !== n)
    throw new VeraError(
      ServeErrorCode.SERVE_SPEC_MISMATCH,
      `${where}${t.name}: shape [${t.shape.join(", ")}] does not fit the graph's ${c.param} [${c.dims.join(", ")}]${c.transposed ? " (stored transposed)" : ""}`,
      { path: `${where}${t.name}`, expected: c.dims, received: t.shape },
    );
  if (!c.transposed) return v;
  const [rows, cols] = [t.shape[0]!, t.shape[1]!];
  const out = new Float32Array(n);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = v[i * cols + j]!;
  return out;
}

/** Checks every adapter; the module tables (null for a base row) and what each lacks. */
function checkAdapters(
  spec: GraftSpec,
  list: ReadonlyArray<VeraAdapter | null>,
): {
  byName: Array<Map<string, VeraAdapter["modules"][number]> | null>;
  carried: Array<Map<string, ExtraTensor> | null>;
  missing: AdapterFeeds["missing"];
} {
  const missing: AdapterFeeds["missing"] = [];
  const carried: Array<Map<string, ExtraTensor> | null> = [];
  const byName = list.map((a, index) => {
    if (a === null) {
      carried.push(null);
      return null;
    }
    const where = list.length > 1 ? `adapters[${index}].` : "";
    try {
      const check = checkAdapterAgainstGraft({ adapter: a, spec });
      const issues: Issue[] = [];
      const c = carriedOf(a, spec, where, issues);
      if (issues.length > 0) throw VeraError.fromIssues(issues);
      carried.push(c);
      const lacks = (spec.carried ?? []).map((x) => x.param).filter((p) => !c.has(p));
      if (check.missing.length > 0 || lacks.length > 0)
        missing.push({ index, modules: check.missing, ...(lacks.length > 0 ? { carried: lacks } : {}) });
    } catch (e) {
      if (e instanceof VeraError && list.length > 1)
        throw VeraError.fromIssues(
          e.issues.map((i) => ({ ...i, path: i.path?.startsWith(where) ? i.path : `${where}${i.path ?? ""}` })),
          `adapters[${index}]: ${e.message}`,
        );
      throw e;
    }
    return new Map(a.modules.map((m) => [m.name, m]));
  });
  return { byName, carried, missing };
}

/**
 * The inputs that make a grafted model compute with an adapter (or a different adapter per sequence in a batched
 * graph). Every adapter is checked against the graft record first, so vectors are never fed to projections they were
 * not trained with. Grafted modules an adapter lacks get zeros (no change to that layer) and are reported; carried
 * tensors (heads) it lacks take the base model's (reported); carried tensors the graph does not serve are refused.
 *
 * @throws VeraError `SERVE_SPEC_MISMATCH` / `SERVE_MODULE_NOT_GRAFTED` (from `checkAdapterAgainstGraft`, with the
 *   adapter's position in `path`; also a carried tensor the graph does not serve), `SERVE_FEEDS` (a list for an
 *   unbatched graph, an empty list, both or neither given, and {@link checkFeeds}' refusals with `sessionInputs`).
 */
export function adapterFeeds(params: AdapterFeedsParams): AdapterFeeds {
  const { spec } = params;
  const hasOne = params.adapter !== undefined;
  const hasList = params.adapters !== undefined;
  if (hasOne === hasList)
    throw new VeraError(
      ServeErrorCode.SERVE_FEEDS,
      "give either `adapter` (one adapter or null) or `adapters` (a list)",
    );
  if (hasList && !spec.batched)
    throw new VeraError(
      ServeErrorCode.SERVE_FEEDS,
      "the model was grafted without --batched: it takes one adapter per run, not a list",
      { expected: "adapter", received: "adapters" },
    );
  const list: ReadonlyArray<VeraAdapter | null> = hasList ? params.adapters! : [params.adapter ?? null];
  if (list.length === 0)
    throw new VeraError(ServeErrorCode.SERVE_FEEDS, "`adapters` is empty: give one entry per sequence", {
      expected: ">= 1 entry",
      received: 0,
    });
  const { byName, carried, missing } = checkAdapters(spec, list);
  const rows = list.length;
  const r = spec.rank;
  const feeds: Record<string, FeedTensor> = {};
  for (const gm of spec.modules) {
    const { d, b } = graftInputNames(gm.name);
    const dData = new Float32Array(rows * r);
    const bData = new Float32Array(rows * gm.outFeatures);
    byName.forEach((mods, row) => {
      const m = mods?.get(gm.name);
      if (!m) return; // zeros: the branch adds nothing for this row
      dData.set(m.lambdaD, row * r);
      bData.set(m.lambdaB, row * gm.outFeatures);
    });
    feeds[d] = { type: "float32", dims: spec.batched ? [rows, r] : [r], data: dData };
    feeds[b] = { type: "float32", dims: spec.batched ? [rows, gm.outFeatures] : [gm.outFeatures], data: bData };
  }
  for (const c of spec.carried ?? []) {
    const n = c.dims.reduce((x, y) => x * y, 1);
    const value = new Float32Array(rows * n);
    const use = new Float32Array(rows);
    carried.forEach((m, row) => {
      const t = m?.get(c.param);
      if (!t) return; // the base model's tensor for this row
      value.set(carriedRow(c, t, rows > 1 ? `adapters[${row}].` : ""), row * n);
      use[row] = 1;
    });
    feeds[c.input] = { type: "float32", dims: spec.batched ? [rows, ...c.dims] : [...c.dims], data: value };
    feeds[c.use] = { type: "float32", dims: [rows], data: use };
  }
  if (params.sessionInputs) checkFeeds({ spec, feeds, sessionInputs: params.sessionInputs });
  return { feeds, batch: rows, missing };
}

/** Parameters of {@link baseFeeds}. */
export interface BaseFeedsParams {
  /** The graft record of the model ({@link readGraftSpec}). */
  spec: GraftSpec;
  /** Rows of the batch (a batched graph only). @default 1 */
  batch?: number;
  /** As in {@link adapterFeeds}. */
  sessionInputs?: readonly string[];
}

/**
 * The feeds that make a grafted model compute the base model: zero vectors for every grafted module (the branch adds
 * nothing) and `use = 0` for every carried tensor (the base's own tensor). Same as `adapterFeeds({ adapter: null })`,
 * or `adapters: [null, ...]` for `batch` rows.
 */
export function baseFeeds(params: BaseFeedsParams): AdapterFeeds {
  const { spec } = params;
  const batch = params.batch ?? 1;
  if (!Number.isSafeInteger(batch) || batch < 1 || (batch > 1 && !spec.batched))
    throw new VeraError(
      ServeErrorCode.SERVE_FEEDS,
      spec.batched
        ? `batch must be a positive integer, got ${batch}`
        : "the model was grafted without --batched: batch must be 1",
      { expected: spec.batched ? ">= 1" : 1, received: batch },
    );
  const rest = params.sessionInputs ? { sessionInputs: params.sessionInputs } : {};
  return spec.batched
    ? adapterFeeds({ spec, adapters: new Array<null>(batch).fill(null), ...rest })
    : adapterFeeds({ spec, adapter: null, ...rest });
}

/** Parameters of {@link checkFeeds}. */
export interface CheckFeedsParams {
  /** The graft record of the model. */
  spec: GraftSpec;
  /** The feeds about to be given to the session (tensors with `dims`; `ort.Tensor` objects qualify). */
  feeds: Readonly<Record<string, { dims: readonly number[] }>>;
  /** The session's input names (`session.inputNames`). @default not checked against a session */
  sessionInputs?: readonly string[];
}

/** The shape each graft input must have (batch: -1 = any, the same for every input). */
function expectedShapes(spec: GraftSpec): Map<string, number[]> {
  const out = new Map<string, number[]>();
  const lead = spec.batched ? [-1] : [];
  for (const m of spec.modules) {
    const { d, b } = graftInputNames(m.name);
    out.set(d, [...lead, spec.rank]);
    out.set(b, [...lead, m.outFeatures]);
  }
  for (const c of spec.carried ?? []) {
    out.set(c.input, [...lead, ...c.dims]);
    out.set(c.use, spec.batched ? lead : [1]);
  }
  return out;
}

/**
 * Check feeds before a run of a grafted model, so that nothing can silently run the base model: every adapter input
 * the graft made is fed, with its shape (one batch size for all rows); with `sessionInputs`, every feed is an input
 * the session takes (onnxruntime-node/-web drop feeds for inputs that have a same-name initializer, which a graft made
 * with `defaults` has) and every adapter input the session takes is fed.
 *
 * @throws VeraError `SERVE_FEEDS` listing every problem (path: the input name).
 */
export function checkFeeds(params: CheckFeedsParams): void {
  const { spec, feeds } = params;
  const issues: Issue[] = [];
  const bad = (path: string, message: string, expected?: unknown, received?: unknown): void => {
    issues.push({
      code: ServeErrorCode.SERVE_FEEDS,
      message,
      path,
      ...(expected !== undefined ? { expected } : {}),
      ...(received !== undefined ? { received } : {}),
    });
  };
  let batch: number | undefined;
  for (const [name, want] of expectedShapes(spec)) {
    const t = feeds[name];
    if (!t) {
      bad(name, `adapter input ${name} is not fed: the run would not compute the adapter (baseFeeds gives a base row)`);
      continue;
    }
    const dims = [...t.dims];
    const ok = dims.length === want.length && want.every((d, i) => d === -1 || d === dims[i]);
    if (!ok)
      bad(
        name,
        `${name}: shape [${dims.join(", ")}], the graph takes [${want.map((d) => (d === -1 ? "batch" : d)).join(", ")}]`,
        want,
        dims,
      );
    else if (spec.batched) {
      if (batch === undefined) batch = dims[0];
      else if (dims[0] !== batch)
        bad(name, `${name}: batch ${dims[0]}, other adapter inputs have ${batch}`, batch, dims[0]);
    }
  }
  if (params.sessionInputs) {
    const accepted = new Set(params.sessionInputs);
    const dropped = Object.keys(feeds).filter((k) => !accepted.has(k));
    if (dropped.length > 0)
      bad(
        dropped[0]!,
        `the session does not take ${dropped.length} of the fed inputs (e.g. ${JSON.stringify(dropped[0])}): onnxruntime-node/-web ignore feeds for inputs that have a default initializer (a graft made with --defaults), or the model is another one; graft without --defaults`,
        "inputs the session takes",
        dropped,
      );
  }
  if (issues.length > 0) throw VeraError.fromIssues(issues);
}

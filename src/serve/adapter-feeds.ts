import { VeraError } from "../errors.js";
import type { VeraAdapter } from "../format/types.js";
import { ServeErrorCode } from "./error-codes.js";
import { checkAdapterAgainstGraft, graftInputNames, type GraftSpec } from "./graft-spec.js";

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
   * The session's input names (`session.inputNames`): when given, every feed must be among them. onnxruntime-node and
   * onnxruntime-web list only inputs without a default initializer and silently drop other feeds, so a graph grafted
   * with defaults would run as the base model; this turns that into an error.
   * @default not checked
   */
  sessionInputs?: readonly string[];
}

/** What {@link adapterFeeds} returns. */
export interface AdapterFeeds {
  /** Input name -> tensor, for every grafted module (`<module>.vera_lambda_d`, `<module>.vera_lambda_b`). */
  feeds: Record<string, FeedTensor>;
  /** Rows of the batch (1 for `adapter`). */
  batch: number;
  /** Per adapter (by position; 0 for `adapter`), the grafted modules it has no vectors for: they are fed zeros. */
  missing: Array<{ index: number; modules: string[] }>;
}

/**
 * The inputs that make a grafted model compute with an adapter (or a different adapter per sequence in a batched
 * graph). Every adapter is checked against the graft record first, so vectors are never fed to projections they were
 * not trained with. Grafted modules an adapter lacks get zeros (no change to that layer) and are reported.
 *
 * @throws VeraError `SERVE_SPEC_MISMATCH` / `SERVE_MODULE_NOT_GRAFTED` (from `checkAdapterAgainstGraft`, with the
 *   adapter's position in `path`), `SERVE_FEEDS` (a list for an unbatched graph, an empty list, both or neither given,
 *   inputs the session would drop).
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
  const missing: AdapterFeeds["missing"] = [];
  const byName: Array<Map<string, VeraAdapter["modules"][number]> | null> = list.map((a, index) => {
    if (a === null) return null;
    try {
      const check = checkAdapterAgainstGraft({ adapter: a, spec });
      if (check.missing.length > 0) missing.push({ index, modules: check.missing });
    } catch (e) {
      if (e instanceof VeraError && list.length > 1)
        throw VeraError.fromIssues(
          e.issues.map((i) => ({ ...i, path: `adapters[${index}].${i.path ?? ""}` })),
          `adapters[${index}]: ${e.message}`,
        );
      throw e;
    }
    return new Map(a.modules.map((m) => [m.name, m]));
  });
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
  if (params.sessionInputs) {
    const accepted = new Set(params.sessionInputs);
    const dropped = Object.keys(feeds).filter((k) => !accepted.has(k));
    if (dropped.length > 0)
      throw new VeraError(
        ServeErrorCode.SERVE_FEEDS,
        `the session does not take ${dropped.length} of the adapter inputs (e.g. ${JSON.stringify(dropped[0])}): its runtime ignores inputs that have a default initializer (onnxruntime-node/-web); graft the model without defaults (vera graft --no-defaults)`,
        { path: dropped[0]!, expected: "inputs without default initializers", received: "inputs with defaults" },
      );
  }
  return { feeds, batch: rows, missing };
}

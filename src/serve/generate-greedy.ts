import { VeraError } from "../errors.js";
import type { VeraAdapter } from "../format/types.js";
import { adapterFeeds, checkFeeds } from "./adapter-feeds.js";
import { ServeErrorCode } from "./error-codes.js";
import type { GraftSpec } from "./graft-spec.js";

/** A tensor given to {@link GreedyGenerateParams.run}: wrap it as `new ort.Tensor(t.type, t.data, t.dims)`. */
export type GenerateTensor =
  | { type: "float32"; dims: number[]; data: Float32Array }
  | { type: "int64"; dims: number[]; data: BigInt64Array }
  | { type: "bool"; dims: number[]; data: Uint8Array };

/** An output of a run: `ort.Tensor` objects qualify. */
export interface GenerateOutput {
  dims: readonly number[];
  data: unknown;
}

/** Parameters of {@link greedyGenerate}. */
export interface GreedyGenerateParams {
  /** Runs the grafted decoder once (e.g. wraps the feeds as `ort.Tensor`s and calls `session.run`). */
  run: (feeds: Record<string, GenerateTensor>) => Promise<Record<string, GenerateOutput>>;
  /**
   * The model's graph inputs with their shapes (`readOnnxModelInputs(...).inputs`): the past keys/values inputs
   * (`past_key_values.<i>.key` / `.value`, as Optimum, transformers.js and onnxruntime-genai's builder name them,
   * shaped [batch, kv_heads, past, head_dim]), `attention_mask`, `position_ids`, and a merged decoder's
   * `use_cache_branch` are found by name.
   */
  inputs: ReadonlyArray<{ name: string; dims: ReadonlyArray<number | string | null> | null }>;
  /** The graft record of the model. */
  spec: GraftSpec;
  /** Token ids, one prompt per row, all of one length. */
  prompts: number[][];
  /**
   * One adapter (or null: the base model) per prompt; a graph grafted without `batched` takes one entry for all rows.
   */
  adapters: ReadonlyArray<VeraAdapter | null>;
  /** Tokens to generate per row. */
  newTokens: number;
}

const PAST = /^past_key_values\.(\d+)\.(key|value)$/;

/** The cache layout of a decoder: its past inputs with kv heads and head size, and the optional inputs it takes. */
function cacheLayout(inputs: GreedyGenerateParams["inputs"]): {
  past: Array<{ name: string; present: string; heads: number; headDim: number }>;
  mask: boolean;
  positions: boolean;
  branch: boolean;
} {
  const past: Array<{ name: string; present: string; heads: number; headDim: number }> = [];
  for (const i of inputs) {
    const m = PAST.exec(i.name);
    if (!m) continue;
    const heads = i.dims?.[1];
    const headDim = i.dims?.[3];
    if (i.dims?.length !== 4 || typeof heads !== "number" || typeof headDim !== "number")
      throw new VeraError(
        ServeErrorCode.SERVE_FEEDS,
        `${i.name}: expected a fixed [batch, kv_heads, past, head_dim] shape, found [${(i.dims ?? []).join(", ")}]`,
        { path: i.name, expected: "[batch, heads, past, head_dim]", received: i.dims },
      );
    past.push({ name: i.name, present: `present.${m[1]}.${m[2]}`, heads, headDim });
  }
  if (past.length === 0)
    throw new VeraError(
      ServeErrorCode.SERVE_FEEDS,
      "the model has no past_key_values.<i>.key/value inputs: it is not a decoder with a KV cache",
      { expected: "past_key_values.0.key", received: inputs.map((i) => i.name) },
    );
  const names = new Set(inputs.map((i) => i.name));
  return {
    past,
    mask: names.has("attention_mask"),
    positions: names.has("position_ids"),
    branch: names.has("use_cache_branch"),
  };
}

/** Row-wise argmax of the last position's logits [batch, seq, vocab]. */
function lastArgmax(out: GenerateOutput | undefined, rows: number): number[] {
  const data = out?.data as Float32Array | undefined;
  if (!out || !(data instanceof Float32Array) || out.dims.length !== 3 || out.dims[0] !== rows)
    throw new VeraError(ServeErrorCode.SERVE_FEEDS, "the run returned no float32 logits [batch, seq, vocab]", {
      path: "logits",
    });
  const [, seq, vocab] = out.dims as [number, number, number];
  const next: number[] = [];
  for (let r = 0; r < rows; r++) {
    const base = (r * seq + seq - 1) * vocab;
    let best = 0;
    for (let v = 1; v < vocab; v++) if (data[base + v]! > data[base + best]!) best = v;
    next.push(best);
  }
  return next;
}

/**
 * Greedy decoding with a KV cache on a grafted decoder, one adapter per row (a `batched` graft) or one adapter for all
 * rows: the first run takes the prompts and empty past tensors, each later run the last token and the previous run's
 * `present.<i>.key/value` outputs. The adapter feeds are made once ({@link adapterFeeds}) and checked
 * ({@link checkFeeds}) before the first run. Runtime-agnostic: `run` does the inference.
 *
 * @throws VeraError `SERVE_FEEDS` (prompts of different lengths, no cache inputs, outputs missing), and
 *   {@link adapterFeeds}' refusals.
 */
export async function greedyGenerate(params: GreedyGenerateParams): Promise<{ tokens: number[][] }> {
  const { spec, prompts } = params;
  const rows = prompts.length;
  const len = prompts[0]?.length ?? 0;
  if (rows === 0 || len === 0 || prompts.some((p) => p.length !== len))
    throw new VeraError(ServeErrorCode.SERVE_FEEDS, "give one or more prompts, all of one (non-zero) length", {
      path: "prompts",
      received: prompts.map((p) => p.length),
    });
  const layout = cacheLayout(params.inputs);
  const vera = spec.batched
    ? adapterFeeds({
        spec,
        adapters: params.adapters.length === 1 ? new Array(rows).fill(params.adapters[0]!) : params.adapters,
      })
    : params.adapters.length === 1
      ? adapterFeeds({ spec, adapter: params.adapters[0]! })
      : (() => {
          throw new VeraError(
            ServeErrorCode.SERVE_FEEDS,
            "the model was grafted without --batched: give one adapter for every row",
            { path: "adapters", expected: 1, received: params.adapters.length },
          );
        })();
  if (vera.batch !== rows && spec.batched)
    throw new VeraError(ServeErrorCode.SERVE_FEEDS, `${vera.batch} adapters for ${rows} prompts`, {
      path: "adapters",
      expected: rows,
      received: vera.batch,
    });
  checkFeeds({ spec, feeds: vera.feeds });
  let past: Record<string, GenerateTensor> = {};
  for (const p of layout.past)
    past[p.name] = { type: "float32", dims: [rows, p.heads, 0, p.headDim], data: new Float32Array(0) };
  const tokens: number[][] = prompts.map(() => []);
  let cur = prompts;
  let total = 0;
  for (let step = 0; step < params.newTokens; step++) {
    const seq = cur[0]!.length;
    total += seq;
    const feeds: Record<string, GenerateTensor> = { ...vera.feeds, ...past };
    feeds["input_ids"] = { type: "int64", dims: [rows, seq], data: BigInt64Array.from(cur.flat(), (x) => BigInt(x)) };
    if (layout.mask)
      feeds["attention_mask"] = { type: "int64", dims: [rows, total], data: new BigInt64Array(rows * total).fill(1n) };
    if (layout.positions)
      feeds["position_ids"] = {
        type: "int64",
        dims: [rows, seq],
        data: BigInt64Array.from({ length: rows * seq }, (_, i) => BigInt(total - seq + (i % seq))),
      };
    if (layout.branch) feeds["use_cache_branch"] = { type: "bool", dims: [1], data: Uint8Array.of(step > 0 ? 1 : 0) };
    const out = await params.run(feeds);
    const next = lastArgmax(out["logits"], rows);
    next.forEach((t, r) => tokens[r]!.push(t));
    past = {};
    for (const p of layout.past) {
      const o = out[p.present];
      if (!o || !(o.data instanceof Float32Array))
        throw new VeraError(ServeErrorCode.SERVE_FEEDS, `the run returned no float32 ${p.present}`, {
          path: p.present,
        });
      past[p.name] = { type: "float32", dims: [...o.dims], data: o.data };
    }
    cur = next.map((t) => [t]);
  }
  return { tokens };
}

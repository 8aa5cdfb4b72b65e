/**
 * A GGUF model file as a merge container: the file (each part of a split GGUF) is one data file
 * whose merged weights are patched at their own offsets, so the header, every metadata value, the
 * tensor table, the alignment padding and every untouched tensor are copied byte for byte. ggml
 * stores a Linear weight with ne = [in, out], row-major: the (out, in) layout. llama.cpp permutes the rows of
 * llama-family attn_q / attn_k; a merged weight's bytes stay in that order and the adapter's rows
 * (B and lambda_b) are permuted instead (`rowOrder`), so the delta lands permuted as the weight is.
 * A carried tensor's values, in the checkpoint's order, are put in the stored order by `prepare`.
 */
import { VeraError } from "../../errors.js";
import type { VeraModule } from "../../format/types.js";
import { ggufTensorRanges } from "../../gguf/locate-gguf-weights.js";
import { ggufWeightLocator, type GgufWeightLocator } from "../../gguf/gguf-weight-locator.js";
import type { CarriedTensorTarget } from "../../peft/carried-tensors.js";
import type { RowOrder } from "../../compute/merge-tasks.js";
import { qkRowOrder } from "../../gguf/permute-qk.js";
import { carriedReportRows } from "./carried-report.js";
import { carriedValues, refuseCarried, type CarriedRefusal } from "./carried-values.js";
import { ggufTensorName, type GgufNameMapping } from "../../gguf/tensor-names.js";
import type { GgufFile } from "../../gguf/types.js";
import { weightDtypeSize } from "../../dtypes.js";
import { reorderRows } from "../../gguf/qkv-row-order.js";
import type { ContainerDataFile, ContainerWeight, MergeContainer } from "./container.js";
import { MergeErrorCode } from "../error-codes.js";
import type { MergeReportCarried, MergeReportModule } from "./merge-report.js";

/** A weight of a GGUF model. */
export interface GgufWeight extends ContainerWeight {
  /** llama.cpp's q/k row permutation applies with this many heads (llama attn_q / attn_k). */
  permuteHeads?: number;
  /** A fused attn_qkv in llama.cpp's row order: GGUF row i is the checkpoint's row `qkvRowOrder[i]`. */
  qkvRowOrder?: Uint32Array;
  /**
   * Set on merged weights whose rows llama.cpp reorders (q/k `permuteHeads`, a fused attn_qkv's `qkvRowOrder`): the
   * adapter's rows go in the stored order, the weight's bytes are not moved.
   */
  rowOrder?: RowOrder;
  matchedBy: "exact" | "mapping";
  /** File name of the file (the split part) holding the weight. */
  part: string;
}

/** A GGUF model ready to merge. */
export interface GgufContainer extends MergeContainer<GgufWeight> {
  /** general.architecture. */
  readonly architecture: string;
  /** The report's rows, by module path. */
  reportModules(): MergeReportModule[];
  /** The report's rows of replaced tensors. */
  reportCarried(): MergeReportCarried[];
}

/** One part of a split GGUF. */
export interface GgufContainerPart {
  /** The part's header (readGguf). */
  file: GgufFile;
  /** Its real path. */
  path: string;
  /** Its file name, for messages and reports. @default the real path's */
  name?: string;
  /** File name of its copy. @default `name` */
  outputName?: string;
}

/** Parameters of {@link ggufContainer}. */
export interface GgufContainerParams {
  /** The model's header (readGguf); for a split GGUF, the first part's (it holds the metadata). */
  file: GgufFile;
  /** The file's real path (the first part's). */
  path: string;
  /**
   * Every part of a split GGUF, in order (the first one is `file` at `path`): each is a data file of its
   * own, written under its `outputName`. @default the single file
   */
  parts?: readonly GgufContainerPart[];
  /** The adapter's modules. */
  modules: readonly VeraModule[];
  /** Module path -> llama.cpp tensor name, for architectures without a built-in table. @default undefined */
  mapping?: GgufNameMapping;
  /** File name of the output copy of a single file (a split GGUF's parts have their own). @default the input's */
  outputName?: string;
  /** Tensors the adapter carries that replace the model's (`carriedTensorTargets`). @default none */
  carried?: readonly CarriedTensorTarget[];
}

/** The key the single data file goes by (a split GGUF's parts go by their file names). */
const KEY = "gguf";

/**
 * The GGUF tensors the adapter's carried tensors replace (llama.cpp names; `locateGgufParameter`).
 *
 * @throws VeraError `MERGE_CARRIED_TENSOR` naming every tensor that cannot be placed.
 */
function carriedGgufWeights(
  params: GgufContainerParams,
  locator: GgufWeightLocator,
  merged: readonly GgufWeight[],
  keyOf: (part: number) => string,
  partName: (part: number) => string,
): GgufWeight[] {
  if (!params.carried?.length) return [];
  const used = new Set(merged.map((w) => w.name));
  const refusals: CarriedRefusal[] = [];
  const out: GgufWeight[] = [];
  for (const target of params.carried) {
    const loc =
      target.kind === "other"
        ? "not a modules_to_save parameter or a trainable bias: no merge knows where it belongs"
        : locator.parameter({ param: target.param, shape: target.tensor.shape });
    if (typeof loc !== "string" && used.has(loc.name)) {
      refusals.push({ target, reason: `${loc.name} also takes another change of this merge` });
      continue;
    }
    if (typeof loc === "string") {
      refusals.push({ target, reason: loc });
      continue;
    }
    used.add(loc.name);
    const shape = target.tensor.shape;
    out.push({
      name: loc.name,
      dtype: loc.dtype,
      layout: "out_in",
      inFeatures: shape.length === 2 ? shape[1]! : 1,
      outFeatures: shape[0] ?? 1,
      byteLength: loc.end - loc.start,
      storage: { kind: "data", file: keyOf(loc.part), offset: loc.start },
      modules: [],
      matchedBy: loc.matchedBy,
      part: partName(loc.part),
      ...(loc.permuteHeads !== undefined ? { permuteHeads: loc.permuteHeads } : {}),
      ...(loc.rowOrder !== undefined ? { qkvRowOrder: loc.rowOrder } : {}),
      carried: {
        values: carriedValues({ tensor: target.tensor, dtype: loc.dtype }),
        placement: { target, tensor: loc.name, dtype: loc.dtype, transposed: false, matchedBy: loc.matchedBy },
      },
    });
  }
  refuseCarried(refusals, params.path);
  return out;
}

/**
 * Locate every adapter module's weight in a GGUF model.
 *
 * @throws VeraError `GGUF_UNKNOWN_ARCHITECTURE` (give a mapping), `GGUF_MODULE_UNSUPPORTED` (no
 *   tensor, a tied `lm_head`), `GGUF_BASE_MISMATCH` (shape, head counts), `GGUF_QUANTIZED` (merge into
 *   the F16 GGUF, then quantize), `GGUF_DUPLICATE` (a tensor in two parts), `MERGE_WEIGHT_NOT_FOUND`
 *   (two modules on one tensor).
 */
export function ggufContainer(params: GgufContainerParams): GgufContainer {
  const { file, path } = params;
  const parts = (
    params.parts ?? [{ file, path, ...(params.outputName !== undefined ? { outputName: params.outputName } : {}) }]
  ).map((p) => {
    const name = p.name ?? p.path.split(/[\\/]/).pop()!;
    return { file: p.file, path: p.path, name, outputName: p.outputName ?? name };
  });
  const keyOf = (i: number): string => (params.parts === undefined ? KEY : parts[i]!.name);
  const locator = ggufWeightLocator({
    file,
    label: path,
    ...(params.parts !== undefined ? { parts: parts.map((p) => p.file) } : {}),
    ...(params.mapping ? { mapping: params.mapping } : {}),
  });
  const plan = locator.plan({ modules: params.modules });
  const byTensor = new Map<string, string>();
  const weights: GgufWeight[] = plan.weights.map((w): GgufWeight => {
    const other = byTensor.get(w.name);
    if (other !== undefined)
      throw new VeraError(
        MergeErrorCode.MERGE_WEIGHT_NOT_FOUND,
        `${path}: adapter modules ${JSON.stringify(other)} and ${JSON.stringify(w.module)} both map to tensor ${JSON.stringify(w.name)}`,
        { path: w.name, expected: "one module per tensor", received: [other, w.module] },
      );
    byTensor.set(w.name, w.module);
    const [inFeatures, outFeatures] = w.ne as [number, number];
    const mapped =
      params.mapping !== undefined &&
      ggufTensorName({ architecture: "", module: w.module, mapping: params.mapping }) !== undefined;
    return {
      name: w.name,
      dtype: w.dtype,
      layout: "out_in",
      inFeatures,
      outFeatures,
      byteLength: w.end - w.start,
      storage: { kind: "data", file: keyOf(w.part), offset: w.start },
      modules: [{ module: w.module, inFeatures, outFeatures, outStart: 0, outEnd: outFeatures }],
      matchedBy: mapped ? "mapping" : "exact",
      part: parts[w.part]!.name,
      ...(w.permuteHeads !== undefined ? { permuteHeads: w.permuteHeads } : {}),
      ...(w.rowOrder !== undefined ? { qkvRowOrder: w.rowOrder } : {}),
    };
  });
  weights.push(...carriedGgufWeights(params, locator, weights, keyOf, (i) => parts[i]!.name));
  const dataFiles: ContainerDataFile[] = parts.map((p, i) => ({
    key: keyOf(i),
    parts: [p.outputName],
    path: p.path,
    size: p.file.size,
    label: p.name,
    tensors: ggufTensorRanges(p.file).map((r) => ({ tensor: r.name, start: r.start, end: r.end })),
  }));
  // llama.cpp's stored row order of a reordered weight (q/k permuted by heads, a fused attn_qkv regrouped): GGUF row
  // i is the checkpoint's row order[i]. A merged weight's bytes stay as stored and the adapter's rows go in that order
  // (one function per order, so its permuted B is kept); a carried tensor (checkpoint order) is reordered itself.
  const orders = new Map<string | Uint32Array, { order: Uint32Array; rows: RowOrder }>();
  const storedOrder = (w: GgufWeight): { order: Uint32Array; rows: RowOrder } | undefined => {
    const key = w.qkvRowOrder ?? (w.permuteHeads !== undefined ? `${w.permuteHeads}/${w.outFeatures}` : undefined);
    if (key === undefined) return undefined;
    let o = orders.get(key);
    if (!o) {
      const order = w.qkvRowOrder ?? qkRowOrder({ rows: w.outFeatures, nHead: w.permuteHeads! });
      o = { order, rows: (data, rowLength) => reorderRows(data, order, rowLength, true) };
      orders.set(key, o);
    }
    return o;
  };
  for (const w of weights) if (!w.carried && w.modules.length > 0) w.rowOrder = storedOrder(w)?.rows;
  const permute = (w: GgufWeight, values: Uint8Array, toGguf: boolean): void => {
    if (w.rowOrder !== undefined) return;
    const o = storedOrder(w);
    if (o) values.set(reorderRows(values, o.order, w.inFeatures * weightDtypeSize(w.dtype), toGguf));
  };
  return {
    kind: "gguf",
    architecture: plan.architecture,
    weights,
    headSize: 0,
    dataFiles,
    readInline: () => {
      throw new Error("internal: a GGUF model has no inline weights");
    },
    prepare: (w, values) => {
      permute(w, values, false);
      if (w.carried) values.set(w.carried.values);
    },
    merged: (w, values) => permute(w, values, true),
    headChanged: () => false,
    head: () => null,
    reportCarried: () => carriedReportRows(weights),
    reportModules: () =>
      weights
        .filter((w) => !w.carried)
        .map((w) => ({
          module: w.modules[0]!.module,
          initializer: w.name,
          matched: w.name,
          matchedBy: w.matchedBy,
          source:
            w.permuteHeads !== undefined
              ? `gguf (q/k rows permuted, ${w.permuteHeads} heads)`
              : w.qkvRowOrder !== undefined
                ? "gguf (fused q/k/v rows in llama.cpp's order)"
                : "gguf",
          layout: w.layout,
          dtype: w.dtype,
          storage: `${w.part}@${(w.storage as { offset: number }).offset}`,
          inFeatures: w.inFeatures,
          outFeatures: w.outFeatures,
          outRange: [0, w.outFeatures] as [number, number],
        }))
        .sort((a, b) => (a.module < b.module ? -1 : a.module > b.module ? 1 : 0)),
  };
}

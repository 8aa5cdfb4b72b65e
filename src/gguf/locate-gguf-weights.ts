import { VeraError } from "../errors.js";
import { GgufErrorCode } from "./error-codes.js";
import { ggmlTypeName, isFloatGgmlType } from "./ggml-types.js";
import { loraBaseFromGguf } from "./lora-base.js";
import { qkvRowOrder } from "./qkv-row-order.js";
import { ggufTensorName, isKnownGgufArchitecture, qkPermutationHeads, type GgufNameMapping } from "./tensor-names.js";
import type { GgufFile } from "./types.js";

/** One tensor of a GGUF file with where its bytes lie. */
export interface GgufTensorRange {
  name: string;
  /** ggml type name: "F32", "F16", "BF16", "Q4_K", ... */
  dtype: string;
  /** ggml dims, ne[0] first. */
  ne: number[];
  /** Absolute byte range [start, end) of the data in the file. */
  start: number;
  end: number;
  /** True for block-quantized and integer types (anything but F32/F16/BF16/F64). */
  quantized: boolean;
}

/** Every tensor of a GGUF file with its absolute byte range, in file order. */
export function ggufTensorRanges(file: GgufFile): GgufTensorRange[] {
  return file.tensors.map((t) => ({
    name: t.name,
    dtype: ggmlTypeName(t.type),
    ne: t.ne,
    start: file.dataOffset + t.offset,
    end: file.dataOffset + t.offset + t.byteLength,
    quantized: !isFloatGgmlType(t.type),
  }));
}

/**
 * Every tensor of a GGUF model (all parts of a split GGUF) by name, with the index of the part holding it.
 *
 * @throws VeraError `GGUF_DUPLICATE` (a name in two parts).
 */
export function ggufRangesByName(
  file: GgufFile,
  parts: readonly GgufFile[] | undefined,
  label: string,
): Map<string, GgufTensorRange & { part: number }> {
  const ranges = new Map<string, GgufTensorRange & { part: number }>();
  for (const [part, f] of (parts ?? [file]).entries())
    for (const r of ggufTensorRanges(f)) {
      if (ranges.has(r.name))
        throw new VeraError(
          GgufErrorCode.GGUF_DUPLICATE,
          `${label}: tensor "${r.name}" is in parts ${ranges.get(r.name)!.part + 1} and ${part + 1}`,
          { path: r.name },
        );
      ranges.set(r.name, { ...r, part });
    }
  return ranges;
}

/** An adapted module as the merge sees it. */
export interface GgufModuleRef {
  name: string;
  inFeatures: number;
  outFeatures: number;
}

/** Parameters of {@link locateGgufWeights}. */
export interface LocateGgufWeightsParams {
  file: GgufFile;
  modules: GgufModuleRef[];
  /** Module path -> llama.cpp tensor name, for architectures without a built-in table. @default undefined */
  mapping?: GgufNameMapping;
  /** For messages (the file path). @default "gguf" */
  label?: string;
  /**
   * Every part of a split GGUF, in order, the first being `file` (which holds the metadata): tensors are
   * looked up over all of them (checkGgufSplit first: a name in two parts is refused here too).
   * @default [file]
   */
  parts?: readonly GgufFile[];
}

/** Where one module's weight lies in a GGUF model, and how its delta must be laid out to merge into it. */
export interface GgufWeightLocation extends GgufTensorRange {
  module: string;
  dtype: "F32" | "F16" | "BF16";
  /** Rows of the delta (out_features) are permuted with these heads first (llama attn_q / attn_k). */
  permuteHeads?: number;
  /** A fused attn_qkv stored in llama.cpp's row order: GGUF row i is the checkpoint's row `rowOrder[i]` (qkvRowOrder). */
  rowOrder?: Uint32Array;
  /** Index in `parts` of the part holding the tensor (0 for a single file); start/end are in that part. */
  part: number;
}

/** The GGUF container stage of a merge: the adapted weights located, checked and ready to patch. */
export interface GgufWeightPlan {
  architecture: string;
  alignment: number;
  dataOffset: number;
  weights: GgufWeightLocation[];
}

/**
 * Locate each adapted module's weight in a GGUF model (ggml layout: ne = [in, out], row-major out x in,
 * so a merge adds delta (out, in) element-wise after llama.cpp's q/k permutation, or its q/k/v row order of a fused
 * attn_qkv (GPT-NeoX, Bloom, Falcon), where it applies).
 * Refuses, naming every offender: an unknown architecture without a mapping, modules without a tensor
 * (tied `lm_head` included), shapes that disagree, and quantized weights (merge into the F16 GGUF, then
 * quantize with llama.cpp). Only F32, F16 and BF16 weights are returned. A split GGUF's tensors are looked
 * up over all its `parts`; the metadata is `file`'s (the first part's).
 */
export function locateGgufWeights(params: LocateGgufWeightsParams): GgufWeightPlan {
  const label = params.label ?? "gguf";
  const base = loraBaseFromGguf(params.file, label);
  if (!isKnownGgufArchitecture(base.architecture) && !params.mapping)
    throw new VeraError(
      GgufErrorCode.GGUF_UNKNOWN_ARCHITECTURE,
      `${label}: architecture "${base.architecture}" has no built-in llama.cpp tensor names; give a mapping file`,
      { path: "general.architecture", received: base.architecture },
    );
  const ranges = ggufRangesByName(params.file, params.parts, label);
  const missing: string[] = [];
  const quantized: string[] = [];
  const weights: GgufWeightLocation[] = [];
  for (const m of params.modules) {
    const t = ggufTensorName({
      architecture: base.architecture,
      module: m.name,
      ...(params.mapping ? { mapping: params.mapping } : {}),
    });
    const r = t === undefined ? undefined : ranges.get(`${t}.weight`);
    if (!r) {
      missing.push(
        t === undefined
          ? `${m.name} (no ${base.architecture} tensor name)`
          : t === "output"
            ? `${m.name} (output.weight is absent: tied to token_embd)`
            : `${m.name} (${t}.weight absent)`,
      );
      continue;
    }
    if (r.ne.length !== 2 || r.ne[0] !== m.inFeatures || r.ne[1] !== m.outFeatures)
      throw new VeraError(
        GgufErrorCode.GGUF_BASE_MISMATCH,
        `${label}: ${r.name} has ggml shape [${r.ne.join(", ")}], the adapter's ${m.name} needs [${m.inFeatures}, ${m.outFeatures}]`,
        { path: r.name, expected: [m.inFeatures, m.outFeatures], received: r.ne },
      );
    if (r.quantized || r.dtype === "F64") {
      quantized.push(`${r.name} (${r.dtype})`);
      continue;
    }
    const heads = qkPermutationHeads({
      architecture: base.architecture,
      tensor: t!,
      nHead: base.nHead ?? 0,
      nHeadKv: base.nHeadKv ?? 0,
    });
    if (heads !== undefined && (heads < 1 || m.outFeatures % (2 * heads) !== 0))
      throw new VeraError(
        GgufErrorCode.GGUF_BASE_MISMATCH,
        `${label}: ${r.name} needs llama.cpp's q/k permutation but the head count does not split its rows`,
        { path: r.name, received: heads },
      );
    const order = qkvRowOrder({
      architecture: base.architecture,
      tensor: t!,
      rows: m.outFeatures,
      nHead: base.nHead ?? 0,
      nHeadKv: base.nHeadKv ?? 0,
    });
    if (typeof order === "string")
      throw new VeraError(
        GgufErrorCode.GGUF_BASE_MISMATCH,
        `${label}: ${r.name} is stored in llama.cpp's q/k/v row order, but ${order}`,
        { path: r.name, received: { nHead: base.nHead, nHeadKv: base.nHeadKv } },
      );
    weights.push({
      ...r,
      dtype: r.dtype as "F32" | "F16" | "BF16",
      module: m.name,
      ...(heads !== undefined ? { permuteHeads: heads } : {}),
      ...(order !== undefined ? { rowOrder: order } : {}),
    });
  }
  if (missing.length)
    throw new VeraError(
      GgufErrorCode.GGUF_MODULE_UNSUPPORTED,
      `${label}: ${missing.length} adapted module(s) have no weight in the model: ${missing.join(", ")}`,
      { path: params.modules.find((m) => missing[0]!.startsWith(m.name))?.name ?? label, received: missing },
    );
  if (quantized.length)
    throw new VeraError(
      GgufErrorCode.GGUF_QUANTIZED,
      `${label}: quantized weights cannot take a merge (${quantized.join(", ")}); ` +
        "merge into the F16 GGUF, then quantize with llama.cpp",
      { path: quantized[0]!.split(" ")[0]!, expected: "F32, F16 or BF16", received: quantized },
    );
  return {
    architecture: base.architecture,
    alignment: params.file.alignment,
    dataOffset: params.file.dataOffset,
    weights,
  };
}

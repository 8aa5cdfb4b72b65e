import { VeraError } from "../errors.js";
import type { VeraAdapter } from "../format/types.js";
import { f16BitsToF32, f32ArrayToF16 } from "../numeric/half.js";
import { ServeErrorCode } from "./error-codes.js";
import { adapterFileBytes } from "./internal/adapter-file-bytes.js";
import { adapterFeeds } from "./adapter-feeds.js";
import { carriedTensorTargets } from "../peft/carried-tensors.js";
import { graftInputNames, type GraftSpec } from "./graft-spec.js";
import { inputDtype, type OnnxModelInput } from "./write-onnx-adapter-inputs.js";
import type { OnnxAdapterDtype, OnnxAdapterParameter } from "./onnx-adapter-file.js";

/** Parameters of {@link writeOnnxAdapter}. */
export interface WriteOnnxAdapterParams {
  /** The adapter whose d and b vectors are written. */
  adapter: VeraAdapter;
  /**
   * The graft record of the model the file is for (read from its metadata_props). When given, the adapter is checked
   * against it (`SERVE_SPEC_MISMATCH`, `SERVE_MODULE_NOT_GRAFTED`) and grafted modules the adapter lacks get zero
   * vectors (no change to those layers), listed in the report's `missing`.
   * @default undefined (one pair of vectors per adapter module, no check)
   */
  spec?: GraftSpec;
  /** Element type of the vectors; it must be the grafted inputs' type. @default the inputs' type, else "float32" */
  dtype?: OnnxAdapterDtype;
  /**
   * The model's inputs (see `readOnnxModelInputs`): every parameter must match an input's name, element type and fixed
   * dimensions (see `checkParametersAgainstInputs`), checked before anything is encoded.
   * @default undefined (no check)
   */
  inputs?: OnnxModelInput[];
  /** Stored in the file for the application's own bookkeeping. @default 0 */
  adapterVersion?: number;
  /** Stored in the file for the application's own bookkeeping. @default 0 */
  modelVersion?: number;
}

/** What {@link writeOnnxAdapter} wrote. */
export interface WriteOnnxAdapterReport {
  form: "vera";
  dtype: OnnxAdapterDtype;
  /** Modules whose vectors come from the adapter. */
  modules: string[];
  /** Grafted modules the adapter has no vectors for: written as zeros. */
  missing: string[];
  parameters: number;
  /** Size of the file. */
  bytes: number;
  /** Largest |value - stored value| over all vectors (0 for float32; the float16 rounding otherwise). */
  maxRoundingError: number;
}

/** Values in the file's element type, and the largest rounding error that cost (finite values only). @internal */
export function toAdapterValues(
  src: Float32Array,
  dtype: OnnxAdapterDtype,
): { data: Float32Array | Uint16Array; err: number } {
  if (dtype === "float32") return { data: src, err: 0 };
  const half = f32ArrayToF16(src);
  let err = 0;
  for (let i = 0; i < src.length; i++) {
    const back = f16BitsToF32(half[i]!);
    if (Number.isFinite(src[i]!) && Number.isFinite(back)) err = Math.max(err, Math.abs(src[i]! - back));
    else if (Number.isFinite(src[i]!)) err = Infinity; // beyond float16's range
  }
  return { data: half, err };
}

/**
 * An adapter's d and b vectors as an onnxruntime adapter file (`.onnx_adapter`) for a graph grafted by `graftOnnx`:
 * parameters named `<module>.vera_lambda_d` (shape [r]) and `<module>.vera_lambda_b` (shape [out]), float32 or
 * float16, and with `spec`, the carried tensors the graph serves (`<param>.vera_carried` and its `use` flag). onnxruntime feeds them to the graph's inputs of the same names (Python `LoraAdapter` +
 * `RunOptions.add_active_adapter`, onnxruntime-genai `Adapters.load`). A graft with one adapter per sequence
 * (`batched`) takes vectors per row through feeds, not an adapter file: refused with `SERVE_SPEC_MISMATCH`.
 */
export function writeOnnxAdapter(params: WriteOnnxAdapterParams): {
  bytes: Uint8Array;
  report: WriteOnnxAdapterReport;
} {
  const { adapter, spec } = params;
  const dtype =
    params.dtype ??
    (params.inputs &&
      inputDtype(
        adapter.modules.map((m) => graftInputNames(m.name).d),
        params.inputs,
      )) ??
    "float32";
  let missing: string[] = [];
  const parameters: OnnxAdapterParameter[] = [];
  let maxRoundingError = 0;
  const push = (name: string, src: Float32Array, dims: number[] = [src.length]) => {
    const v = toAdapterValues(src, dtype);
    maxRoundingError = Math.max(maxRoundingError, v.err);
    parameters.push({ name, dims, dtype, data: v.data });
  };
  if (spec) {
    if (spec.batched)
      throw new VeraError(
        ServeErrorCode.SERVE_SPEC_MISMATCH,
        "the model was grafted with --batched (vectors [batch, r] per sequence): an adapter file holds one adapter; " +
          "feed the vectors per row instead (adapterFeeds)",
        { path: "batched", expected: false, received: true },
      );
    // The same tensors as the feeds: every grafted module (zeros where the adapter has none) and carried tensor.
    const f = adapterFeeds({ adapter, spec });
    missing = f.missing[0]?.modules ?? [];
    for (const [name, t] of Object.entries(f.feeds)) push(name, t.data, t.dims);
  } else {
    if (adapter.storedProjections)
      throw new VeraError(
        ServeErrorCode.SERVE_SPEC_MISMATCH,
        "the adapter keeps stored projections (not regenerable from its seed): its vectors fit only a graph grafted " +
          "with the same projections; give the model (--model GRAFTED.onnx) so that is checked",
        { path: "storedProjections", expected: "a graft record", received: "none" },
      );
    const carried = carriedTensorTargets({ adapter }).map((t) => t.tensor.name);
    if (carried.length > 0)
      throw new VeraError(
        ServeErrorCode.SERVE_SPEC_MISMATCH,
        `the adapter carries ${carried.length} tensor(s) besides its vectors (${carried.join(", ")}): their layout is ` +
          "the grafted model's; give the model (--model GRAFTED.onnx) so they are written as its inputs",
        { path: carried[0]!, expected: "a graft record", received: "none" },
      );
    for (const m of adapter.modules) {
      const n = graftInputNames(m.name);
      push(n.d, m.lambdaD);
      push(n.b, m.lambdaB);
    }
  }
  const bytes = adapterFileBytes(parameters, params);
  return {
    bytes,
    report: {
      form: "vera",
      dtype,
      modules: adapter.modules.map((m) => m.name),
      missing,
      parameters: parameters.length,
      bytes: bytes.length,
      maxRoundingError,
    },
  };
}

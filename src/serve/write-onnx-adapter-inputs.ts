import { VeraError, type Issue } from "../errors.js";
import { readOnnxModel } from "../onnx/read-onnx-model.js";
import type { OnnxValueInfo } from "../onnx/types.js";
import { ServeErrorCode } from "./error-codes.js";
import type { OnnxAdapterDtype, OnnxAdapterParameter } from "./onnx-adapter-file.js";

/** One graph input of a model: an adapter parameter is fed to the input of the same name. */
export type OnnxModelInput = OnnxValueInfo;

/** What an adapter file is checked against: the main graph's inputs and the model's metadata_props. */
export interface OnnxModelInputs {
  inputs: OnnxModelInput[];
  /** ModelProto.metadata_props (e.g. the graft record under `verakit.graft`). */
  metadata: Record<string, string>;
}

/** Parameters of {@link readOnnxModelInputs}. */
export interface ReadOnnxModelInputsParams {
  /** The bytes of a `.onnx` file (a ModelProto); external data is not needed. */
  bytes: Uint8Array;
}

/**
 * A model's main-graph inputs (name, element type, shape) and its metadata_props, as the ONNX reader returns them
 * (no weights are read). Malformed protobuf is `ONNX_PARSE`; a model without a graph is `ONNX_NO_GRAPH`.
 */
export function readOnnxModelInputs(params: ReadOnnxModelInputsParams): OnnxModelInputs {
  const model = readOnnxModel({ bytes: params.bytes });
  return { inputs: model.graphs[0]!.inputInfo, metadata: model.metadata };
}

const ELEM_TYPES: Record<OnnxAdapterDtype, number> = { float32: 1, float16: 10 };

/** The parameter dtype a model input takes, or undefined when it is neither float32 nor float16. */
export function adapterDtypeOfInput(input: OnnxModelInput): OnnxAdapterDtype | undefined {
  return input.elemType === 1 ? "float32" : input.elemType === 10 ? "float16" : undefined;
}

/**
 * The element type a model takes for the first of `names` it has as a float32 or float16 input; undefined when none.
 * The writers use it as their default `dtype`.
 */
export function inputDtype(names: readonly string[], inputs: readonly OnnxModelInput[]): OnnxAdapterDtype | undefined {
  const byName = new Map(inputs.map((i) => [i.name, i]));
  for (const n of names) {
    const input = byName.get(n);
    const t = input && adapterDtypeOfInput(input);
    if (t) return t;
  }
  return undefined;
}

/** Parameters of {@link checkParametersAgainstInputs}. */
export interface CheckParametersAgainstInputsParams {
  /** Name, dims and dtype of each parameter (values are not looked at). */
  parameters: Array<Pick<OnnxAdapterParameter, "name" | "dims" | "dtype">>;
  inputs: OnnxModelInput[];
}

/**
 * Check that onnxruntime can feed every parameter to the model: an input of that name exists
 * (`SERVE_MODULE_NOT_GRAFTED` otherwise), of the same element type and rank, and every fixed dimension equal
 * (`SERVE_SPEC_MISMATCH`); symbolic dimensions (`lora_r`) accept any size. Throws one error listing every problem.
 */
export function checkParametersAgainstInputs(params: CheckParametersAgainstInputsParams): void {
  const byName = new Map(params.inputs.map((i) => [i.name, i]));
  const issues: Issue[] = [];
  for (const p of params.parameters) {
    const input = byName.get(p.name);
    if (!input) {
      issues.push({
        code: ServeErrorCode.SERVE_MODULE_NOT_GRAFTED,
        message: `the model has no input ${p.name}: onnxruntime would refuse the adapter`,
        path: p.name,
      });
      continue;
    }
    if (input.elemType !== ELEM_TYPES[p.dtype])
      issues.push({
        code: ServeErrorCode.SERVE_SPEC_MISMATCH,
        message: `${p.name}: the model input has element type ${input.elemType}, the parameter is ${p.dtype} (--dtype)`,
        path: p.name,
        expected: adapterDtypeOfInput(input) ?? input.elemType,
        received: p.dtype,
      });
    if (input.dims === null) continue;
    const fixedOk =
      input.dims.length === p.dims.length && input.dims.every((d, i) => typeof d !== "number" || d === p.dims[i]);
    if (!fixedOk)
      issues.push({
        code: ServeErrorCode.SERVE_SPEC_MISMATCH,
        message: `${p.name}: the model input has shape [${input.dims.map((d) => d ?? "?").join(", ")}], the parameter [${p.dims.join(", ")}]`,
        path: p.name,
        expected: input.dims,
        received: p.dims,
      });
  }
  if (issues.length > 0) throw VeraError.fromIssues(issues);
}

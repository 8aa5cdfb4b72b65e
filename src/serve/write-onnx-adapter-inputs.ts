import { VeraError, type Issue } from "../errors.js";
import { OnnxErrorCode } from "../onnx/error-codes.js";
import { fieldString, fieldUint, fields, readSafeVarint, WireType, type WireField } from "../onnx/wire.js";
import { ServeErrorCode } from "./error-codes.js";
import type { OnnxAdapterDtype, OnnxAdapterParameter } from "./onnx-adapter-file.js";

/** One graph input of a model: an adapter parameter is fed to the input of the same name. */
export interface OnnxModelInput {
  name: string;
  /** ONNX TensorProto element type (1 float32, 10 float16, ...); 0 when the input is not a tensor or has no type. */
  elemType: number;
  /** Dimensions: a number when fixed, a string when symbolic (`lora_r`, `batch`), null when unknown. */
  dims: Array<number | string | null> | null;
}

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

function len(f: WireField): void {
  if (f.wireType !== WireType.LEN)
    throw new VeraError(OnnxErrorCode.ONNX_PARSE, `malformed ONNX protobuf at byte ${f.start}: expected a message`, {
      path: `@${f.start}`,
    });
}

/** TypeProto -> element type and shape (tensor types only). */
function tensorType(b: Uint8Array, start: number, end: number): Pick<OnnxModelInput, "elemType" | "dims"> {
  let elemType = 0;
  let dims: OnnxModelInput["dims"] = null;
  for (const t of fields(b, start, end)) {
    if (t.field !== 1) continue; // tensor_type
    len(t);
    for (const f of fields(b, t.dataStart, t.dataEnd)) {
      if (f.field === 1) elemType = fieldUint(b, f);
      else if (f.field === 2) {
        len(f);
        dims = [];
        for (const d of fields(b, f.dataStart, f.dataEnd)) {
          if (d.field !== 1) continue;
          len(d);
          let dim: number | string | null = null;
          for (const x of fields(b, d.dataStart, d.dataEnd)) {
            if (x.field === 1 && x.wireType === WireType.VARINT) dim = readSafeVarint(b, x.dataStart, x.dataEnd).value;
            else if (x.field === 2) dim = fieldString(b, x);
          }
          dims.push(dim);
        }
      }
    }
  }
  return { elemType, dims };
}

/**
 * Read a model's graph inputs (name, element type, shape) and its metadata_props from the ModelProto's bytes, without
 * reading weights. Malformed protobuf is `ONNX_PARSE`; a model without a graph is `ONNX_INVALID`.
 */
export function readOnnxModelInputs(params: ReadOnnxModelInputsParams): OnnxModelInputs {
  const b = params.bytes;
  const metadata: Record<string, string> = {};
  const inputs: OnnxModelInput[] = [];
  let graphs = 0;
  for (const f of fields(b, 0, b.length)) {
    if (f.field === 14) {
      len(f);
      let key = "";
      let value = "";
      for (const e of fields(b, f.dataStart, f.dataEnd)) {
        if (e.field === 1) key = fieldString(b, e);
        else if (e.field === 2) value = fieldString(b, e);
      }
      metadata[key] = value;
    } else if (f.field === 7) {
      len(f);
      graphs++;
      for (const g of fields(b, f.dataStart, f.dataEnd)) {
        if (g.field !== 11) continue;
        len(g);
        let name = "";
        let type: Pick<OnnxModelInput, "elemType" | "dims"> = { elemType: 0, dims: null };
        for (const v of fields(b, g.dataStart, g.dataEnd)) {
          if (v.field === 1) name = fieldString(b, v);
          else if (v.field === 2) {
            len(v);
            type = tensorType(b, v.dataStart, v.dataEnd);
          }
        }
        inputs.push({ name, ...type });
      }
    }
  }
  if (graphs !== 1)
    throw new VeraError(OnnxErrorCode.ONNX_INVALID, `expected one graph in the model, found ${graphs}`, {
      path: "graph",
    });
  return { inputs, metadata };
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

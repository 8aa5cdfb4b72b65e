import { refuseCarriedTensors } from "../peft/refuse-carried-tensors.js";
import { VeraError, type Issue } from "../errors.js";
import type { VeraAdapter } from "../format/types.js";
import { expandToLoraStream, type LoraModuleReport } from "../peft/expand-to-lora.js";
import { MODEL_PREFIX } from "../peft/internal.js";
import { ServeErrorCode } from "./error-codes.js";
import { adapterFileBytes } from "./internal/adapter-file-bytes.js";
import type { OnnxAdapterDtype, OnnxAdapterParameter } from "./onnx-adapter-file.js";
import { inputDtype, type OnnxModelInput } from "./write-onnx-adapter-inputs.js";
import { toAdapterValues } from "./write-onnx-adapter.js";

/**
 * The input names Olive gives a module's LoRA weights (`olive convert-adapters`, matching the inputs its ExtractAdapters
 * pass makes): PEFT's key with `base_model.model.model` replaced by `model`, e.g.
 * `model.layers.0.self_attn.q_proj.lora_A.weight`; other architectures keep PEFT's key
 * (`base_model.model.transformer.h.0.attn.c_attn.lora_A.weight`).
 */
export function oliveLoraInputNames(moduleName: string): { a: string; b: string } {
  const key = (w: string) => `${MODEL_PREFIX}${moduleName}.${w}.weight`.replaceAll("base_model.model.model", "model");
  return { a: key("lora_A"), b: key("lora_B") };
}

/**
 * Find a module's LoRA inputs among a model's inputs: names ending, at a `.` boundary or the start, with
 * `<module>.lora_A.weight` or `<module>.lora_A.default.weight` (the names of dynamo exports); the same for lora_B.
 * Returns undefined when there is none; throws `SERVE_SPEC_MISMATCH` when several match.
 */
export function findLoraInputs(moduleName: string, inputs: OnnxModelInput[]): { a: string; b: string } | undefined {
  const find = (w: "lora_A" | "lora_B"): string | undefined => {
    const tails = [`${moduleName}.${w}.weight`, `${moduleName}.${w}.default.weight`];
    const hits = inputs.map((i) => i.name).filter((n) => tails.some((t) => n === t || n.endsWith(`.${t}`)));
    if (hits.length > 1)
      throw new VeraError(
        ServeErrorCode.SERVE_SPEC_MISMATCH,
        `module ${moduleName}: several model inputs could hold its ${w} (${hits.join(", ")})`,
        { path: moduleName, received: hits },
      );
    return hits[0];
  };
  const a = find("lora_A");
  const b = find("lora_B");
  if (a === undefined && b === undefined) return undefined;
  if (a === undefined || b === undefined)
    throw new VeraError(
      ServeErrorCode.SERVE_SPEC_MISMATCH,
      `module ${moduleName}: the model has ${a ?? b} but not its ${a ? "lora_B" : "lora_A"} partner`,
      { path: moduleName },
    );
  return { a, b };
}

/** Parameters of {@link writeOnnxLoraAdapter}. */
export interface WriteOnnxLoraAdapterParams {
  adapter: VeraAdapter;
  /**
   * LoRA rank. The VeRA rank (the default) is exact: lora_A = d * A[:, :in], lora_B = b * B[:out, :]. A smaller rank
   * writes each module's best rank-k approximation and reports its relative Frobenius error.
   * @default adapter.rank
   */
  rank?: number;
  /** @default the type of the model's LoRA inputs when `inputs` is given, else "float32" */
  dtype?: OnnxAdapterDtype;
  /**
   * The model's inputs (see `readOnnxModelInputs`): parameters are named after the inputs that hold each module's LoRA
   * weights, a module with none is refused (`SERVE_MODULE_NOT_GRAFTED`), and element types and fixed dimensions are
   * checked (`checkParametersAgainstInputs`).
   * @default undefined (Olive's names, see {@link oliveLoraInputNames})
   */
  inputs?: OnnxModelInput[];
  /** @default 0 */
  adapterVersion?: number;
  /** @default 0 */
  modelVersion?: number;
  /**
   * Leave out the tensors the adapter carries besides its VeRA vectors (modules_to_save heads, biases), which a
   * LoRA-ready graph has no inputs for, instead of refusing (`ADAPTER_CARRIED_TENSORS`); the report lists them.
   * @default false
   */
  dropCarried?: boolean;
}

/** What {@link writeOnnxLoraAdapter} wrote. */
export interface WriteOnnxLoraAdapterReport {
  form: "lora";
  dtype: OnnxAdapterDtype;
  rank: number;
  exact: boolean;
  modules: Array<LoraModuleReport & { a: string; b: string }>;
  totalRelativeError: number;
  /** LoRA inputs of the model (lora_A/lora_B names) that no module of the adapter feeds: they keep their defaults. */
  unfedInputs: string[];
  parameters: number;
  bytes: number;
  /** Largest |value - stored value| (0 for float32). */
  maxRoundingError: number;
  /** Carried tensors left out (dropCarried): the served model differs from PEFT's where they matter. */
  dropped: string[];
}

/**
 * A VeRA adapter as an onnxruntime adapter file for LoRA-ready ONNX models (Olive's ExtractAdapters with make_inputs,
 * the models onnxruntime-genai's multi-LoRA API runs): per module `...lora_A.weight` of shape [in, r] and
 * `...lora_B.weight` of shape [r, out] (the transposes of PEFT's tensors), the LoRA scale folded into B as
 * `olive convert-adapters` does (here lora_alpha = r, so the scale is 1). Values are the exact expansion of
 * `expandToLora`; with `rank` below r its best rank-k approximation.
 */
export function writeOnnxLoraAdapter(params: WriteOnnxLoraAdapterParams): {
  bytes: Uint8Array;
  report: WriteOnnxLoraAdapterReport;
} {
  const { adapter, dropped } = refuseCarriedTensors({
    adapter: params.adapter,
    target: "a LoRA .onnx_adapter file",
    ...(params.dropCarried !== undefined ? { dropCarried: params.dropCarried } : {}),
  });
  let dtype = params.dtype;
  const names = new Map<string, { a: string; b: string }>();
  const issues: Issue[] = [];
  for (const m of adapter.modules) {
    if (!params.inputs) {
      names.set(m.name, oliveLoraInputNames(m.name));
      continue;
    }
    const found = findLoraInputs(m.name, params.inputs);
    if (found) names.set(m.name, found);
    else
      issues.push({
        code: ServeErrorCode.SERVE_MODULE_NOT_GRAFTED,
        message: `the model has no LoRA inputs for module ${m.name} (expected a name ending in ${m.name}.lora_A.weight)`,
        path: m.name,
      });
  }
  if (issues.length > 0) throw VeraError.fromIssues(issues);
  if (dtype === undefined && params.inputs)
    dtype = inputDtype(
      [...names.values()].map((n) => n.a),
      params.inputs,
    );
  const dt: OnnxAdapterDtype = dtype ?? "float32";

  const stream = expandToLoraStream({ adapter, ...(params.rank !== undefined ? { rank: params.rank } : {}) });
  const k = params.rank ?? adapter.rank;
  const byName = new Map(adapter.modules.map((m) => [m.name, m]));
  const parameters: OnnxAdapterParameter[] = [];
  let maxRoundingError = 0;
  stream.tensors.forEach((t, index) => {
    const match = /^(.*)\.(lora_A|lora_B)\.weight$/.exec(t.name.slice(MODEL_PREFIX.length));
    const m = match && t.name.startsWith(MODEL_PREFIX) ? byName.get(match[1]!) : undefined;
    if (!m) throw new RangeError(`expansion tensor ${t.name} has no module`); // carried tensors were refused or dropped above
    const raw = new Uint8Array(t.byteLength);
    stream.fill(index, raw);
    const dv = new DataView(raw.buffer);
    const isA = match![2] === "lora_A";
    // PEFT stores lora_A (k, in) and lora_B (out, k); the graph multiplies x @ A^T-form [in, k] then [k, out]
    const rows = isA ? k : m.outFeatures;
    const cols = isA ? m.inFeatures : k;
    const out = new Float32Array(rows * cols);
    for (let i = 0; i < rows; i++)
      for (let j = 0; j < cols; j++) out[j * rows + i] = dv.getFloat32(4 * (i * cols + j), true);
    const v = toAdapterValues(out, dt);
    maxRoundingError = Math.max(maxRoundingError, v.err);
    const n = names.get(m.name)!;
    parameters.push({ name: isA ? n.a : n.b, dims: [cols, rows], dtype: dt, data: v.data });
  });
  const report = stream.report();
  const used = new Set(parameters.map((p) => p.name));
  const unfedInputs = (params.inputs ?? [])
    .map((i) => i.name)
    .filter((n) => /\.lora_[AB](\.default)?\.weight$/.test(n) && !used.has(n));
  const bytes = adapterFileBytes(parameters, params);
  return {
    bytes,
    report: {
      form: "lora",
      dtype: dt,
      rank: k,
      exact: report.exact,
      modules: report.modules.map((r) => ({ ...r, ...names.get(r.name)! })),
      totalRelativeError: report.totalRelativeError,
      unfedInputs,
      parameters: parameters.length,
      bytes: bytes.length,
      maxRoundingError,
      dropped,
    },
  };
}

/**
 * The weight mapping: one file format for every command that locates weights (merge into ONNX, a
 * safetensors checkpoint or GGUF; graft; the engine exports): adapter module path -> the container's
 * tensor, with its layout and row block when the automatic matching cannot tell. A leaf: pure.
 */
import type { WeightLayout } from "../dtypes.js";
import { VeraError, type Issue } from "../errors.js";

/** The error code of a malformed mapping (its first name, kept: codes never change once released). */
const OnnxErrorCode = { ONNX_MAPPING: "ONNX_MAPPING" } as const;

/** Where one adapter module's weight is, given explicitly. */
export interface WeightMappingEntry {
  /** The tensor: an ONNX initializer name, a checkpoint tensor name (`.weight` may be left out), a GGUF tensor name. */
  initializer: string;
  /**
   * Stored layout: `in_out` (as MatMul uses it) or `out_in` (torch's Linear layout).
   * @default the layout seen at the initializer's MatMul/Gemm consumer; required when it has none
   */
  layout?: WeightLayout;
  /**
   * Block of output features [start, end) inside a fused weight (e.g. the k part of qkv_proj).
   * @default the whole weight
   */
  outRange?: [number, number];
}

/** Module path -> where its weight is. */
export type WeightMapping = Record<string, WeightMappingEntry>;

/** Parameters of {@link parseWeightMapping}. */
export interface ParseWeightMappingParams {
  /**
   * The mapping document: JSON text or an already parsed value, of the form
   * `{"modules": {"<module path>": "<initializer>" | {"initializer": "...", "layout": "in_out"|"out_in", "outRange": [start, end]}}}`.
   */
  source: string | unknown;
}

/**
 * Parse and check a weight mapping document (the `--mapping` file of `vera merge`, `vera graft` and the exports).
 *
 * @throws VeraError `ONNX_MAPPING` listing every problem.
 */
export function parseWeightMapping(params: ParseWeightMappingParams): WeightMapping {
  let doc: unknown = params.source;
  if (typeof doc === "string") {
    try {
      doc = JSON.parse(doc);
    } catch (e) {
      throw new VeraError(OnnxErrorCode.ONNX_MAPPING, `mapping file is not JSON: ${(e as Error).message}`, {
        expected: "JSON object",
      });
    }
  }
  const issues: Issue[] = [];
  const fail = (path: string, message: string, expected?: unknown, received?: unknown): void => {
    issues.push({ code: OnnxErrorCode.ONNX_MAPPING, message, path, expected, received });
  };
  const out: WeightMapping = {};
  if (
    typeof doc !== "object" ||
    doc === null ||
    Array.isArray(doc) ||
    typeof (doc as { modules?: unknown }).modules !== "object"
  ) {
    throw new VeraError(OnnxErrorCode.ONNX_MAPPING, `mapping must be an object {"modules": {...}}`, {
      expected: '{"modules": {...}}',
    });
  }
  const modules = (doc as { modules: unknown }).modules;
  if (modules === null || Array.isArray(modules))
    throw new VeraError(OnnxErrorCode.ONNX_MAPPING, `"modules" must be an object`, { path: "/modules" });
  for (const [name, v] of Object.entries(modules as Record<string, unknown>)) {
    const path = `/modules/${name}`;
    if (name === "") fail(path, "empty module path");
    if (typeof v === "string") {
      if (v === "") fail(path, "empty initializer name");
      out[name] = { initializer: v };
      continue;
    }
    if (typeof v !== "object" || v === null || Array.isArray(v)) {
      fail(path, "entry must be an initializer name or an object", "string | {initializer, layout?, outRange?}", v);
      continue;
    }
    const o = v as Record<string, unknown>;
    for (const k of Object.keys(o))
      if (!["initializer", "layout", "outRange"].includes(k)) fail(`${path}/${k}`, `unknown key "${k}"`);
    if (typeof o.initializer !== "string" || o.initializer === "") {
      fail(`${path}/initializer`, "initializer must be a non-empty string", "string", o.initializer);
      continue;
    }
    const entry: WeightMappingEntry = { initializer: o.initializer };
    if (o.layout !== undefined) {
      if (o.layout !== "in_out" && o.layout !== "out_in")
        fail(`${path}/layout`, `layout must be "in_out" or "out_in"`, "in_out | out_in", o.layout);
      else entry.layout = o.layout;
    }
    if (o.outRange !== undefined) {
      const r = o.outRange;
      if (
        !Array.isArray(r) ||
        r.length !== 2 ||
        !r.every((x) => Number.isSafeInteger(x) && (x as number) >= 0) ||
        (r[0] as number) >= (r[1] as number)
      )
        fail(`${path}/outRange`, "outRange must be [start, end] with 0 <= start < end", "[start, end]", r);
      else entry.outRange = [r[0] as number, r[1] as number];
    }
    out[name] = entry;
  }
  if (issues.length > 0) throw VeraError.fromIssues(issues);
  return out;
}

import { promises as fsp } from "node:fs";
import { ErrorCode, VeraError } from "../errors.js";
import type { VeraAdapter } from "../format/types.js";
import type { LinearWeight } from "../onnx/list-linear-weights.js";
import { readVeraFile } from "../node/files.js";
import { readPeftFolder } from "../node/peft-folder.js";
import { baseShapesFromOnnx } from "../peft/base-shapes-from-onnx.js";
import type { BaseModule, BaseShapes } from "../peft/base-shapes.js";
import { importPeft } from "../peft/import-peft.js";
import type { SafetensorsFile } from "../safetensors/parse.js";
import { findWeightsForModule } from "../onnx/plan-onnx-merge.js";

/** Parameters of {@link loadMergeAdapter}. */
export interface LoadMergeAdapterParams {
  /** A verakit file (`adapter.vera.safetensors`) or a PEFT adapter folder. */
  path: string;
  /** The ONNX model's Linear weights ({@link listLinearWeights}): module shapes for a PEFT folder. */
  weights?: readonly LinearWeight[];
  /** Module shapes for a PEFT folder from another kind of model (a checkpoint's tensor shapes); takes precedence over `weights`. */
  base?: BaseShapes;
  /** Label of the ONNX model, for messages. @default "model.onnx" */
  modelLabel?: string;
  /** PEFT sub-adapter name. @default the folder's adapter */
  adapterName?: string;
}

/** A loaded adapter and where it came from. */
export interface LoadedMergeAdapter {
  adapter: VeraAdapter;
  /** `vera`: a verakit file; `peft`: imported from a PEFT folder with the ONNX model as the shape source. */
  source: "vera" | "peft";
  /** Importer warnings (PEFT). */
  warnings: string[];
}

/**
 * Load the adapter to merge: a verakit file, or a PEFT folder imported with the ONNX model's
 * Linear weights as the source of module shapes (PEFT files do not record in_features).
 */
export async function loadMergeAdapter(params: LoadMergeAdapterParams): Promise<LoadedMergeAdapter> {
  let st;
  try {
    st = await fsp.stat(params.path);
  } catch (e) {
    throw new VeraError(ErrorCode.IO_NOT_FOUND, `adapter not found: ${params.path}`, { path: params.path, cause: e });
  }
  if (st.isDirectory()) {
    const folder = await readPeftFolder({
      dir: params.path,
      ...(params.adapterName !== undefined ? { adapterName: params.adapterName } : {}),
    });
    const base =
      params.base ??
      peftBaseFromOnnx({
        weights: params.weights ?? [],
        peftWeights: folder.weights,
        label: params.modelLabel ?? "model.onnx",
      });
    const { adapter, report } = importPeft({
      config: folder.configText,
      weights: folder.weights,
      base,
      adapterName: folder.adapterName,
    });
    return { adapter, source: "peft", warnings: report.warnings };
  }
  return { adapter: await readVeraFile(params.path), source: "vera", warnings: [] };
}

/** Parameters of {@link peftBaseFromOnnx}. */
export interface PeftBaseFromOnnxParams {
  /** The ONNX model's Linear weights ({@link listLinearWeights}). */
  weights: readonly LinearWeight[];
  /** The PEFT adapter_model.safetensors (its lambda_b lengths size the parts of fused weights). */
  peftWeights: SafetensorsFile;
  /** Label of the model, for messages. @default "model.onnx" */
  label?: string;
}

/**
 * Module shapes for importing a PEFT adapter against an ONNX model: `baseShapesFromOnnx`, plus the
 * parts of fused weights (onnxruntime-genai `qkv_proj`) that the adapter targets.
 */
export function peftBaseFromOnnx(params: PeftBaseFromOnnxParams): BaseShapes {
  const base = baseShapesFromOnnx({ weights: params.weights, label: params.label ?? "model.onnx" });
  base.modules.push(...fusedPartShapes(params.peftWeights, params.weights));
  return base;
}

/**
 * Shapes of adapter modules that live inside a fused ONNX weight (onnxruntime-genai `qkv_proj`):
 * in_features is the fused weight's, out_features the module's lambda_b length.
 */
function fusedPartShapes(file: SafetensorsFile, weights: readonly LinearWeight[]): BaseModule[] {
  if (!weights.some((w) => w.fused)) return [];
  const out: BaseModule[] = [];
  const fused = weights.filter((w) => w.fused);
  for (const [key, info] of file.tensors) {
    const m = /^base_model\.model\.(.+)\.vera_lambda_b$/.exec(key);
    if (!m || info.shape.length !== 1) continue;
    const module = m[1]!;
    const hits = findWeightsForModule({ module, weights: fused }).filter((h) => h.part !== undefined);
    if (hits.length !== 1) continue;
    out.push({ path: module, shapes: [{ inFeatures: hits[0]!.weight.inFeatures, outFeatures: info.shape[0]! }] });
  }
  return out;
}

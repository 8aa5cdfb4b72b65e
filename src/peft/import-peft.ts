import type { ExtraTensor, VeraAdapter, VectorDtype } from "../format/types.js";
import { PRNG_TORCH_MT19937_KAIMING } from "../format/types.js";
import { tensorBytes, type SafetensorsFile } from "../safetensors/parse.js";
import type { BaseShapes } from "./base-shapes.js";
import { matchProjections, type ProjectionMatch } from "./import/match-projections.js";
import { readImportConfig, type ImportConfig } from "./import/read-import-config.js";
import { readStoredProjections, type StoredProjections } from "./import/read-stored-projections.js";
import { readVeraVectors, type VeraVectors } from "./import/read-vera-vectors.js";
import { resolveDimensions, type ResolvedDimensions } from "./import/resolve-dimensions.js";
import type { PeftOrigin } from "./internal.js";
import { pyToPlain } from "./py-json.js";
import { pveraAsVera, pveraProjections, withProjections, type PveraAsVera } from "./import/pvera.js";
import { isPveraSamplingTensor } from "./pvera-keys.js";

export type { ProjectionMatch } from "./import/match-projections.js";

/** Parameters of {@link importPeft}. */
export interface ImportPeftParams {
  /**
   * adapter_config.json: its text (kept verbatim, so an export reproduces it exactly) or a parsed object
   * (integral numbers are then read as ints, so `0.0` and `0` cannot be told apart).
   */
  config: string | Record<string, unknown>;
  /** The parsed adapter_model.safetensors (`parseSafetensors`). */
  weights: SafetensorsFile;
  /**
   * Module shapes of the base model (`baseShapesFromConfig`, `baseShapesFromWeights`, `baseShapesFromOnnx`).
   * PEFT files do not store in_features; without a base they are inferred only when unambiguous.
   * @default undefined
   */
  base?: BaseShapes;
  /** Name of the adapter (PEFT's sub-folder name for a non-default adapter). @default "default" */
  adapterName?: string;
  /** Where the config came from, for messages. @default "adapter_config.json" */
  configLabel?: string;
}

/** What {@link importPeft} found and decided. */
export interface ImportPeftReport {
  adapterName: string;
  /**
   * "PVERA" when the adapter was PEFT's PVeRA, read as the VeRA adapter its inference computes (lambda_d's mean half,
   * A's first r rows, projections stored explicitly).
   */
  method?: "PVERA";
  /** peft_version of the config, when written (PEFT >= 0.18). */
  peftVersion?: string;
  rank: number;
  /** projection_prng_key as a decimal string. */
  seed: string;
  modules: number;
  maxIn: number;
  maxOut: number;
  /** Where in_features came from, e.g. `base: config.json (llama, LlamaForCausalLM)`, or how they were inferred. */
  dimensionSource: string;
  /** True when no base was given and in_features were proven from the adapter alone (see dimensionSource). */
  dimensionsInferred: boolean;
  /** The transformers class (from adapter_config.json) an inference relied on. */
  architecture?: string;
  projections: {
    /** Whether the file held vera_A / vera_B. */
    inFile: boolean;
    /** Every (arithmetic, rounding) whose regeneration equals the stored projections bit for bit. */
    matches: ProjectionMatch[];
    /** "regenerate": the adapter records the seed (and the match); "stored": kept explicitly (no match). */
    storage: "regenerate" | "stored";
  };
  /** PEFT keys carried as opaque extra tensors (modules_to_save, trainable biases, unknown tensors). */
  carriedTensors: string[];
  /** Config fields PEFT 0.21's VeraConfig does not know (kept verbatim for export). */
  unknownConfigFields: string[];
  warnings: string[];
}

/** Result of {@link importPeft}. */
export interface ImportPeftResult {
  adapter: VeraAdapter;
  report: ImportPeftReport;
}

/** Config fields recorded as the adapter's training settings. */
const TRAINING_FIELDS = [
  "d_initial",
  "vera_dropout",
  "bias",
  "task_type",
  "init_weights",
  "modules_to_save",
  "layers_to_transform",
  "layers_pattern",
  "target_modules",
];

/**
 * Import stage 6: the verakit adapter and the report, from what the earlier stages read and decided. The
 * config text, the file's metadata, odd vector dtypes and the projection dtype go under `extra.peft`, so an
 * export reproduces the PEFT folder byte for byte.
 */
function assemble(params: {
  file: SafetensorsFile;
  config: ImportConfig;
  vectors: VeraVectors;
  projections: StoredProjections | undefined;
  dims: ResolvedDimensions;
  match: ReturnType<typeof matchProjections>;
  adapterName: string | undefined;
  warnings: string[];
}): ImportPeftResult {
  const { file, config, vectors, projections, dims, match } = params;
  const origin: PeftOrigin = { adapter_config: config.text };
  if (params.adapterName !== undefined && params.adapterName !== "default") origin.adapter_name = params.adapterName;
  const md = file.metadata;
  if (!(file.hasMetadata && Object.keys(md).length === 1 && md["format"] === "pt")) origin.weights_metadata = { ...md };
  const dtypes = [...vectors.vectorDtypes.values()];
  const vectorDtype: VectorDtype = dtypes.every((d) => d === dtypes[0]) ? dtypes[0]! : "F32";
  const odd: Record<string, VectorDtype> = {};
  for (const [k, d] of vectors.vectorDtypes) if (d !== vectorDtype) odd[k] = d;
  if (Object.keys(odd).length > 0) origin.vector_dtypes = odd;
  const projectionDtype = projections?.dtype ?? "F32";
  if (projectionDtype !== "F32") origin.projection_dtype = projectionDtype;
  if (!file.hasMetadata) origin.weights_metadata = {};

  const extraTensors: ExtraTensor[] = vectors.carried
    .sort((x, y) => (x < y ? -1 : x > y ? 1 : 0))
    .map((key) => {
      const info = file.tensors.get(key)!;
      return { name: key, dtype: info.dtype, shape: [...info.shape], data: tensorBytes(file, key).slice() };
    });

  const training: Record<string, unknown> = {};
  for (const k of TRAINING_FIELDS) {
    const v = config.cfg.get(k);
    if (v !== undefined && v !== null) training[k] = pyToPlain(v);
  }
  const baseModel: { id?: string; revision?: string } = {};
  const bmn = config.cfg.get("base_model_name_or_path");
  const rev = config.cfg.get("revision");
  if (typeof bmn === "string") baseModel.id = bmn;
  if (typeof rev === "string") baseModel.revision = rev;

  const adapter: VeraAdapter = {
    prng: { algorithm: PRNG_TORCH_MT19937_KAIMING, seed: config.seed, arithmetic: match.arithmetic },
    rank: config.rank,
    maxIn: dims.maxIn,
    maxOut: dims.maxOut,
    projectionRounding: match.rounding,
    vectorDtype,
    modules: dims.modules,
    training,
    extra: { peft: origin },
  };
  if (match.storedProjections) adapter.storedProjections = match.storedProjections;
  if (baseModel.id !== undefined || baseModel.revision !== undefined) adapter.baseModel = baseModel;
  if (extraTensors.length > 0) adapter.extraTensors = extraTensors;

  const report: ImportPeftReport = {
    adapterName: params.adapterName ?? "default",
    ...(config.peftVersion !== undefined ? { peftVersion: config.peftVersion } : {}),
    rank: config.rank,
    seed: config.seed.toString(),
    modules: dims.modules.length,
    maxIn: dims.maxIn,
    maxOut: dims.maxOut,
    dimensionSource: dims.dimensionSource,
    dimensionsInferred: dims.inferred,
    ...(dims.architecture !== undefined ? { architecture: dims.architecture } : {}),
    projections: {
      inFile: vectors.hasA,
      matches: match.matches,
      storage: match.storedProjections ? "stored" : "regenerate",
    },
    carriedTensors: extraTensors.map((t) => t.name),
    unknownConfigFields: config.unknownConfigFields,
    warnings: params.warnings,
  };
  return { adapter, report };
}

/**
 * Convert a PEFT VeRA adapter (adapter_config.json + adapter_model.safetensors) into a verakit adapter,
 * without losing a bit: the vectors are kept in their dtype, the config text is kept verbatim under
 * `extra.peft` (so {@link exportPeft} reproduces it), modules_to_save and trainable bias tensors are carried
 * as extra tensors under their PEFT key, and stored vera_A / vera_B are compared with regeneration under
 * both arithmetics and each rounding: a match is recorded, otherwise the projections are kept explicitly.
 * Without a base, in_features are inferred only where the adapter proves them (the report says how).
 * Throws a {@link VeraError} (`PEFT_*`) naming the module for every inconsistency.
 *
 * Stages, each in src/peft/import/: config -> vectors per module -> stored projections -> dimensions ->
 * projection match -> assembly.
 */
export function importPeft(params: ImportPeftParams): ImportPeftResult {
  const label = params.configLabel ?? "adapter_config.json";
  const pvera =
    typeof params.config === "string"
      ? pveraAsVera({ configText: params.config, weights: params.weights, label })
      : undefined;
  if (pvera) return importPvera(params, pvera);
  return importVera(params);
}

/**
 * A PVeRA adapter, imported as the VeRA adapter its inference computes (see src/peft/import/pvera.ts): when the file
 * does not store its projections, a first pass sizes the modules, then PVeRA's projections are drawn for those
 * dimensions and stored explicitly. The log-variance halves are carried (src/peft/pvera-keys.ts) and the PVeRA config
 * kept, for {@link exportPeft}.
 */
function importPvera(params: ImportPeftParams, pvera: PveraAsVera): ImportPeftResult {
  let config = pvera.configText;
  let weights = pvera.weights;
  if (!pvera.stored) {
    const sized = importVera({ ...params, config, weights }).adapter;
    const dims = { rank: pvera.rank, maxIn: sized.maxIn, maxOut: sized.maxOut };
    const proj = pveraProjections({ seed: pvera.seed, ...dims, arithmetic: sized.prng.arithmetic });
    weights = withProjections(weights, proj, dims);
    config = pvera.configTextStored;
  }
  const result = importVera({ ...params, config, weights });
  // the PVeRA config itself, verbatim: exportPeft writes PVeRA's folder from it
  (result.adapter.extra!["peft"] as PeftOrigin).pvera_config = params.config as string;
  result.report.method = "PVERA";
  // the log-variance halves are not PEFT keys the model takes (the warning says what they are)
  result.report.carriedTensors = result.report.carriedTensors.filter((n) => !isPveraSamplingTensor(n));
  result.report.warnings.push(...pvera.warnings);
  return result;
}

/** The VeRA import itself, in the stages below. */
function importVera(params: ImportPeftParams): ImportPeftResult {
  const config = readImportConfig(params.config, params.configLabel ?? "adapter_config.json");
  const file = params.weights;
  const vectors = readVeraVectors({
    file,
    rank: config.rank,
    bias: config.bias,
    modulesToSave: config.modulesToSave,
  });
  const warnings = [...config.warnings, ...vectors.warnings];
  const projections = readStoredProjections({
    file,
    rank: config.rank,
    hasA: vectors.hasA,
    hasB: vectors.hasB,
    saveProjection: config.saveProjection,
    warnings,
  });
  const dims = resolveDimensions({
    vectors: vectors.modules,
    config: config.cfg,
    fanInFanOut: config.fanInFanOut,
    ...(params.base ? { base: params.base } : {}),
    ...(projections ? { stored: projections } : {}),
  });
  const match = matchProjections({
    seed: config.seed,
    rank: config.rank,
    maxIn: dims.maxIn,
    maxOut: dims.maxOut,
    ...(projections ? { stored: projections } : {}),
    warnings,
  });
  return assemble({ file, config, vectors, projections, dims, match, adapterName: params.adapterName, warnings });
}

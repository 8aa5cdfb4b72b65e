import { VeraError } from "../../errors.js";
import type { VeraAdapter } from "../../format/types.js";
import { validateVera, type ValidationResult } from "../../format/validate.js";
import type { SafetensorsFile } from "../../safetensors/parse.js";
import type { BaseShapes } from "../base-shapes.js";
import { carriedTensorTargets, type CarriedTensorTarget } from "../carried-tensors.js";
import { importPeft, type ImportPeftReport } from "../import-peft.js";
import { readAdapterSource, type AdapterFiles, type AdapterSource } from "./read-adapter-source.js";
import { PEFT_CONFIG_NAME } from "./read-peft-folder.js";
import { joinPath } from "./file-access.js";

/**
 * The base model's module shapes for a PEFT adapter (PEFT files do not record in_features): given, or a
 * function of the PEFT weights (a fused weight's parts are sized by their lambda_b).
 */
export type AdapterBase = BaseShapes | ((peftWeights: SafetensorsFile) => BaseShapes);

/** Parameters of {@link loadAdapter}. */
export interface LoadAdapterParams {
  /** Where the adapter lies: a verakit file, or a PEFT adapter folder (or its adapter_config.json). */
  source: AdapterSource;
  /** The base model's shapes for a PEFT adapter; without it in_features are inferred where the adapter proves them. @default undefined */
  base?: AdapterBase;
  /** Named adapter of a PEFT folder holding several. @default the folder's adapter */
  adapterName?: string;
}

/** Where a loaded adapter came from. */
export interface AdapterOrigin {
  /** The verakit file, or the PEFT folder (the named adapter's sub-folder for a named adapter). */
  path: string;
  /** Bytes read: the verakit file, or adapter_config.json + adapter_model.safetensors. */
  fileBytes: number;
  /** PEFT: the adapter's name ("default" for the folder itself). */
  adapterName?: string;
  /** PEFT: the other adapters of the folder. */
  otherAdapters?: string[];
  /** verakit: the full validation (warnings included). */
  validation?: ValidationResult;
}

/** One adapter, as every path of verakit sees it. */
export interface LoadedAdapter {
  adapter: VeraAdapter;
  /** `vera`: a verakit file; `peft`: a PEFT folder imported against the base's shapes. */
  format: "vera" | "peft";
  /**
   * Every tensor the adapter carries besides its VeRA vectors (modules_to_save heads, trainable biases, other
   * tensors), with the base parameter each replaces. A path that cannot apply one must refuse it by name.
   */
  carried: CarriedTensorTarget[];
  /** The base shapes the PEFT import sized the modules with (undefined for verakit files and base-less imports). */
  base?: BaseShapes;
  /** PEFT: the import report. */
  imported?: ImportPeftReport;
  /** Importer warnings (PEFT); a verakit file's validation warnings are in `origin.validation`. */
  warnings: string[];
  origin: AdapterOrigin;
}

/** Parameters of {@link decodeAdapter}. */
export interface DecodeAdapterParams {
  /** What {@link readAdapterSource} read. */
  files: AdapterFiles;
  /** See {@link LoadAdapterParams.base}. @default undefined */
  base?: AdapterBase;
  /** How the source joins paths (for the config's label). @default "/" */
  join?: (dir: string, name: string) => string;
}

/**
 * Decode read adapter files: a verakit file is validated (every issue in the thrown error), a PEFT folder is
 * imported against the base.
 *
 * @throws VeraError `VERA_*` / `ST_*` (a broken verakit file, every issue listed), `PEFT_*`.
 */
export function decodeAdapter(params: DecodeAdapterParams): LoadedAdapter {
  const { files } = params;
  if (files.format === "vera") {
    const validation = validateVera(files.bytes);
    if (!validation.ok || !validation.adapter) throw VeraError.fromIssues(validation.issues);
    const adapter = validation.adapter;
    return {
      adapter,
      format: "vera",
      carried: carriedTensorTargets({ adapter }),
      // a verakit file's warnings stay in its validation (origin.validation)
      warnings: [],
      origin: { path: files.path, fileBytes: files.bytes.byteLength, validation },
    };
  }
  const { folder } = files;
  const base = typeof params.base === "function" ? params.base(folder.weights) : params.base;
  const join = params.join ?? ((d: string, n: string) => (d === "" ? n : `${d}/${n}`));
  const { adapter, report } = importPeft({
    config: folder.configText,
    weights: folder.weights,
    adapterName: folder.adapterName,
    configLabel: join(folder.dir, PEFT_CONFIG_NAME),
    ...(base ? { base } : {}),
  });
  return {
    adapter,
    format: "peft",
    carried: carriedTensorTargets({ adapter }),
    ...(base ? { base } : {}),
    imported: report,
    warnings: report.warnings,
    origin: {
      path: folder.dir,
      fileBytes: folder.fileBytes,
      adapterName: folder.adapterName,
      otherAdapters: folder.otherAdapters,
    },
  };
}

/**
 * Load an adapter against a base, wherever it lies: THE way every command, the library, the Hub pull and the
 * page turn a verakit file or a PEFT VeRA folder (on disk, in the Hugging Face cache, dropped in a page,
 * downloaded) into one {@link LoadedAdapter}: the VeRA modules, vectors and projection spec, the tensors it carries
 * and the base parameters they replace, the base shapes used, the import report and where it came from.
 * File access is injected (`nodeFileAccess` in verakit/node, `pathFileAccess` for Blobs and bytes).
 *
 * @throws VeraError `IO_*`, `VERA_*` / `ST_*` (a broken verakit file), `PEFT_*` (a PEFT folder).
 */
export async function loadAdapter(params: LoadAdapterParams): Promise<LoadedAdapter> {
  const files = await readAdapterSource({
    source: params.source,
    ...(params.adapterName !== undefined ? { adapterName: params.adapterName } : {}),
  });
  const fa = params.source.files;
  return decodeAdapter({
    files,
    ...(params.base !== undefined ? { base: params.base } : {}),
    join: (d, n) => joinPath(fa, d, n),
  });
}

import { ErrorCode, VeraError } from "verakit";
import { validateVera, type ValidationResult, type VeraAdapter } from "verakit/format";
import {
  checkAdapterSource,
  decodeAdapter,
  pathFileAccess,
  readAdapterSource,
  readBaseShapesFrom,
  type AdapterBase,
  type AdapterSource,
  type BaseShapes,
  type CarriedTensorTarget,
  type ImportPeftReport,
  type PeftAdapterDescription,
  type PeftValidationResult,
} from "verakit/peft";
import { stripCommonFolder, type InputFile } from "./input-files.js";

/** What the page loaded from the adapter input. */
export type LoadedAdapter =
  | {
      kind: "vera";
      /** File name shown and used for downloads. */
      label: string;
      fileBytes: number;
      /** The full validation (issues and warnings), as `vera validate` reports it. */
      validation: ValidationResult;
    }
  | {
      kind: "peft";
      label: string;
      adapterName: string;
      /** Other adapters found in sub-folders. */
      otherAdapters: string[];
      adapter: VeraAdapter;
      imported: ImportPeftReport;
      carried: CarriedTensorTarget[];
    };

/** Parameters of {@link loadAdapterFiles}. */
export interface LoadAdapterFilesParams {
  /** The chosen files: one verakit file, or the files of a PEFT adapter folder. */
  files: InputFile[];
  /** Base model files for a PEFT folder (config.json, a safetensors header, or an .onnx). @default none */
  base?: InputFile[];
  /** Named adapter of a PEFT folder holding several. @default the folder's adapter */
  adapterName?: string;
  /** Module shapes from elsewhere (an ONNX model being merged into), given the PEFT weights. @default none */
  baseFor?: AdapterBase;
}

/** The path the chosen files name: their common folder, the one file given, or the root of a loose set. */
function chosenPath(files: InputFile[]): string {
  const { root } = stripCommonFolder(files);
  if (root !== undefined) return root;
  return files.length === 1 ? files[0]!.path : ".";
}

/** Where the chosen adapter files lie, for the library's loader (`loadAdapter`, the merge's `adapter.source`). */
export function adapterSourceOf(files: InputFile[]): AdapterSource {
  return { files: pathFileAccess(files), path: chosenPath(files) };
}

/**
 * Load what the user gave as an adapter, with the library's loader (readAdapterSource, then decodeAdapter) over
 * the chosen Blobs: a single verakit file is validated (every issue kept, as `vera validate` shows them), a PEFT
 * folder is imported, with the same error codes and messages as `vera`. A pickled adapter_model.bin is refused,
 * never read.
 */
export async function loadAdapterFiles(params: LoadAdapterFilesParams): Promise<LoadedAdapter> {
  if (params.files.length === 0)
    throw new VeraError(
      ErrorCode.ARG_INVALID,
      "no files given: drop a .vera.safetensors file or a PEFT adapter folder",
      {
        expected: "a verakit file or a PEFT adapter folder",
        received: "nothing",
      },
    );
  const path = chosenPath(params.files);
  const read = await readAdapterSource({
    source: adapterSourceOf(params.files),
    ...(params.adapterName !== undefined ? { adapterName: params.adapterName } : {}),
  });
  if (read.format === "vera")
    return { kind: "vera", label: path, fileBytes: read.bytes.length, validation: validateVera(read.bytes) };
  const base = params.baseFor ?? (params.base && params.base.length > 0 ? await readBaseFiles(params.base) : undefined);
  const loaded = decodeAdapter({ files: read, ...(base ? { base } : {}) });
  return {
    kind: "peft",
    label: stripCommonFolder(params.files).root ?? read.folder.adapterName,
    adapterName: read.folder.adapterName,
    otherAdapters: read.folder.otherAdapters,
    adapter: loaded.adapter,
    imported: loaded.imported!,
    carried: loaded.carried,
  };
}

/**
 * Module shapes of a base model from the files the user gave, with the library's reader: a transformers
 * config.json, a safetensors file (only its header is read), a sharded index, or an ONNX graph (its external
 * data is not read); the first found of model.safetensors.index.json, model.safetensors, config.json, model.onnx
 * when a folder was given.
 */
export function readBaseFiles(input: InputFile[]): Promise<BaseShapes> {
  return readBaseShapesFrom({ files: pathFileAccess(input), path: chosenPath(input) });
}

/**
 * What the chosen files are when they do not load (a PEFT folder without a base, a lone adapter_model.safetensors):
 * the description and check `vera inspect` gives, or undefined when they are no PEFT adapter either.
 */
export async function describeAdapterFiles(params: {
  files: InputFile[];
  adapterName?: string;
}): Promise<{ description: PeftAdapterDescription; validation: PeftValidationResult } | undefined> {
  if (params.files.length === 0) return undefined;
  try {
    const r = await checkAdapterSource({
      source: adapterSourceOf(params.files),
      ...(params.adapterName !== undefined ? { adapterName: params.adapterName } : {}),
    });
    return r.format === "peft" ? { description: r.description, validation: r.validation } : undefined;
  } catch {
    return undefined; // the load's own error is what the page shows
  }
}

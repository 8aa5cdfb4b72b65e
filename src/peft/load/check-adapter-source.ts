import { validateVera, type ValidationResult } from "../../format/validate.js";
import { parseSafetensors, type SafetensorsFile } from "../../safetensors/parse.js";
import type { BaseShapes } from "../base-shapes.js";
import { describePeftAdapter, type PeftAdapterDescription } from "../describe-peft-adapter.js";
import { validatePeftAdapter, type PeftValidationResult } from "../validate-peft-adapter.js";
import { dirnamePath, joinPath } from "./file-access.js";
import { readAdapterSource, type AdapterSource } from "./read-adapter-source.js";
import { PEFT_CONFIG_NAME } from "./read-peft-folder.js";

/** Parameters of {@link checkAdapterSource}. */
export interface CheckAdapterSourceParams {
  source: AdapterSource;
  /** Named adapter of a PEFT folder holding several. @default the folder's adapter */
  adapterName?: string;
  /** The base model's shapes, to check a PEFT adapter's dimensions too. @default undefined */
  base?: BaseShapes;
  /** How the user named the base, for the import command. @default "BASE" */
  baseArg?: string;
}

/** What `vera inspect` / `vera validate` found at a path: a verakit file, or a PEFT adapter (folder or weights). */
export type CheckedAdapterSource =
  | { format: "vera"; path: string; fileBytes: number; validation: ValidationResult }
  | {
      format: "peft";
      path: string;
      fileBytes: number;
      description: PeftAdapterDescription;
      validation: PeftValidationResult;
    };

/** A safetensors file that holds PEFT VeRA keys (an adapter_model.safetensors, whatever its name), else undefined. */
function peftWeightsOf(bytes: Uint8Array): SafetensorsFile | undefined {
  let file: SafetensorsFile;
  try {
    file = parseSafetensors(bytes);
  } catch {
    return undefined;
  }
  const keys = [...file.tensors.keys()];
  return keys.some((k) => /^base_model\.model\..+\.p?vera_lambda_[bd]$/.test(k) || k === "base_model.vera_A")
    ? file
    : undefined;
}

/**
 * Check whatever a user points `vera inspect` / `vera validate` (or the page) at, reading it as the loader does:
 * a verakit file is validated against the format; a PEFT folder (or its adapter_config.json /
 * adapter_model.safetensors) is described and checked as `vera import-peft` would; a lone PEFT weights file is
 * described and reported as missing its config. Only I/O failures and unreadable folders throw.
 *
 * @throws VeraError `IO_*`, and the PEFT folder's `PEFT_*` (pickle, missing files, several adapters) / `ST_*`.
 */
export async function checkAdapterSource(params: CheckAdapterSourceParams): Promise<CheckedAdapterSource> {
  const { files } = params.source;
  const read = await readAdapterSource({
    source: params.source,
    ...(params.adapterName !== undefined ? { adapterName: params.adapterName } : {}),
  });
  if (read.format === "peft") {
    const f = read.folder;
    const validation = validatePeftAdapter({
      configText: f.configText,
      weights: f.weights,
      configLabel: joinPath(files, f.dir, PEFT_CONFIG_NAME),
      adapterName: f.adapterName,
      ...(params.base ? { base: params.base } : {}),
    });
    const description = describePeftAdapter({
      weights: f.weights,
      configText: f.configText,
      path: read.path,
      adapterName: f.adapterName,
      otherAdapters: f.otherAdapters,
      needsBase: validation.needsBase || params.base !== undefined,
      ...(params.baseArg !== undefined ? { baseArg: params.baseArg } : {}),
    });
    return { format: "peft", path: read.path, fileBytes: f.fileBytes, description, validation };
  }
  const validation = validateVera(read.bytes);
  const peft = validation.ok ? undefined : peftWeightsOf(read.bytes);
  if (!peft) return { format: "vera", path: read.path, fileBytes: read.bytes.length, validation };
  return {
    format: "peft",
    path: read.path,
    fileBytes: read.bytes.length,
    description: describePeftAdapter({ weights: peft, path: read.path }),
    validation: validatePeftAdapter({
      configText: undefined,
      weights: peft,
      configLabel: joinPath(files, dirnamePath(files, read.path), PEFT_CONFIG_NAME),
    }),
  };
}

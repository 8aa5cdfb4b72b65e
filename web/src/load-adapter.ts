import { checkInputSize, ErrorCode, INPUT_LIMITS, VeraError } from "verakit";
import { validateVera, type ValidationResult, type VeraAdapter } from "verakit/format";
import { listLinearWeights, readOnnxModel } from "verakit/onnx";
import {
  PeftErrorCode,
  baseShapesFromConfig,
  baseShapesFromOnnx,
  baseShapesFromWeights,
  importPeft,
  type BaseShapes,
  type ImportPeftReport,
} from "verakit/peft";
import { parseSafetensors, readSafetensorsHeader, type SafetensorsFile } from "verakit/safetensors";
import { readAll, stripCommonFolder, type InputFile } from "./input-files.js";

/** File names of a PEFT adapter folder (as `verakit/node` names them). */
export const PEFT_CONFIG_NAME = "adapter_config.json";
export const PEFT_WEIGHTS_NAME = "adapter_model.safetensors";
export const PEFT_PICKLE_NAME = "adapter_model.bin";

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
  baseFor?: (weights: SafetensorsFile) => BaseShapes;
}

const has = (files: InputFile[], path: string): InputFile | undefined => files.find((f) => f.path === path);

/** Adapter sub-folders: `NAME/adapter_config.json`, as PEFT saves named adapters. */
function adapterSubfolders(files: InputFile[]): string[] {
  const out = new Set<string>();
  for (const f of files) {
    const m = /^([^/]+)\/adapter_config\.json$/.exec(f.path);
    if (m) out.add(m[1]!);
  }
  return [...out].sort();
}

/**
 * Load what the user gave as an adapter: a single verakit file is validated (every issue kept),
 * a PEFT folder is read and imported, with the same error codes and messages as `vera` (PEFT_*,
 * ST_*, VERA_*). A pickled adapter_model.bin is refused, never read.
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
  const { root, files } = stripCommonFolder(params.files);
  const dir = root ?? ".";
  const isPeft =
    files.length > 1 ||
    root !== undefined ||
    files.some((f) => [PEFT_CONFIG_NAME, PEFT_WEIGHTS_NAME, PEFT_PICKLE_NAME].includes(f.path));
  if (!isPeft) {
    const f = files[0]!;
    const bytes = await readAll(f.file);
    return { kind: "vera", label: f.path, fileBytes: bytes.length, validation: validateVera(bytes) };
  }
  const subs = adapterSubfolders(files);
  let adapterName: string;
  let prefix: string;
  if (params.adapterName !== undefined && params.adapterName !== "default") {
    if (!subs.includes(params.adapterName))
      throw new VeraError(
        PeftErrorCode.PEFT_ADAPTER_NOT_FOUND,
        `no adapter "${params.adapterName}" in ${dir} (found: ${["default", ...subs].join(", ")})`,
        { path: `${dir}/${params.adapterName}`, expected: ["default", ...subs], received: params.adapterName },
      );
    adapterName = params.adapterName;
    prefix = `${adapterName}/`;
  } else if (params.adapterName === "default" || has(files, PEFT_CONFIG_NAME) || has(files, PEFT_PICKLE_NAME)) {
    adapterName = "default";
    prefix = "";
  } else if (subs.length === 1) {
    adapterName = subs[0]!;
    prefix = `${adapterName}/`;
  } else if (subs.length > 1) {
    throw new VeraError(
      PeftErrorCode.PEFT_ADAPTER_NOT_FOUND,
      `${dir} holds several adapters (${subs.join(", ")}): choose one with --adapter NAME`,
      { path: dir, expected: subs },
    );
  } else {
    throw new VeraError(
      PeftErrorCode.PEFT_CONFIG_MISSING,
      `${dir} has no ${PEFT_CONFIG_NAME}: not a PEFT adapter folder`,
      { path: `${dir}/${PEFT_CONFIG_NAME}`, expected: PEFT_CONFIG_NAME, received: "missing" },
    );
  }
  const folder = prefix ? `${dir}/${adapterName}` : dir;
  const cfg = has(files, prefix + PEFT_CONFIG_NAME);
  const st = has(files, prefix + PEFT_WEIGHTS_NAME);
  if (!st && has(files, prefix + PEFT_PICKLE_NAME))
    throw new VeraError(
      PeftErrorCode.PEFT_PICKLE_REFUSED,
      `${folder}/${PEFT_PICKLE_NAME} is a pickle, which verakit never loads (it can run code). Convert it once in Python: ` +
        `PeftModel.from_pretrained(base, "${folder}").save_pretrained("OUT", safe_serialization=True), or ` +
        `safetensors.torch.save_file(torch.load("adapter_model.bin", weights_only=True), "adapter_model.safetensors", metadata={"format": "pt"})`,
      { path: `${folder}/${PEFT_PICKLE_NAME}`, expected: PEFT_WEIGHTS_NAME, received: PEFT_PICKLE_NAME },
    );
  if (!cfg)
    throw new VeraError(PeftErrorCode.PEFT_CONFIG_MISSING, `${folder} has no ${PEFT_CONFIG_NAME}`, {
      path: `${folder}/${PEFT_CONFIG_NAME}`,
      expected: PEFT_CONFIG_NAME,
      received: "missing",
    });
  if (!st)
    throw new VeraError(PeftErrorCode.PEFT_WEIGHTS_MISSING, `${folder} has no ${PEFT_WEIGHTS_NAME}`, {
      path: `${folder}/${PEFT_WEIGHTS_NAME}`,
      expected: PEFT_WEIGHTS_NAME,
      received: "missing",
    });
  let configText: string;
  checkInputSize({ size: cfg.file.size, limit: INPUT_LIMITS.jsonBytes, path: cfg.path, what: "adapter config" });
  try {
    configText = new TextDecoder("utf-8", { fatal: true }).decode(await readAll(cfg.file));
  } catch (e) {
    throw new VeraError(PeftErrorCode.PEFT_CONFIG_INVALID, `${folder}/${PEFT_CONFIG_NAME} is not UTF-8 text`, {
      path: `${folder}/${PEFT_CONFIG_NAME}`,
      cause: e,
    });
  }
  const weights = parseSafetensors(await readAll(st.file));
  const base = params.baseFor
    ? params.baseFor(weights)
    : params.base && params.base.length > 0
      ? await readBaseFiles(params.base)
      : undefined;
  const { adapter, report } = importPeft({
    config: configText,
    weights,
    adapterName,
    configLabel: `${folder}/${PEFT_CONFIG_NAME}`,
    ...(base ? { base } : {}),
  });
  return {
    kind: "peft",
    label: root ?? adapterName,
    adapterName,
    otherAdapters: subs.filter((s) => s !== adapterName),
    adapter,
    imported: report,
  };
}

/**
 * Module shapes of a base model from the files the user gave: a transformers config.json, a
 * safetensors file (only its header is read) or an ONNX graph (its external data is not read).
 * The first found of model.safetensors, config.json, model.onnx when a folder was given.
 */
export async function readBaseFiles(input: InputFile[]): Promise<BaseShapes> {
  const { files } = stripCommonFolder(input);
  const pick =
    files.length === 1
      ? files[0]!
      : (["model.safetensors", "config.json", "model.onnx"].map((n) => has(files, n)).find((f) => f) ??
        files.find((f) => /\.(onnx|safetensors|json)$/.test(f.path)));
  const label = files.length === 1 ? files[0]!.path : "base";
  if (!pick)
    throw new VeraError(
      PeftErrorCode.PEFT_BASE_UNSUPPORTED,
      `${label} holds none of model.safetensors, config.json, model.onnx`,
      {
        path: label,
        expected: "model.safetensors | config.json | model.onnx",
      },
    );
  const name = pick.path.split("/").pop()!;
  if (name.endsWith(".onnx")) {
    const model = readOnnxModel({ bytes: await readAll(pick.file) });
    return baseShapesFromOnnx({ weights: listLinearWeights({ model }), label: name });
  }
  if (name.endsWith(".safetensors")) {
    const file = pick.file;
    const header = await readSafetensorsHeader({
      source: { size: file.size, read: (o, n) => readAll(file.slice(o, o + n)) },
    });
    const tensors = [...header.tensors].map(([tname, info]) => ({ name: tname, shape: info.shape }));
    return baseShapesFromWeights({ tensors, label: `${name} (header)` });
  }
  if (name.endsWith(".json")) {
    let json: unknown;
    checkInputSize({ size: pick.file.size, limit: INPUT_LIMITS.jsonBytes, path: pick.path, what: "JSON file" });
    try {
      json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(await readAll(pick.file)));
    } catch (e) {
      throw new VeraError(
        PeftErrorCode.PEFT_CONFIG_INVALID,
        `${pick.path} is not valid JSON: ${(e as Error).message}`,
        {
          path: pick.path,
          cause: e,
        },
      );
    }
    return baseShapesFromConfig({ config: json, label: name });
  }
  throw new VeraError(
    PeftErrorCode.PEFT_BASE_UNSUPPORTED,
    `base ${pick.path}: expected a config.json, .safetensors, model.safetensors.index.json or .onnx file`,
    {
      path: pick.path,
      expected: "config.json | *.safetensors | *.safetensors.index.json | *.onnx",
      received: name,
    },
  );
}

import { promises as fsp } from "node:fs";
import { join } from "node:path";
import { ErrorCode, VeraError } from "../errors.js";
import { PeftErrorCode } from "../peft/error-codes.js";
import { parseSafetensors, type SafetensorsFile } from "../safetensors/parse.js";
import { readFileBytes, readJsonFileBytes, writeFileAtomic, writeFileAtomicStream } from "./files.js";

/** File names of a PEFT adapter folder. */
export const PEFT_CONFIG_NAME = "adapter_config.json";
export const PEFT_WEIGHTS_NAME = "adapter_model.safetensors";
export const PEFT_PICKLE_NAME = "adapter_model.bin";

/** Parameters of {@link readPeftFolder}. */
export interface ReadPeftFolderParams {
  /** The folder save_pretrained wrote. */
  dir: string;
  /**
   * Which adapter: "default" is the folder itself, any other name its sub-folder (as PEFT saves named
   * adapters). When omitted: the folder itself if it holds an adapter, else its only adapter sub-folder.
   * @default undefined
   */
  adapterName?: string;
}

/** A PEFT adapter read from disk. */
export interface PeftFolder {
  /** The folder the files were read from. */
  dir: string;
  /** "default" for the folder itself, else the sub-folder's name. */
  adapterName: string;
  /** adapter_config.json as text (kept verbatim). */
  configText: string;
  /** The parsed adapter_model.safetensors. */
  weights: SafetensorsFile;
  /** Other adapters found in sub-folders. */
  otherAdapters: string[];
}

async function isFile(p: string): Promise<boolean> {
  try {
    return (await fsp.stat(p)).isFile();
  } catch {
    return false;
  }
}

async function adapterSubfolders(dir: string): Promise<string[]> {
  let entries: import("node:fs").Dirent[];
  try {
    entries = await fsp.readdir(dir, { withFileTypes: true });
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === "ENOENT")
      throw new VeraError(ErrorCode.IO_NOT_FOUND, `no such folder: ${dir}`, { path: dir, cause: e });
    if (err.code === "ENOTDIR")
      throw new VeraError(
        ErrorCode.ARG_INVALID,
        `${dir} is not a folder (a PEFT adapter is a folder with ${PEFT_CONFIG_NAME})`,
        { path: dir, cause: e },
      );
    throw new VeraError(ErrorCode.IO_ERROR, `cannot list ${dir}: ${err.message}`, { path: dir, cause: e });
  }
  const out: string[] = [];
  for (const e of entries) if (e.isDirectory() && (await isFile(join(dir, e.name, PEFT_CONFIG_NAME)))) out.push(e.name);
  return out.sort();
}

/** A sub-folder name from the user or a file: one plain path component. */
function checkAdapterName(name: string): void {
  if (name === "" || name === "." || name === ".." || /[\\/\0]/.test(name))
    throw new VeraError(ErrorCode.IO_UNSAFE_PATH, `adapter name "${name}" is not a plain folder name`, {
      path: name,
      expected: "a folder name without / or \\",
    });
}

/**
 * Read a PEFT adapter folder: adapter_config.json (as text) and adapter_model.safetensors. A pickled
 * adapter_model.bin is refused (never unpickled) with a message saying how to convert it.
 */
export async function readPeftFolder(params: ReadPeftFolderParams): Promise<PeftFolder> {
  const { dir } = params;
  const subs = await adapterSubfolders(dir);
  let adapterName: string;
  let folder: string;
  if (params.adapterName !== undefined && params.adapterName !== "default") {
    checkAdapterName(params.adapterName);
    if (!subs.includes(params.adapterName))
      throw new VeraError(
        PeftErrorCode.PEFT_ADAPTER_NOT_FOUND,
        `no adapter "${params.adapterName}" in ${dir} (found: ${["default", ...subs].join(", ")})`,
        {
          path: join(dir, params.adapterName),
          expected: ["default", ...subs],
          received: params.adapterName,
        },
      );
    adapterName = params.adapterName;
    folder = join(dir, adapterName);
  } else if (
    params.adapterName === "default" ||
    (await isFile(join(dir, PEFT_CONFIG_NAME))) ||
    (await isFile(join(dir, PEFT_PICKLE_NAME)))
  ) {
    adapterName = "default";
    folder = dir;
  } else if (subs.length === 1) {
    adapterName = subs[0]!;
    folder = join(dir, adapterName);
  } else if (subs.length > 1) {
    throw new VeraError(
      PeftErrorCode.PEFT_ADAPTER_NOT_FOUND,
      `${dir} holds several adapters (${subs.join(", ")}): choose one with --adapter NAME`,
      {
        path: dir,
        expected: subs,
      },
    );
  } else {
    throw new VeraError(
      PeftErrorCode.PEFT_CONFIG_MISSING,
      `${dir} has no ${PEFT_CONFIG_NAME}: not a PEFT adapter folder`,
      {
        path: join(dir, PEFT_CONFIG_NAME),
        expected: PEFT_CONFIG_NAME,
        received: "missing",
      },
    );
  }
  const cfgPath = join(folder, PEFT_CONFIG_NAME);
  const stPath = join(folder, PEFT_WEIGHTS_NAME);
  const hasSt = await isFile(stPath);
  if (!hasSt && (await isFile(join(folder, PEFT_PICKLE_NAME))))
    throw new VeraError(
      PeftErrorCode.PEFT_PICKLE_REFUSED,
      `${join(folder, PEFT_PICKLE_NAME)} is a pickle, which verakit never loads (it can run code). Convert it once in Python: ` +
        `PeftModel.from_pretrained(base, "${folder}").save_pretrained("OUT", safe_serialization=True), or ` +
        `safetensors.torch.save_file(torch.load("adapter_model.bin", weights_only=True), "adapter_model.safetensors", metadata={"format": "pt"})`,
      { path: join(folder, PEFT_PICKLE_NAME), expected: PEFT_WEIGHTS_NAME, received: PEFT_PICKLE_NAME },
    );
  if (!(await isFile(cfgPath)))
    throw new VeraError(PeftErrorCode.PEFT_CONFIG_MISSING, `${folder} has no ${PEFT_CONFIG_NAME}`, {
      path: cfgPath,
      expected: PEFT_CONFIG_NAME,
      received: "missing",
    });
  if (!hasSt)
    throw new VeraError(PeftErrorCode.PEFT_WEIGHTS_MISSING, `${folder} has no ${PEFT_WEIGHTS_NAME}`, {
      path: stPath,
      expected: PEFT_WEIGHTS_NAME,
      received: "missing",
    });
  const cfgBytes = await readJsonFileBytes(cfgPath, "adapter config");
  let configText: string;
  try {
    configText = new TextDecoder("utf-8", { fatal: true }).decode(cfgBytes);
  } catch (e) {
    throw new VeraError(PeftErrorCode.PEFT_CONFIG_INVALID, `${cfgPath} is not UTF-8 text`, { path: cfgPath, cause: e });
  }
  const weights = parseSafetensors(await readFileBytes(stPath));
  return { dir: folder, adapterName, configText, weights, otherAdapters: subs.filter((s) => s !== adapterName) };
}

/** Parameters of {@link writePeftFolder}. */
export interface WritePeftFolderParams {
  /** Output folder (created when missing). */
  dir: string;
  /** adapter_config.json text. */
  configJson: string;
  /** adapter_model.safetensors bytes. */
  safetensors: Uint8Array;
}

/** Create `dir` (IO_ERROR when impossible) and return the paths of the two files of a PEFT folder in it. */
async function preparePeftFolder(dir: string): Promise<{ weights: string; config: string }> {
  try {
    await fsp.mkdir(dir, { recursive: true });
  } catch (e) {
    throw new VeraError(ErrorCode.IO_ERROR, `cannot create ${dir}: ${(e as Error).message}`, { path: dir, cause: e });
  }
  return { weights: join(dir, PEFT_WEIGHTS_NAME), config: join(dir, PEFT_CONFIG_NAME) };
}

/**
 * Write a PEFT adapter folder: both files atomically (temporary file + rename). Everything is computed
 * before this is called, so bad input never leaves a partial folder.
 */
export async function writePeftFolder(params: WritePeftFolderParams): Promise<{ config: string; weights: string }> {
  const { weights, config } = await preparePeftFolder(params.dir);
  await writeFileAtomic(weights, params.safetensors);
  await writeFileAtomic(config, params.configJson);
  return { config, weights };
}

/** A safetensors file produced tensor by tensor (e.g. `expandToLoraStream`). */
export interface StreamedSafetensors {
  /** 8-byte length and JSON header. */
  header: Uint8Array;
  /** Total size in bytes. */
  size: number;
  /** Tensors in file order. */
  tensors: Array<{ name: string; byteLength: number }>;
  /** Write tensor `index`'s bytes into `target`. */
  fill(index: number, target: Uint8Array): void;
}

/** Parameters of {@link writePeftFolderStreamed}. */
export interface WritePeftFolderStreamedParams {
  dir: string;
  configJson: string;
  weights: StreamedSafetensors;
}

/**
 * Write a PEFT adapter folder whose weights are produced tensor by tensor: only the largest tensor is held
 * in memory. The weights go to a temporary file renamed into place, then the config; a failure leaves no
 * partial adapter_model.safetensors behind.
 */
export async function writePeftFolderStreamed(
  params: WritePeftFolderStreamedParams,
): Promise<{ config: string; weights: string }> {
  const { weights: w } = params;
  const { weights, config } = await preparePeftFolder(params.dir);
  await writeFileAtomicStream(weights, async (write) => {
    await write(w.header);
    const scratch = new Uint8Array(Math.max(0, ...w.tensors.map((t) => t.byteLength)));
    for (let i = 0; i < w.tensors.length; i++) {
      const view = scratch.subarray(0, w.tensors[i]!.byteLength);
      w.fill(i, view);
      await write(view);
    }
  });
  await writeFileAtomic(config, params.configJson);
  return { config, weights };
}

import { promises as fsp } from "node:fs";
import { join } from "node:path";
import { ErrorCode, VeraError } from "../errors.js";
import { readPeftFolderFiles, type PeftFolder } from "../peft/load/read-peft-folder.js";
import { PEFT_CONFIG_NAME, PEFT_WEIGHTS_NAME } from "../peft/load/read-peft-folder.js";
import { writeFileAtomic, writeFileAtomicStream } from "./files.js";
import { nodeFileAccess } from "./node-file-access.js";

export { PEFT_CONFIG_NAME, PEFT_PICKLE_NAME, PEFT_WEIGHTS_NAME } from "../peft/load/read-peft-folder.js";

/** Parameters of {@link readPeftFolder}. */
export interface ReadPeftFolderParams {
  /** The folder save_pretrained wrote. */
  dir: string;
  /** Which adapter (see readPeftFolderFiles). @default undefined */
  adapterName?: string;
}

/** `readPeftFolderFiles` over the local file system. */
export function readPeftFolder(params: ReadPeftFolderParams): Promise<PeftFolder> {
  return readPeftFolderFiles({ files: nodeFileAccess(), ...params });
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

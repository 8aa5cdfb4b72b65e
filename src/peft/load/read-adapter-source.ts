import { ErrorCode, VeraError } from "../../errors.js";
import { basenamePath, dirnamePath, joinPath, type FileAccess } from "./file-access.js";
import {
  PEFT_CONFIG_NAME,
  PEFT_PICKLE_NAME,
  PEFT_WEIGHTS_NAME,
  readPeftFolderFiles,
  type PeftFolder,
} from "./read-peft-folder.js";

/** Where an adapter lies: a verakit file or a PEFT adapter folder (or one of its files), in some files. */
export interface AdapterSource {
  /** The files (a disk, a dropped folder, downloaded files). */
  files: FileAccess;
  /** A verakit file, a PEFT adapter folder, or its adapter_config.json / adapter_model.safetensors. */
  path: string;
}

/** Parameters of {@link readAdapterSource}. */
export interface ReadAdapterSourceParams {
  source: AdapterSource;
  /** Named adapter of a PEFT folder holding several. @default the folder's adapter */
  adapterName?: string;
}

/** The raw adapter files: a verakit file's bytes, or a PEFT folder read. */
export type AdapterFiles =
  | { format: "vera"; path: string; bytes: Uint8Array }
  | { format: "peft"; path: string; folder: PeftFolder };

/**
 * The folder of a path that names a PEFT adapter file: adapter_config.json or adapter_model.bin always,
 * adapter_model.safetensors when its adapter_config.json lies beside it (a verakit file may bear any name).
 */
async function peftFolderOf(files: FileAccess, path: string): Promise<string | undefined> {
  const name = basenamePath(path);
  if (name !== PEFT_CONFIG_NAME && name !== PEFT_PICKLE_NAME && name !== PEFT_WEIGHTS_NAME) return undefined;
  const dir = dirnamePath(files, path);
  if (name !== PEFT_WEIGHTS_NAME) return dir;
  return (await files.stat(joinPath(files, dir, PEFT_CONFIG_NAME)))?.type === "file" ? dir : undefined;
}

/**
 * Read what an adapter source holds, before any decoding: a folder (or a file of one) is read as a PEFT adapter
 * folder, any other file as a verakit file's bytes.
 *
 * @throws VeraError `IO_NOT_FOUND`, `IO_*`, and the PEFT folder's `PEFT_*` / `ST_*` (see readPeftFolderFiles).
 */
export async function readAdapterSource(params: ReadAdapterSourceParams): Promise<AdapterFiles> {
  const { files, path } = params.source;
  const kind = await files.stat(path);
  if (kind === undefined)
    throw new VeraError(ErrorCode.IO_NOT_FOUND, `adapter not found: ${path}`, {
      path,
      expected: "a verakit file or a PEFT adapter folder",
      received: "nothing",
    });
  const dir = kind.type === "folder" ? path : await peftFolderOf(files, path);
  if (dir === undefined) return { format: "vera", path, bytes: await files.read(path) };
  const folder = await readPeftFolderFiles({
    files,
    dir,
    ...(params.adapterName !== undefined ? { adapterName: params.adapterName } : {}),
  });
  return { format: "peft", path: dir, folder };
}

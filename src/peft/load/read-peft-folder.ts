import { ErrorCode, VeraError } from "../../errors.js";
import { parseSafetensors, type SafetensorsFile } from "../../safetensors/parse.js";
import { PeftErrorCode } from "../error-codes.js";
import { joinPath, readJsonBytes, type FileAccess } from "./file-access.js";

/** File names of a PEFT adapter folder. */
export const PEFT_CONFIG_NAME = "adapter_config.json";
export const PEFT_WEIGHTS_NAME = "adapter_model.safetensors";
export const PEFT_PICKLE_NAME = "adapter_model.bin";

/** Parameters of {@link readPeftFolderFiles}. */
export interface ReadPeftFolderFilesParams {
  /** Where the folder lies. */
  files: FileAccess;
  /** The folder save_pretrained wrote. */
  dir: string;
  /**
   * Which adapter: "default" is the folder itself, any other name its sub-folder (as PEFT saves named
   * adapters). When omitted: the folder itself if it holds an adapter, else its only adapter sub-folder.
   * @default undefined
   */
  adapterName?: string;
}

/** A PEFT adapter folder, read. */
export interface PeftFolder {
  /** The folder the files were read from (the adapter's sub-folder for a named adapter). */
  dir: string;
  /** "default" for the folder itself, else the sub-folder's name. */
  adapterName: string;
  /** adapter_config.json as text (kept verbatim). */
  configText: string;
  /** The parsed adapter_model.safetensors. */
  weights: SafetensorsFile;
  /** Bytes of the two files. */
  fileBytes: number;
  /** Other adapters found in sub-folders. */
  otherAdapters: string[];
}

async function isFile(files: FileAccess, p: string): Promise<boolean> {
  return (await files.stat(p))?.type === "file";
}

async function adapterSubfolders(files: FileAccess, dir: string): Promise<string[]> {
  const kind = await files.stat(dir);
  if (kind === undefined) throw new VeraError(ErrorCode.IO_NOT_FOUND, `no such folder: ${dir}`, { path: dir });
  if (kind.type !== "folder")
    throw new VeraError(
      ErrorCode.ARG_INVALID,
      `${dir} is not a folder (a PEFT adapter is a folder with ${PEFT_CONFIG_NAME})`,
      { path: dir },
    );
  const out: string[] = [];
  for (const e of await files.list(dir))
    if (e.type === "folder" && (await isFile(files, joinPath(files, joinPath(files, dir, e.name), PEFT_CONFIG_NAME))))
      out.push(e.name);
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

/** Which adapter of the folder: its name and the folder that holds its files. */
async function chooseAdapter(
  files: FileAccess,
  dir: string,
  subs: string[],
  wanted: string | undefined,
): Promise<{ adapterName: string; folder: string }> {
  if (wanted !== undefined && wanted !== "default") {
    checkAdapterName(wanted);
    if (!subs.includes(wanted))
      throw new VeraError(
        PeftErrorCode.PEFT_ADAPTER_NOT_FOUND,
        `no adapter "${wanted}" in ${dir} (found: ${["default", ...subs].join(", ")})`,
        { path: joinPath(files, dir, wanted), expected: ["default", ...subs], received: wanted },
      );
    return { adapterName: wanted, folder: joinPath(files, dir, wanted) };
  }
  if (
    wanted === "default" ||
    (await isFile(files, joinPath(files, dir, PEFT_CONFIG_NAME))) ||
    (await isFile(files, joinPath(files, dir, PEFT_PICKLE_NAME)))
  )
    return { adapterName: "default", folder: dir };
  if (subs.length === 1) return { adapterName: subs[0]!, folder: joinPath(files, dir, subs[0]!) };
  if (subs.length > 1)
    throw new VeraError(
      PeftErrorCode.PEFT_ADAPTER_NOT_FOUND,
      `${dir} holds several adapters (${subs.join(", ")}): choose one with --adapter NAME`,
      { path: dir, expected: subs },
    );
  throw new VeraError(
    PeftErrorCode.PEFT_CONFIG_MISSING,
    `${dir} has no ${PEFT_CONFIG_NAME}: not a PEFT adapter folder`,
    {
      path: joinPath(files, dir, PEFT_CONFIG_NAME),
      expected: PEFT_CONFIG_NAME,
      received: "missing",
    },
  );
}

/**
 * Read a PEFT adapter folder: adapter_config.json (as text) and adapter_model.safetensors, from any
 * {@link FileAccess}. A pickled adapter_model.bin is refused (never read) with a message saying how to convert it.
 *
 * @throws VeraError `IO_NOT_FOUND`, `ARG_INVALID` (not a folder), `IO_UNSAFE_PATH` (adapter name),
 *   `PEFT_ADAPTER_NOT_FOUND`, `PEFT_CONFIG_MISSING`, `PEFT_PICKLE_REFUSED`, `PEFT_WEIGHTS_MISSING`,
 *   `PEFT_CONFIG_INVALID` (not UTF-8), `ST_*`.
 */
export async function readPeftFolderFiles(params: ReadPeftFolderFilesParams): Promise<PeftFolder> {
  const { files, dir } = params;
  const subs = await adapterSubfolders(files, dir);
  const { adapterName, folder } = await chooseAdapter(files, dir, subs, params.adapterName);
  const cfgPath = joinPath(files, folder, PEFT_CONFIG_NAME);
  const stPath = joinPath(files, folder, PEFT_WEIGHTS_NAME);
  const pklPath = joinPath(files, folder, PEFT_PICKLE_NAME);
  const hasSt = await isFile(files, stPath);
  if (!hasSt && (await isFile(files, pklPath)))
    throw new VeraError(
      PeftErrorCode.PEFT_PICKLE_REFUSED,
      `${pklPath} is a pickle, which verakit never loads (it can run code). Convert it once in Python: ` +
        `PeftModel.from_pretrained(base, "${folder}").save_pretrained("OUT", safe_serialization=True), or ` +
        `safetensors.torch.save_file(torch.load("adapter_model.bin", weights_only=True), "adapter_model.safetensors", metadata={"format": "pt"})`,
      { path: pklPath, expected: PEFT_WEIGHTS_NAME, received: PEFT_PICKLE_NAME },
    );
  if (!(await isFile(files, cfgPath)))
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
  const cfgBytes = await readJsonBytes(files, cfgPath);
  let configText: string;
  try {
    configText = new TextDecoder("utf-8", { fatal: true }).decode(cfgBytes);
  } catch (e) {
    throw new VeraError(PeftErrorCode.PEFT_CONFIG_INVALID, `${cfgPath} is not UTF-8 text`, { path: cfgPath, cause: e });
  }
  const stBytes = await files.read(stPath);
  const weights = parseSafetensors(stBytes);
  return {
    dir: folder,
    adapterName,
    configText,
    weights,
    fileBytes: cfgBytes.byteLength + stBytes.byteLength,
    otherAdapters: subs.filter((s) => s !== adapterName),
  };
}

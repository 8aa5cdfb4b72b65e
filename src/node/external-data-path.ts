import { promises as fsp } from "node:fs";
import { join, resolve } from "node:path";
import { ErrorCode, VeraError } from "../errors.js";
import { checkExternalLocation } from "../onnx/external-location.js";
import { ioError } from "./io-error.js";
import { isInside } from "./path-inside.js";

/** Parameters of {@link resolveExternalDataPath}. */
export interface ResolveExternalDataPathParams {
  /** Folder of the `.onnx` file (locations are relative to it). */
  modelDir: string;
  /** The tensor's external_data `location`, as read from the model (hostile input). */
  location: string;
  /** The tensor name, for messages. */
  tensor: string;
}

/** A resolved external data file. */
export interface ExternalDataFile {
  /** The location as written in the model. */
  location: string;
  /** Path components of the location (relative to the model folder). */
  parts: string[];
  /** The real path of the file (symlinks resolved, inside the model folder). */
  path: string;
  /** File size in bytes. */
  size: number;
}

/**
 * Resolve an external-data location against the model's folder, refusing anything that could
 * reach outside it: absolute paths, `..` components, and symlinks (anywhere on the path) that
 * resolve outside the folder. The file must exist and be a regular file.
 *
 * @throws VeraError `IO_UNSAFE_PATH`, `IO_NOT_FOUND`, `IO_ERROR`.
 */
export async function resolveExternalDataPath(params: ResolveExternalDataPathParams): Promise<ExternalDataFile> {
  const parts = checkExternalLocation({ location: params.location, tensor: params.tensor });
  const dir = resolve(params.modelDir);
  let realDir: string;
  try {
    realDir = await fsp.realpath(dir);
  } catch (e) {
    throw new VeraError(ErrorCode.IO_NOT_FOUND, `model folder not found: ${dir}`, { path: dir, cause: e });
  }
  const joined = join(dir, ...parts);
  let real: string;
  try {
    real = await fsp.realpath(joined);
  } catch (e) {
    throw new VeraError(
      ioError({ cause: e, path: joined }).code,
      `initializer ${JSON.stringify(params.tensor)}: external data file ${JSON.stringify(params.location)} not found next to the model (${joined})`,
      { path: params.tensor, cause: e },
    );
  }
  if (!isInside(realDir, real))
    throw new VeraError(
      ErrorCode.IO_UNSAFE_PATH,
      `initializer ${JSON.stringify(params.tensor)}: external data location ${JSON.stringify(params.location)} resolves outside the model's folder (a symlink to ${real})`,
      { path: params.tensor, expected: "a file inside the model's folder", received: real },
    );
  const st = await fsp.stat(real);
  if (!st.isFile())
    throw new VeraError(
      ErrorCode.IO_UNSAFE_PATH,
      `initializer ${JSON.stringify(params.tensor)}: external data location ${JSON.stringify(params.location)} is not a regular file`,
      {
        path: params.tensor,
        received: real,
      },
    );
  return { location: params.location, parts, path: real, size: st.size };
}

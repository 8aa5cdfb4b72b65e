/** External data files of an ONNX model found among given files (a page's dropped folder, files in memory). */
import { ErrorCode, VeraError } from "../../errors.js";
import { checkExternalLocation } from "../../onnx/external-location.js";
import { joinPath, type FileAccess } from "../../peft/load/file-access.js";
import type { ResolveDataFile } from "./onnx-container.js";

/**
 * A {@link ResolveDataFile} over a {@link FileAccess}: the location is checked as hostile input
 * (`checkExternalLocation` refuses absolute paths and `..`: `IO_UNSAFE_PATH`), then looked up beside the model
 * (`IO_NOT_FOUND` when not given, `IO_UNSAFE_PATH` when a folder). On disk, where symlinks can lead out of the
 * model's folder, the Node merge uses `resolveExternalDataPath` instead.
 */
export function fileAccessDataResolver(files: FileAccess): ResolveDataFile {
  return async ({ dir, location, tensor }) => {
    const parts = checkExternalLocation({ location, tensor });
    let path = dir === "." ? "" : dir;
    for (const p of parts) path = joinPath(files, path, p);
    const kind = await files.stat(path);
    if (!kind)
      throw new VeraError(
        ErrorCode.IO_NOT_FOUND,
        `initializer ${JSON.stringify(tensor)}: external data file ${JSON.stringify(location)} not found next to the model (${path}): give it together with the model`,
        { path: tensor, expected: path, received: "not given" },
      );
    if (kind.type !== "file")
      throw new VeraError(
        ErrorCode.IO_UNSAFE_PATH,
        `initializer ${JSON.stringify(tensor)}: external data location ${JSON.stringify(location)} is not a regular file`,
        { path: tensor, received: path },
      );
    return { location, parts, path, size: kind.size };
  };
}

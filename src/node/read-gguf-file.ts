import { readGguf } from "../gguf/read-gguf.js";
import type { GgufFile } from "../gguf/types.js";
import { withFileSource } from "./files.js";

/**
 * Read a GGUF file's header, metadata and tensor table by positioned reads (the tensor data is not
 * read, so a model of many GB costs only its header). The one GGUF reader of files: a regular file
 * only, read by {@link readGguf} with its limits (GGUF_LIMITS). Errors name `label` (default: the path).
 *
 * @throws VeraError `GGUF_*`, `IO_NOT_FOUND`, `IO_NOT_A_FILE`, `IO_ERROR`.
 */
export async function readGgufFile(path: string, label: string = path): Promise<GgufFile> {
  return withFileSource(path, (source) => readGguf({ source, label }), {
    maxBytes: Number.MAX_SAFE_INTEGER,
    what: "GGUF file",
  });
}

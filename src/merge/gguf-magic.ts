/** Internal (Node): container detection by content: a GGUF file starts with the magic "GGUF". */
import { nodeFileAccess } from "../node/node-file-access.js";
import { detectModelContainer } from "./core/detect-container.js";

/** Whether `path` is a regular file starting with the GGUF magic (false for folders and missing files). */
export async function isGgufFile(path: string): Promise<boolean> {
  try {
    return (await detectModelContainer({ files: nodeFileAccess(), path })) === "gguf";
  } catch {
    return false;
  }
}

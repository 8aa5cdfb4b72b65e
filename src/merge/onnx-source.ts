/** Internal (Node): an ONNX model read from disk for a merge, and its external data files resolved on disk. */
import { resolveExternalDataPath } from "../node/external-data-path.js";
import { readFileBytes } from "../node/files.js";
import { parseOnnxSource, type OnnxSource, type ResolveDataFile } from "./core/onnx-container.js";

/** Read and parse an ONNX model file and list its Linear weights. */
export async function readOnnxSource(params: { path: string; dir: string }): Promise<OnnxSource> {
  return parseOnnxSource({ ...params, bytes: await readFileBytes(params.path) });
}

/** External data locations resolved on disk, symlinks followed and checked to stay inside the model's folder. */
export const diskDataResolver: ResolveDataFile = ({ dir, location, tensor }) =>
  resolveExternalDataPath({ modelDir: dir, location, tensor });

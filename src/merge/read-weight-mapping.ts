import { readJsonFileBytes } from "../node/files.js";
import { parseWeightMapping, type WeightMapping } from "../locate/weight-mapping.js";

/**
 * The weight mapping of a merge: the object as given, or the mapping file at a path read and checked
 * (`parseWeightMapping`: one format for every container).
 *
 * @throws VeraError `ONNX_MAPPING` (a malformed mapping), `IO_*`.
 */
export async function readWeightMapping(
  mapping: string | WeightMapping | undefined,
): Promise<WeightMapping | undefined> {
  if (typeof mapping !== "string") return mapping;
  return parseWeightMapping({ source: new TextDecoder().decode(await readJsonFileBytes(mapping, "mapping")) });
}

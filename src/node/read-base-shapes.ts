import type { BaseShapes } from "../peft/base-shapes.js";
import { readBaseShapesFrom } from "../peft/load/read-base-shapes-from.js";
import { nodeFileAccess } from "./node-file-access.js";

/** Parameters of {@link readBaseShapes}. */
export interface ReadBaseShapesParams {
  /**
   * A transformers config.json, a safetensors weights file (only its header is read), a sharded
   * checkpoint's `model.safetensors.index.json` (each shard's header), an ONNX model (external data is
   * not read), or a folder holding one of these (weights index, weights, config.json, model.onnx: first found).
   */
  path: string;
}

/** `readBaseShapesFrom` over the local file system: a base model's module shapes for importing a PEFT adapter. */
export function readBaseShapes(params: ReadBaseShapesParams): Promise<BaseShapes> {
  return readBaseShapesFrom({ files: nodeFileAccess(), path: params.path });
}

/** Which container a model is, from its content (never its name): GGUF, a safetensors checkpoint, or ONNX. */
import { ErrorCode, VeraError } from "../../errors.js";
import type { FileAccess } from "../../peft/load/file-access.js";

/** The containers a merge writes into. */
export type ModelContainerKind = "onnx" | "checkpoint" | "gguf";

/** Parameters of {@link detectModelContainer}. */
export interface DetectModelContainerParams {
  files: FileAccess;
  /** The model: a file, or a checkpoint folder. */
  path: string;
}

/**
 * The container at `path`, by content: a folder is a checkpoint (transformers layout); a file starting with the
 * magic `GGUF` is GGUF; one starting with a safetensors header (a little-endian u64 length that fits the file, then
 * `{`) is a one-file checkpoint; one starting with protobuf field 1 as a varint (ModelProto's `ir_version`, which
 * every ONNX writer puts first) is ONNX. Undefined when the content says none of these.
 *
 * @throws VeraError `IO_NOT_FOUND` (nothing at `path`), `IO_*` from the file access.
 */
export async function detectModelContainer(
  params: DetectModelContainerParams,
): Promise<ModelContainerKind | undefined> {
  const { files, path } = params;
  const kind = await files.stat(path);
  if (!kind) throw new VeraError(ErrorCode.IO_NOT_FOUND, `model not found: ${path}`, { path });
  if (kind.type === "folder") return "checkpoint";
  const head =
    kind.size === 0 ? new Uint8Array(0) : await files.read(path, { offset: 0, length: Math.min(16, kind.size) });
  if (head.length >= 4 && String.fromCharCode(head[0]!, head[1]!, head[2]!, head[3]!) === "GGUF") return "gguf";
  if (head.length >= 9 && head[8] === 0x7b) {
    const n = new DataView(head.buffer, head.byteOffset, 8).getBigUint64(0, true);
    if (n + 8n <= BigInt(kind.size)) return "checkpoint";
  }
  if (head.length >= 2 && head[0] === 0x08) return "onnx";
  return undefined;
}

/**
 * Refuse the options a container cannot honour, rather than ignoring them: `untie` (ONNX only), `skipMissing`
 * (ONNX and checkpoints).
 *
 * @throws VeraError `ARG_INVALID`.
 */
export function checkContainerOptions(params: {
  container: ModelContainerKind;
  untie?: boolean;
  skipMissing?: boolean;
}): void {
  const { container } = params;
  const refuse = (option: string, where: string): VeraError =>
    new VeraError(ErrorCode.ARG_INVALID, `${option} applies to ${where} only`, {
      path: option,
      expected: where,
      received: container,
    });
  if (params.untie === true && container !== "onnx") throw refuse("untie", "ONNX models");
  if (params.skipMissing === true && container === "gguf") throw refuse("skipMissing", "ONNX models and checkpoints");
}

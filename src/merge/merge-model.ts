/**
 * One merge for every container: the model's container is found from its content (a folder is a checkpoint, a
 * file by its magic bytes) and the merge of that container runs (mergeOnnx, mergeCheckpoint, mergeGguf).
 */
import { ErrorCode, VeraError, isVeraError } from "../errors.js";
import { MergeErrorCode } from "./error-codes.js";
import { nodeFileAccess } from "../node/node-file-access.js";
import { drain } from "../util/event-stream.js";
import { checkContainerOptions, detectModelContainer, type ModelContainerKind } from "./core/detect-container.js";
import type { MergeEvent, MergeReport } from "./core/merge-report.js";
import { mergeCheckpointIter } from "./merge-checkpoint.js";
import { mergeGgufIter } from "./merge-gguf.js";
import { mergeOnnxIter } from "./merge-onnx.js";
import type { MergeCommonParams } from "./merge-params.js";

/** Parameters of {@link mergeModel} and {@link mergeModelIter}. */
export interface MergeModelParams extends MergeCommonParams {
  /** The base model: an ONNX file, a safetensors checkpoint (folder or file), or a GGUF file (any part of a split one). */
  model: string;
  /** The merged model's path (a file, or a folder for a checkpoint folder or a split GGUF). Required unless `inPlace` or `dryRun`. */
  output?: string;
  /** Write the merged weights into the model's own files, behind an undo journal. @default false */
  inPlace?: boolean;
  /** A mapping file (JSON, the one format every container reads: `parseWeightMapping`). @default none */
  mapping?: string;
  /** Leave out adapter modules with no weight in the model (ONNX, checkpoints). @default false */
  skipMissing?: boolean;
  /** Give a tied weight its own merged copy (ONNX only). @default false */
  untie?: boolean;
  /** The container, when the caller has already found it ({@link modelContainerOf}). @default found from the content */
  container?: ModelContainerKind;
}

/**
 * The container of a model on disk: by content ({@link detectModelContainer}); a path that is missing or whose
 * content says nothing is taken by its name (`.onnx`: ONNX, `.safetensors` or a missing path a checkpoint), so that
 * container's reader reports what is wrong with it; any other file is `MERGE_CONTAINER_UNKNOWN`.
 */
export async function modelContainerOf(path: string): Promise<ModelContainerKind> {
  let kind: ModelContainerKind | undefined;
  try {
    kind = await detectModelContainer({ files: nodeFileAccess(), path });
  } catch (e) {
    if (!isVeraError(e) || e.code !== ErrorCode.IO_NOT_FOUND) throw e;
  }
  if (kind !== undefined) return kind;
  if (path.endsWith(".onnx")) return "onnx";
  const found = await nodeFileAccess().stat(path);
  if (found?.type === "file" && !path.endsWith(".safetensors"))
    throw new VeraError(
      MergeErrorCode.MERGE_CONTAINER_UNKNOWN,
      `${path} is not a model verakit can merge into: its first bytes are those of no ONNX model, safetensors file or GGUF file`,
      {
        path,
        expected: "an ONNX model, a safetensors checkpoint (file or folder) or a GGUF file",
        received: `${found.size} bytes of unknown content`,
      },
    );
  return "checkpoint";
}

/**
 * Merge a VeRA adapter into a model of any container, as an async generator of progress events whose return value
 * is the report: the container is found from the model's content, then its merge runs with these parameters.
 *
 * @throws VeraError `ARG_INVALID` (`untie` for a model that is not ONNX, `skipMissing` for GGUF), and what
 *   mergeOnnx, mergeCheckpoint and mergeGguf throw.
 */
export async function* mergeModelIter(params: MergeModelParams): AsyncGenerator<MergeEvent, MergeReport, void> {
  const { container: given, untie, skipMissing, mapping, ...common } = params;
  const container = given ?? (await modelContainerOf(params.model));
  checkContainerOptions({
    container,
    ...(untie !== undefined ? { untie } : {}),
    ...(skipMissing !== undefined ? { skipMissing } : {}),
  });
  const withMapping = mapping !== undefined ? { mapping } : {};
  if (container === "onnx")
    return yield* mergeOnnxIter({
      ...common,
      ...withMapping,
      untie: untie ?? false,
      skipMissing: skipMissing ?? false,
    });
  if (container === "gguf") return yield* mergeGgufIter({ ...common, ...withMapping });
  return yield* mergeCheckpointIter({ ...common, ...withMapping, skipMissing: skipMissing ?? false });
}

/** {@link mergeModelIter} as a promise; `onProgress` receives the events (a throwing `onProgress` cancels the merge). */
export async function mergeModel(
  params: MergeModelParams & { onProgress?: (e: MergeEvent) => void },
): Promise<MergeReport> {
  return drain(mergeModelIter(params), params.onProgress);
}

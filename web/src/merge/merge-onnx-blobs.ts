/**
 * Merge a VeRA adapter into an ONNX model held as Blobs (browser Files), with the same result bytes as
 * `vera merge` on the same backend: only the merged weights' bytes change. The `.onnx` itself is read
 * whole (protobuf files are at most 2 GiB; weights usually sit in external data), external data files
 * are only read one weight at a time (Blob slices), and each output data file is a Blob composed of
 * slices of the input and the merged weights, so the model is never held in memory.
 */
import { VeraError } from "verakit";
import { buildMergeTasks, projectionSlices, type ComputeBackend } from "verakit/compute";
import type { VeraAdapter } from "verakit/format";
import {
  OnnxErrorCode,
  inlineValueEdits,
  listLinearWeights,
  planOnnxMerge,
  readInlineValues,
  readOnnxModel,
  untieEdits,
  type ByteEdit,
  type LinearWeight,
  type PlannedWeight,
  type WeightMapping,
} from "verakit/onnx";
import type { InputFile } from "../input-files.js";
import { assembleOutputs, type MergedFile } from "./assemble-outputs.js";
import { MERGE_CODES, describePlannedWeights, mergeOrder, type BlobMergeModule } from "./plan-outputs.js";
import { dirOf, locateDataFiles, type DataFile } from "./locate-data-files.js";

export type { MergedFile } from "./assemble-outputs.js";
export { MERGE_CODES, type BlobMergeModule } from "./plan-outputs.js";

/** Parameters of {@link mergeOnnxBlobs}. */
export interface MergeOnnxBlobsParams {
  /** The `.onnx` file. */
  model: InputFile;
  /** Every file given with it (external data files are found by the locations inside the model, relative to its folder). */
  files: readonly InputFile[];
  /** The adapter, or a function that builds it from the model's Linear weights (a PEFT folder needs their shapes). */
  adapter: VeraAdapter | ((weights: readonly LinearWeight[]) => Promise<{ adapter: VeraAdapter; warnings: string[] }>);
  backend: ComputeBackend;
  /** Leave out adapter modules with no weight in this model. @default false */
  skipMissing?: boolean;
  /** Give a shared (tied) weight its own merged copy instead of refusing. @default false */
  untie?: boolean;
  /** Explicit module -> initializer entries (`parseWeightMapping`), as `vera merge --mapping`. @default none */
  mapping?: WeightMapping;
  /** Cancels the merge (MERGE_ABORTED); nothing is produced. */
  signal?: AbortSignal;
  /** Progress after each weight. */
  onProgress?: (p: {
    tensorsDone: number;
    tensors: number;
    bytesDone: number;
    bytesTotal: number;
    current: string;
  }) => void;
}

/** What {@link mergeOnnxBlobs} produced. */
export interface MergeOnnxBlobsResult {
  /** The merged `.onnx` first, then every data file (all of them: copies of the unchanged ones too). */
  files: MergedFile[];
  report: {
    backend: string;
    modules: BlobMergeModule[];
    skipped: string[];
    weights: number;
    bytesMerged: number;
    warnings: string[];
    ms: { total: number; compute: number; read: number };
  };
}

function aborted(): VeraError {
  return new VeraError(MERGE_CODES.MERGE_ABORTED, "merge cancelled; no output was written and the input is unchanged");
}

/**
 * Merge an adapter into an ONNX model given as Blobs. Same plan, same kernel input and same byte
 * edits as `vera merge`, so with the same backend the output files are identical to the CLI's.
 *
 * @throws VeraError: `ONNX_*`, `IO_UNSAFE_PATH`, `IO_NOT_FOUND` (a data file not given), `MERGE_DATA_*`,
 *   `MERGE_OVERFLOW`, `MERGE_ABORTED`, and the adapter's own codes.
 */
export async function mergeOnnxBlobs(params: MergeOnnxBlobsParams): Promise<MergeOnnxBlobsResult> {
  const t0 = performance.now();
  const check = (): void => {
    if (params.signal?.aborted) throw aborted();
  };
  // A protobuf file is at most 2 GiB - 1 (larger models keep their weights in external data files).
  if (params.model.file.size > 2147483647)
    throw new VeraError(
      OnnxErrorCode.ONNX_TOO_LARGE,
      `${params.model.path} is ${params.model.file.size} bytes, beyond protobuf's 2 GiB limit: not an ONNX model file`,
      { path: params.model.path, expected: "<= 2147483647 bytes", received: params.model.file.size },
    );
  const bytes = new Uint8Array(await params.model.file.arrayBuffer());
  const model = readOnnxModel({ bytes });
  check();
  const linear = listLinearWeights({ model });
  const warnings: string[] = [];
  let adapter: VeraAdapter;
  if (typeof params.adapter === "function") {
    const loaded = await params.adapter(linear);
    adapter = loaded.adapter;
    warnings.push(...loaded.warnings);
  } else adapter = params.adapter;
  const plan = planOnnxMerge({
    model,
    modules: adapter.modules,
    weights: linear,
    skipMissing: params.skipMissing ?? false,
    untie: params.untie ?? false,
    ...(params.mapping ? { mapping: params.mapping } : {}),
  });
  warnings.push(...plan.warnings);

  // External data files, found by their locations relative to the model's folder.
  const data = locateDataFiles({ model, modelPath: params.model.path, files: params.files });
  const { byLocation } = data;

  const { modules, bytesMerged } = describePlannedWeights({ weights: plan.weights, data, warnings });

  const { order, appendAt } = mergeOrder({ weights: plan.weights, data });
  const fileOf = (w: PlannedWeight): DataFile => byLocation.get((w.tensor.storage as { location: string }).location)!;

  const sliceFor = projectionSlices(adapter);
  const byName = new Map(adapter.modules.map((m) => [m.name, m]));
  const edits: ByteEdit[] = [];
  let readMs = 0;
  let computeMs = 0;
  let bytesDone = 0;
  for (let i = 0; i < order.length; i++) {
    check();
    const w = order[i]!;
    const tr = performance.now();
    const s = w.tensor.storage;
    const values =
      s.kind === "external"
        ? new Uint8Array(
            await fileOf(w)
              .blob.slice(s.offset, s.offset + w.byteLength)
              .arrayBuffer(),
          )
        : readInlineValues(bytes, w.tensor, w.dtype);
    readMs += performance.now() - tr;
    check();
    const tc = performance.now();
    const { tasks, finish } = buildMergeTasks({ weight: w, values, modules: byName, rank: adapter.rank, sliceFor });
    const results = await params.backend.merge(tasks);
    finish();
    computeMs += performance.now() - tc;
    for (const r of results) {
      const row = modules.find((m) => m.module === r.name);
      if (row) row.maxAbsDelta = r.maxAbsDelta;
    }
    if (s.kind !== "external") {
      edits.push(
        ...(w.untie ? untieEdits({ model, weight: w, data: { values } }) : inlineValueEdits(w.tensor, w.dtype, values)),
      );
    } else {
      const f = fileOf(w);
      const at = appendAt.get(w);
      if (w.untie) {
        const offset = at!;
        edits.push(...untieEdits({ model, weight: w, data: { location: s.location, offset, length: w.byteLength } }));
        f.appended.push({ offset, bytes: new Blob([values as BlobPart]) });
        for (const row of modules)
          if (row.initializer === w.untie.name) row.storage = `external:${s.location}@${offset}`;
      } else f.patches.push({ offset: s.offset, bytes: new Blob([values as BlobPart]) });
    }
    bytesDone += w.byteLength;
    params.onProgress?.({
      tensorsDone: i + 1,
      tensors: order.length,
      bytesDone,
      bytesTotal: bytesMerged,
      current: w.modules.map((m) => m.module).join(", "),
    });
  }
  check();
  const files = assembleOutputs({
    bytes,
    edits,
    modelName: params.model.path.slice(dirOf(params.model.path).length),
    dataFiles: data.byRel.values(),
  });
  return {
    files,
    report: {
      backend: params.backend.name,
      modules,
      skipped: plan.skipped,
      weights: plan.weights.length,
      bytesMerged,
      warnings,
      ms: { total: performance.now() - t0, compute: computeMs, read: readMs },
    },
  };
}

/**
 * A safetensors checkpoint as a merge container: every shard is a data file whose merged weights
 * are patched in place (same file names, same headers, same tensor order: every other byte is
 * copied as it is); the folder's other files (config.json, tokenizer files, the index) are copied
 * unchanged. There is no head file: nothing but data changes.
 */
import type { WeightDtype, WeightLayout } from "../dtypes.js";
import { VeraError } from "../errors.js";
import type { VeraModule } from "../format/types.js";
import { MergeErrorCode } from "./error-codes.js";
import type { ContainerDataFile, ContainerWeight, MergeContainer } from "./container.js";
import type { MergeReportModule } from "./merge-report.js";
import type { Checkpoint, CheckpointShard } from "./read-checkpoint.js";

/** A weight of a checkpoint. */
export interface CheckpointWeight extends ContainerWeight {
  shard: string;
  matchedBy: "exact" | "suffix";
}

/** A checkpoint ready to merge. */
export interface CheckpointContainer extends MergeContainer<CheckpointWeight> {
  /** Adapter modules with no weight in the checkpoint (only with `skipMissing`). */
  readonly skipped: string[];
  /** The report's rows, by module path. */
  reportModules(): MergeReportModule[];
}

/** Parameters of {@link checkpointContainer}. */
export interface CheckpointContainerParams {
  checkpoint: Checkpoint;
  /** The adapter's modules. */
  modules: readonly VeraModule[];
  /** File name of the output for a single-file checkpoint (its copy is named so). @default the input's */
  outputName?: string;
  /** Leave out modules with no weight in the checkpoint instead of refusing. @default false */
  skipMissing?: boolean;
}

/** transformers' Conv1D modules (GPT-2 family) store their weight (in, out). */
const CONV1D = new Set(["c_attn", "c_proj", "c_fc", "q_attn"]);

const MERGEABLE = new Set<string>(["F32", "F16", "BF16"]);

interface Located {
  name: string;
  shard: CheckpointShard;
  matchedBy: "exact" | "suffix";
}

/** The tensor `<module>.weight`, by exact name or (when unique) by a suffix at a `.` boundary either way. */
function locate(module: string, tensors: Map<string, CheckpointShard>): Located | undefined {
  const want = `${module}.weight`;
  const exact = tensors.get(want);
  if (exact) return { name: want, shard: exact, matchedBy: "exact" };
  const hits: string[] = [];
  for (const name of tensors.keys())
    if (name.endsWith(`.${want}`) || want.endsWith(`.${name}`)) if (name.endsWith(".weight")) hits.push(name);
  if (hits.length > 1)
    throw new VeraError(
      MergeErrorCode.MERGE_WEIGHT_NOT_FOUND,
      `adapter module ${JSON.stringify(module)} matches several checkpoint tensors: ${hits.join(", ")}`,
      { path: module, expected: "one tensor", received: hits },
    );
  return hits.length === 1 ? { name: hits[0]!, shard: tensors.get(hits[0]!)!, matchedBy: "suffix" } : undefined;
}

/** The stored layout of a weight, from its shape and the module's kind. */
function layoutOf(module: VeraModule, shape: number[], tensor: string): WeightLayout {
  const [d0, d1] = shape;
  const outIn = shape.length === 2 && d0 === module.outFeatures && d1 === module.inFeatures;
  const inOut = shape.length === 2 && d0 === module.inFeatures && d1 === module.outFeatures;
  const conv1d = CONV1D.has(module.name.split(".").pop()!);
  if (inOut && (conv1d || !outIn)) return "in_out";
  if (outIn) return "out_in";
  throw new VeraError(
    MergeErrorCode.MERGE_WEIGHT_SHAPE,
    `checkpoint tensor ${JSON.stringify(tensor)} has shape [${shape.join(", ")}], but adapter module ${JSON.stringify(module.name)} is ${module.inFeatures} -> ${module.outFeatures}`,
    {
      path: tensor,
      expected: `[${module.outFeatures}, ${module.inFeatures}] (or [${module.inFeatures}, ${module.outFeatures}] for Conv1D)`,
      received: `[${shape.join(", ")}]`,
    },
  );
}

/**
 * Locate every adapter module's weight in the checkpoint.
 *
 * @throws VeraError `MERGE_WEIGHT_NOT_FOUND`, `MERGE_WEIGHT_SHAPE`, `MERGE_WEIGHT_DTYPE`.
 */
export function checkpointContainer(params: CheckpointContainerParams): CheckpointContainer {
  const { checkpoint } = params;
  const tensors = new Map<string, CheckpointShard>();
  for (const s of checkpoint.shards) for (const t of s.header.tensors.keys()) tensors.set(t, s);
  const weights: CheckpointWeight[] = [];
  const skipped: string[] = [];
  const byTensor = new Map<string, string>();
  for (const m of params.modules) {
    const hit = locate(m.name, tensors);
    if (!hit) {
      if (params.skipMissing) {
        skipped.push(m.name);
        continue;
      }
      throw new VeraError(
        MergeErrorCode.MERGE_WEIGHT_NOT_FOUND,
        `adapter module ${JSON.stringify(m.name)} has no weight ${JSON.stringify(`${m.name}.weight`)} in the checkpoint (${checkpoint.main})`,
        { path: m.name, expected: `${m.name}.weight`, received: "no such tensor" },
      );
    }
    const other = byTensor.get(hit.name);
    if (other !== undefined)
      throw new VeraError(
        MergeErrorCode.MERGE_WEIGHT_NOT_FOUND,
        `adapter modules ${JSON.stringify(other)} and ${JSON.stringify(m.name)} both match checkpoint tensor ${JSON.stringify(hit.name)}`,
        { path: hit.name, received: [other, m.name] },
      );
    byTensor.set(hit.name, m.name);
    const info = hit.shard.header.tensors.get(hit.name)!;
    if (!MERGEABLE.has(info.dtype))
      throw new VeraError(
        MergeErrorCode.MERGE_WEIGHT_DTYPE,
        `checkpoint tensor ${JSON.stringify(hit.name)} is ${info.dtype}; only F32, F16 and BF16 weights can be merged`,
        { path: hit.name, expected: "F32 | F16 | BF16", received: info.dtype },
      );
    const layout = layoutOf(m, info.shape, hit.name);
    weights.push({
      name: hit.name,
      dtype: info.dtype as WeightDtype,
      layout,
      inFeatures: m.inFeatures,
      outFeatures: m.outFeatures,
      byteLength: info.dataOffsets[1] - info.dataOffsets[0],
      storage: { kind: "data", file: hit.shard.name, offset: hit.shard.header.dataStart + info.dataOffsets[0] },
      modules: [
        { module: m.name, inFeatures: m.inFeatures, outFeatures: m.outFeatures, outStart: 0, outEnd: m.outFeatures },
      ],
      shard: hit.shard.name,
      matchedBy: hit.matchedBy,
    });
  }
  const dataFiles: ContainerDataFile[] = [
    ...checkpoint.shards.map((s) => ({
      key: s.name,
      parts: [checkpoint.single ? (params.outputName ?? s.name) : s.name],
      path: s.path,
      size: s.size,
      label: s.name,
      tensors: [...s.header.tensors].map(([tensor, info]) => ({
        tensor,
        start: s.header.dataStart + info.dataOffsets[0],
        end: s.header.dataStart + info.dataOffsets[1],
      })),
    })),
    ...checkpoint.others.map((o) => ({
      key: o.name,
      parts: [o.name],
      path: o.path,
      size: o.size,
      label: o.name,
      tensors: [],
    })),
  ];
  return {
    kind: "safetensors",
    weights,
    headSize: 0,
    dataFiles,
    skipped,
    readInline: () => {
      throw new Error("internal: a checkpoint has no inline weights");
    },
    merged: () => {},
    headChanged: () => false,
    head: () => null,
    reportModules: () =>
      weights
        .map((w) => ({
          module: w.modules[0]!.module,
          initializer: w.name,
          matched: w.name,
          matchedBy: w.matchedBy,
          source: "safetensors",
          layout: w.layout,
          dtype: w.dtype,
          storage: `${w.shard}@${(w.storage as { offset: number }).offset}`,
          inFeatures: w.inFeatures,
          outFeatures: w.outFeatures,
          outRange: [0, w.outFeatures] as [number, number],
        }))
        .sort((a, b) => (a.module < b.module ? -1 : a.module > b.module ? 1 : 0)),
  };
}

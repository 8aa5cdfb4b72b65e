/**
 * A safetensors checkpoint as a merge container: every shard is a data file whose merged weights
 * are patched in place (same file names, same headers, same tensor order: every other byte is
 * copied as it is); the folder's other files (config.json, tokenizer files, the index) are copied
 * unchanged. There is no head file: nothing but data changes.
 */
import type { VeraModule } from "../../format/types.js";
import type { ContainerDataFile, ContainerWeight, MergeContainer } from "./container.js";
import type { MergeReportCarried, MergeReportModule } from "./merge-report.js";
import type { WeightMapping } from "../../locate/weight-mapping.js";
import type { CarriedTensorTarget } from "../../peft/carried-tensors.js";
import { carriedReportRows } from "./carried-report.js";
import { carriedValues, refuseCarried, type CarriedRefusal } from "./carried-values.js";
import { checkpointWeightLocator } from "./checkpoint-locator.js";
import type { WeightLocator } from "../../locate/weight-locator.js";
import type { Checkpoint, CheckpointShard } from "./read-checkpoint-files.js";

/** A weight of a checkpoint. */
export interface CheckpointWeight extends ContainerWeight {
  shard: string;
  matchedBy: "exact" | "suffix" | "renamed" | "mapping";
}

/** A checkpoint ready to merge. */
export interface CheckpointContainer extends MergeContainer<CheckpointWeight> {
  /** Adapter modules with no weight in the checkpoint (only with `skipMissing`). */
  readonly skipped: string[];
  /** The report's rows, by module path. */
  reportModules(): MergeReportModule[];
  /** The report's rows of replaced tensors. */
  reportCarried(): MergeReportCarried[];
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
  /** Module path -> tensor (the `--mapping` file, `parseWeightMapping`), consulted first. @default none */
  mapping?: WeightMapping;
  /** Tensors the adapter carries that replace the checkpoint's (`carriedTensorTargets`). @default none */
  carried?: readonly CarriedTensorTarget[];
}

/** Where a tensor's bytes are. */
function storageOf(
  tensors: Map<string, CheckpointShard>,
  name: string,
): { shard: CheckpointShard; byteLength: number; offset: number } {
  const shard = tensors.get(name)!;
  const info = shard.header.tensors.get(name)!;
  return {
    shard,
    byteLength: info.dataOffsets[1] - info.dataOffsets[0],
    offset: shard.header.dataStart + info.dataOffsets[0],
  };
}

/** The weights the adapter's modules merge into, by the locator (modules without one listed in `skipped`). */
function moduleWeights(
  params: CheckpointContainerParams,
  locator: WeightLocator,
  tensors: Map<string, CheckpointShard>,
  skipped: string[],
): CheckpointWeight[] {
  const found = locator.locateModules({ modules: params.modules, skipMissing: params.skipMissing ?? false });
  skipped.push(...found.skipped);
  const weights = new Map<string, CheckpointWeight>();
  for (const m of found.modules) {
    const module = {
      module: m.module,
      inFeatures: m.inFeatures,
      outFeatures: m.outRange[1] - m.outRange[0],
      outStart: m.outRange[0],
      outEnd: m.outRange[1],
    };
    const same = weights.get(m.tensor);
    if (same) {
      same.modules.push(module);
      same.modules.sort((a, b) => a.outStart - b.outStart);
      continue;
    }
    const { shard, byteLength, offset } = storageOf(tensors, m.tensor);
    weights.set(m.tensor, {
      name: m.tensor,
      dtype: m.dtype,
      layout: m.layout,
      inFeatures: m.inFeatures,
      outFeatures: m.outFeatures,
      byteLength,
      storage: { kind: "data", file: shard.name, offset },
      modules: [module],
      shard: shard.name,
      matchedBy: m.matchedBy,
    });
  }
  return [...weights.values()];
}

/**
 * The checkpoint tensors the adapter's carried tensors replace (the locator's `locateParameter`), none
 * of them a tensor the merge also changes.
 *
 * @throws VeraError `MERGE_CARRIED_TENSOR` naming every tensor that cannot be placed.
 */
function carriedWeights(
  params: CheckpointContainerParams,
  locator: WeightLocator,
  tensors: Map<string, CheckpointShard>,
  merged: readonly CheckpointWeight[],
): CheckpointWeight[] {
  const refusals: CarriedRefusal[] = [];
  const out: CheckpointWeight[] = [];
  const used = new Set(merged.map((w) => w.name));
  for (const target of params.carried ?? []) {
    const loc =
      target.kind === "other"
        ? "not a modules_to_save parameter or a trainable bias: no merge knows where it belongs"
        : locator.locateParameter({ param: target.param, shape: target.tensor.shape });
    if (typeof loc === "string" || used.has(loc.tensor)) {
      const reason =
        typeof loc === "string" ? loc : `the checkpoint's ${loc.tensor} also takes another change of this merge`;
      refusals.push({ target, reason });
      continue;
    }
    used.add(loc.tensor);
    const { shard, byteLength, offset } = storageOf(tensors, loc.tensor);
    const placement = { target, tensor: loc.tensor, dtype: loc.dtype, transposed: false, matchedBy: loc.matchedBy };
    out.push({
      name: loc.tensor,
      dtype: loc.dtype,
      layout: "out_in",
      inFeatures: 0,
      outFeatures: 0,
      byteLength,
      storage: { kind: "data", file: shard.name, offset },
      modules: [],
      shard: shard.name,
      matchedBy: loc.matchedBy === "renamed" ? "renamed" : loc.matchedBy === "suffix" ? "suffix" : "exact",
      carried: { values: carriedValues({ tensor: target.tensor, dtype: loc.dtype }), placement },
    });
  }
  refuseCarried(refusals, params.checkpoint.main);
  return out;
}

/** Every shard and every other file of the checkpoint as data files. */
function dataFilesOf(checkpoint: Checkpoint, outputName: string | undefined): ContainerDataFile[] {
  return [
    ...checkpoint.shards.map((s) => ({
      key: s.name,
      parts: [checkpoint.single ? (outputName ?? s.name) : s.name],
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
}

/**
 * Locate every adapter module's weight, and every tensor the adapter carries, in the checkpoint.
 *
 * @throws VeraError `MERGE_WEIGHT_NOT_FOUND`, `MERGE_WEIGHT_SHAPE`, `MERGE_WEIGHT_DTYPE`, `MERGE_CARRIED_TENSOR`.
 */
export function checkpointContainer(params: CheckpointContainerParams): CheckpointContainer {
  const { checkpoint } = params;
  const tensors = new Map<string, CheckpointShard>();
  for (const s of checkpoint.shards) for (const t of s.header.tensors.keys()) tensors.set(t, s);
  const locator = checkpointWeightLocator({
    tensors: new Map([...tensors].map(([name, shard]) => [name, shard.header.tensors.get(name)!])),
    label: checkpoint.main,
    ...(checkpoint.modelType !== undefined ? { modelType: checkpoint.modelType } : {}),
    ...(params.mapping ? { mapping: params.mapping } : {}),
  });
  const skipped: string[] = [];
  const merged = moduleWeights(params, locator, tensors, skipped);
  const weights = [...merged, ...carriedWeights(params, locator, tensors, merged)];
  return {
    kind: "safetensors",
    weights,
    headSize: 0,
    dataFiles: dataFilesOf(checkpoint, params.outputName),
    skipped,
    readInline: () => {
      throw new Error("internal: a checkpoint has no inline weights");
    },
    prepare: (w, values) => {
      if (w.carried) values.set(w.carried.values);
    },
    merged: () => {},
    headChanged: () => false,
    head: () => null,
    reportCarried: () => carriedReportRows(weights),
    reportModules: () =>
      merged
        .flatMap((w) =>
          w.modules.map((m) => ({
            module: m.module,
            initializer: w.name,
            matched: w.name,
            matchedBy: w.matchedBy,
            source: "safetensors",
            layout: w.layout,
            dtype: w.dtype,
            storage: `${w.shard}@${(w.storage as { offset: number }).offset}`,
            inFeatures: m.inFeatures,
            outFeatures: m.outFeatures,
            outRange: [m.outStart, m.outEnd] as [number, number],
          })),
        )
        .sort((a, b) => (a.module < b.module ? -1 : a.module > b.module ? 1 : 0)),
  };
}

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
import type { MergeReportCarried, MergeReportModule } from "./merge-report.js";
import type { WeightMapping } from "../weight-mapping.js";
import type { CarriedTensorTarget } from "../peft/carried-tensors.js";
import { carriedReportRows } from "./carried-report.js";
import { carriedValues, refuseCarried, shapeText, type CarriedRefusal } from "./carried-values.js";
import { matchCheckpointName } from "./checkpoint-names.js";
import type { Checkpoint, CheckpointShard } from "./read-checkpoint.js";

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

/** transformers' Conv1D modules (GPT-2 family) store their weight (in, out). */
const CONV1D = new Set(["c_attn", "c_proj", "c_fc", "q_attn"]);

const MERGEABLE = new Set<string>(["F32", "F16", "BF16"]);

interface Located {
  name: string;
  shard: CheckpointShard;
  matchedBy: CheckpointWeight["matchedBy"];
  /** Rows [start, end) of the tensor (a mapping's outRange). */
  outRange?: [number, number];
}

/**
 * The tensor of a module: the mapping's, else `<module>.weight` by the shared path rules over the
 * stored names and the names transformers loads them as (`matchCheckpointName`).
 */
function locate(
  module: string,
  tensors: Map<string, CheckpointShard>,
  modelType: string | undefined,
  mapping: WeightMapping | undefined,
): Located | undefined {
  const m = mapping && Object.hasOwn(mapping, module) ? mapping[module] : undefined;
  if (m) {
    const name = tensors.has(m.initializer) ? m.initializer : `${m.initializer}.weight`;
    const shard = tensors.get(name);
    if (!shard)
      throw new VeraError(
        MergeErrorCode.MERGE_WEIGHT_NOT_FOUND,
        `the mapping places adapter module ${JSON.stringify(module)} in tensor ${JSON.stringify(m.initializer)}, which the checkpoint does not have`,
        { path: module, expected: "a tensor of the checkpoint", received: m.initializer },
      );
    return { name, shard, matchedBy: "mapping", ...(m.outRange ? { outRange: m.outRange } : {}) };
  }
  const hits = matchCheckpointName(`${module}.weight`, tensors.keys(), modelType);
  if (hits.length > 1)
    throw new VeraError(
      MergeErrorCode.MERGE_WEIGHT_NOT_FOUND,
      `adapter module ${JSON.stringify(module)} matches several checkpoint tensors: ${hits.map((h) => h.tensor).join(", ")}; choose one with a mapping file`,
      { path: module, expected: "one tensor", received: hits.map((h) => h.tensor) },
    );
  const hit = hits[0];
  return hit ? { name: hit.tensor, shard: tensors.get(hit.tensor)!, matchedBy: hit.matchedBy } : undefined;
}

/** The stored layout of a weight and its whole out features, from its shape and the module's kind. */
function layoutOf(module: VeraModule, shape: number[], tensor: string, outRange?: [number, number]): WeightLayout {
  const [d0, d1] = shape;
  const out = outRange ? outRange[1] - outRange[0] : module.outFeatures;
  const fits = (total: number | undefined): boolean =>
    outRange ? total !== undefined && total >= outRange[1] : total === out;
  const outIn = shape.length === 2 && fits(d0) && d1 === module.inFeatures && out === module.outFeatures;
  const inOut = shape.length === 2 && d0 === module.inFeatures && fits(d1) && out === module.outFeatures;
  const conv1d = CONV1D.has(module.name.split(".").pop()!);
  if (inOut && (conv1d || !outIn)) return "in_out";
  if (outIn) return "out_in";
  throw new VeraError(
    MergeErrorCode.MERGE_WEIGHT_SHAPE,
    `checkpoint tensor ${JSON.stringify(tensor)} has shape [${shape.join(", ")}], but adapter module ${JSON.stringify(module.name)} is ${module.inFeatures} -> ${module.outFeatures}${outRange ? ` in rows [${outRange[0]}, ${outRange[1]})` : ""}`,
    {
      path: tensor,
      expected: `[${module.outFeatures}, ${module.inFeatures}] (or [${module.inFeatures}, ${module.outFeatures}] for Conv1D)`,
      received: `[${shape.join(", ")}]`,
    },
  );
}

/** The weights the adapter's modules merge into (modules without one listed in `skipped`, or refused). */
function moduleWeights(
  params: CheckpointContainerParams,
  tensors: Map<string, CheckpointShard>,
  skipped: string[],
): CheckpointWeight[] {
  const { checkpoint } = params;
  const weights: CheckpointWeight[] = [];
  const byTensor = new Map<string, string>();
  for (const m of params.modules) {
    const hit = locate(m.name, tensors, checkpoint.modelType, params.mapping);
    if (!hit) {
      if (params.skipMissing) {
        skipped.push(m.name);
        continue;
      }
      throw new VeraError(
        MergeErrorCode.MERGE_WEIGHT_NOT_FOUND,
        `adapter module ${JSON.stringify(m.name)} has no weight ${JSON.stringify(`${m.name}.weight`)} in the checkpoint (${checkpoint.main}); give its tensor in a mapping file`,
        { path: m.name, expected: `${m.name}.weight`, received: "no such tensor" },
      );
    }
    const other = byTensor.get(hit.name);
    if (other !== undefined && !hit.outRange)
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
    const layout = layoutOf(m, info.shape, hit.name, hit.outRange);
    const [outStart, outEnd] = hit.outRange ?? [0, m.outFeatures];
    const module = { module: m.name, inFeatures: m.inFeatures, outFeatures: m.outFeatures, outStart, outEnd };
    const same = weights.find((w) => w.name === hit.name);
    if (same) {
      same.modules.push(module);
      same.modules.sort((a, b) => a.outStart - b.outStart);
      continue;
    }
    weights.push({
      name: hit.name,
      dtype: info.dtype as WeightDtype,
      layout,
      inFeatures: m.inFeatures,
      outFeatures: layout === "out_in" ? info.shape[0]! : info.shape[1]!,
      byteLength: info.dataOffsets[1] - info.dataOffsets[0],
      storage: { kind: "data", file: hit.shard.name, offset: hit.shard.header.dataStart + info.dataOffsets[0] },
      modules: [module],
      shard: hit.shard.name,
      matchedBy: hit.matchedBy,
    });
  }
  return weights;
}

/**
 * The checkpoint tensors the adapter's carried tensors replace: found by name (stored or as loaded),
 * F32/F16/BF16, of the adapter tensor's shape, not a tensor the merge also changes.
 *
 * @throws VeraError `MERGE_CARRIED_TENSOR` naming every tensor that cannot be placed.
 */
function carriedWeights(
  params: CheckpointContainerParams,
  tensors: Map<string, CheckpointShard>,
  merged: readonly CheckpointWeight[],
): CheckpointWeight[] {
  const refusals: CarriedRefusal[] = [];
  const out: CheckpointWeight[] = [];
  const used = new Set(merged.map((w) => w.name));
  for (const target of params.carried ?? []) {
    const refuse = (reason: string): void => void refusals.push({ target, reason });
    if (target.kind === "other") {
      refuse("not a modules_to_save parameter or a trainable bias: no merge knows where it belongs");
      continue;
    }
    const hits = matchCheckpointName(target.param, tensors.keys(), params.checkpoint.modelType);
    if (hits.length !== 1) {
      refuse(
        hits.length === 0
          ? `no tensor ${target.param} in the checkpoint (a tied weight is not stored)`
          : `several checkpoint tensors match: ${hits.map((h) => h.tensor).join(", ")}`,
      );
      continue;
    }
    const hit = hits[0]!;
    const shard = tensors.get(hit.tensor)!;
    const info = shard.header.tensors.get(hit.tensor)!;
    const shape = target.tensor.shape;
    if (!MERGEABLE.has(info.dtype)) refuse(`the checkpoint's ${hit.tensor} is ${info.dtype}`);
    else if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i]))
      refuse(`the checkpoint's ${hit.tensor} has shape ${shapeText(info.shape)}, the adapter's ${shapeText(shape)}`);
    else if (used.has(hit.tensor)) refuse(`the checkpoint's ${hit.tensor} also takes another change of this merge`);
    else {
      used.add(hit.tensor);
      const dtype = info.dtype as WeightDtype;
      const placement = { target, tensor: hit.tensor, dtype, transposed: false, matchedBy: hit.matchedBy };
      out.push({
        name: hit.tensor,
        dtype,
        layout: "out_in",
        inFeatures: 0,
        outFeatures: 0,
        byteLength: info.dataOffsets[1] - info.dataOffsets[0],
        storage: { kind: "data", file: shard.name, offset: shard.header.dataStart + info.dataOffsets[0] },
        modules: [],
        shard: shard.name,
        matchedBy: hit.matchedBy === "renamed" ? "renamed" : hit.matchedBy,
        carried: { values: carriedValues({ tensor: target.tensor, dtype }), placement },
      });
    }
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
  const skipped: string[] = [];
  const merged = moduleWeights(params, tensors, skipped);
  const weights = [...merged, ...carriedWeights(params, tensors, merged)];
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

/**
 * The weight locator of a safetensors checkpoint (headers only, pure): a module's weight is
 * `<module>.weight` found by the shared path rules over the stored names and the names transformers
 * loads them as (`matchCheckpointName`), or the mapping's tensor; a parameter likewise by its name.
 */
import type { WeightDtype, WeightLayout } from "../../dtypes.js";
import { VeraError } from "../../errors.js";
import type { LocatedModule, LocatedParameter, ModuleQuery, WeightLocator } from "../../locate/weight-locator.js";
import type { WeightMapping } from "../../locate/weight-mapping.js";
import { matchCheckpointName } from "../../locate/checkpoint-names.js";
import { MergeErrorCode } from "../error-codes.js";

/** A checkpoint tensor as its header describes it. */
export interface CheckpointTensorInfo {
  dtype: string;
  shape: number[];
}

/** Parameters of {@link checkpointWeightLocator}. */
export interface CheckpointWeightLocatorParams {
  /** Every tensor of the checkpoint (all shards), by name. */
  tensors: ReadonlyMap<string, CheckpointTensorInfo>;
  /** config.json's `model_type` (names the renaming rules). @default none */
  modelType?: string;
  /** Module path -> tensor (`.weight` may be left out), consulted first. @default none */
  mapping?: WeightMapping;
  /** The checkpoint, for messages. @default "checkpoint" */
  label?: string;
}

/** transformers' Conv1D modules (GPT-2 family) store their weight (in, out). */
const CONV1D = new Set(["c_attn", "c_proj", "c_fc", "q_attn"]);

const MERGEABLE = new Set<string>(["F32", "F16", "BF16"]);

/** The stored layout and the whole tensor's out features, from its shape and the module's kind. */
function layoutOf(
  module: ModuleQuery,
  shape: number[],
  tensor: string,
  outRange?: [number, number],
): { layout: WeightLayout; outFeatures: number } {
  const [d0, d1] = shape;
  const out = outRange ? outRange[1] - outRange[0] : module.outFeatures;
  const fits = (total: number | undefined): boolean =>
    outRange ? total !== undefined && total >= outRange[1] : total === out;
  const ok = shape.length === 2 && out === module.outFeatures;
  const outIn = ok && fits(d0) && d1 === module.inFeatures;
  const inOut = ok && d0 === module.inFeatures && fits(d1);
  const conv1d = CONV1D.has(module.name.split(".").pop()!);
  if (inOut && (conv1d || !outIn)) return { layout: "in_out", outFeatures: d1! };
  if (outIn) return { layout: "out_in", outFeatures: d0! };
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

/**
 * The weight locator of a checkpoint's headers.
 *
 * `locateModules` throws VeraError `MERGE_WEIGHT_NOT_FOUND` (no tensor, several, two modules on one),
 * `MERGE_WEIGHT_SHAPE`, `MERGE_WEIGHT_DTYPE`.
 */
export function checkpointWeightLocator(params: CheckpointWeightLocatorParams): WeightLocator {
  const { tensors } = params;
  const label = params.label ?? "checkpoint";
  const module = (m: ModuleQuery): LocatedModule | undefined => {
    const mapped = params.mapping && Object.hasOwn(params.mapping, m.name) ? params.mapping[m.name] : undefined;
    let name: string;
    let matched: string;
    let matchedBy: LocatedModule["matchedBy"];
    if (mapped) {
      name = tensors.has(mapped.initializer) ? mapped.initializer : `${mapped.initializer}.weight`;
      if (!tensors.has(name))
        throw new VeraError(
          MergeErrorCode.MERGE_WEIGHT_NOT_FOUND,
          `the mapping places adapter module ${JSON.stringify(m.name)} in tensor ${JSON.stringify(mapped.initializer)}, which the checkpoint does not have`,
          { path: m.name, expected: "a tensor of the checkpoint", received: mapped.initializer },
        );
      [matched, matchedBy] = [name, "mapping"];
    } else {
      const hits = matchCheckpointName(`${m.name}.weight`, tensors.keys(), params.modelType);
      if (hits.length > 1)
        throw new VeraError(
          MergeErrorCode.MERGE_WEIGHT_NOT_FOUND,
          `adapter module ${JSON.stringify(m.name)} matches several checkpoint tensors: ${hits.map((h) => h.tensor).join(", ")}; choose one with a mapping file`,
          { path: m.name, expected: "one tensor", received: hits.map((h) => h.tensor) },
        );
      if (hits.length === 0) return undefined;
      [name, matched, matchedBy] = [hits[0]!.tensor, hits[0]!.matched, hits[0]!.matchedBy];
    }
    const info = tensors.get(name)!;
    if (!MERGEABLE.has(info.dtype))
      throw new VeraError(
        MergeErrorCode.MERGE_WEIGHT_DTYPE,
        `checkpoint tensor ${JSON.stringify(name)} is ${info.dtype}; only F32, F16 and BF16 weights can be merged`,
        { path: name, expected: "F32 | F16 | BF16", received: info.dtype },
      );
    const outRange = mapped?.outRange;
    const { layout, outFeatures } = layoutOf(m, info.shape, name, outRange);
    return {
      module: m.name,
      tensor: name,
      matched,
      matchedBy,
      layout,
      dtype: info.dtype as WeightDtype,
      inFeatures: m.inFeatures,
      outFeatures,
      outRange: outRange ?? [0, m.outFeatures],
    };
  };
  return {
    container: "safetensors",
    locateModules({ modules, skipMissing }) {
      const located: LocatedModule[] = [];
      const skipped: string[] = [];
      const byTensor = new Map<string, LocatedModule>();
      for (const m of modules) {
        const hit = module(m);
        if (!hit) {
          if (skipMissing) {
            skipped.push(m.name);
            continue;
          }
          throw new VeraError(
            MergeErrorCode.MERGE_WEIGHT_NOT_FOUND,
            `adapter module ${JSON.stringify(m.name)} has no weight ${JSON.stringify(`${m.name}.weight`)} in the checkpoint (${label}); give its tensor in a mapping file`,
            { path: m.name, expected: `${m.name}.weight`, received: "no such tensor" },
          );
        }
        const other = byTensor.get(hit.tensor);
        if (other && (other.matchedBy !== "mapping" || hit.matchedBy !== "mapping"))
          throw new VeraError(
            MergeErrorCode.MERGE_WEIGHT_NOT_FOUND,
            `adapter modules ${JSON.stringify(other.module)} and ${JSON.stringify(m.name)} both match checkpoint tensor ${JSON.stringify(hit.tensor)}`,
            { path: hit.tensor, received: [other.module, m.name] },
          );
        byTensor.set(hit.tensor, hit);
        located.push(hit);
      }
      return { modules: located, skipped, warnings: [] };
    },
    locateParameter({ param, shape }): LocatedParameter | string {
      const hits = matchCheckpointName(param, tensors.keys(), params.modelType);
      if (hits.length === 0) return `no tensor ${param} in the checkpoint (a tied weight is not stored)`;
      if (hits.length > 1) return `several checkpoint tensors match: ${hits.map((h) => h.tensor).join(", ")}`;
      const hit = hits[0]!;
      const info = tensors.get(hit.tensor)!;
      if (!MERGEABLE.has(info.dtype)) return `the checkpoint's ${hit.tensor} is ${info.dtype}`;
      if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i]))
        return `the checkpoint's ${hit.tensor} has shape [${info.shape.join(", ")}], the adapter's [${shape.join(", ")}]`;
      return {
        param,
        tensor: hit.tensor,
        matchedBy: hit.matchedBy,
        dtype: info.dtype as WeightDtype,
        transposed: false,
      };
    },
  };
}

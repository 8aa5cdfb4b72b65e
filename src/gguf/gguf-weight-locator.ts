import type { LocatedModule, ModuleQuery, WeightLocator } from "../locate/weight-locator.js";
import { locateGgufParameter, type GgufParameterLocation } from "./locate-gguf-parameter.js";
import { ggufRangesByName, locateGgufWeights, type GgufWeightPlan } from "./locate-gguf-weights.js";
import { loraBaseFromGguf } from "./lora-base.js";
import { ggufTensorName, type GgufNameMapping } from "./tensor-names.js";
import type { GgufFile } from "./types.js";

/** Parameters of {@link ggufWeightLocator}. */
export interface GgufWeightLocatorParams {
  /** The model's header (the first part's, for a split GGUF). */
  file: GgufFile;
  /** Every part of a split GGUF, in order, the first being `file`. @default [file] */
  parts?: readonly GgufFile[];
  /** Module path -> llama.cpp tensor name, consulted first. @default none */
  mapping?: GgufNameMapping;
  /** For messages (the file path). @default "gguf" */
  label?: string;
}

/** The GGUF weight locator, with the GGUF detail the merge needs (parts, byte ranges, q/k permutation). */
export interface GgufWeightLocator extends WeightLocator {
  /** The modules' tensors (`locateGgufWeights`): what `locateModules` answers, with byte ranges. */
  plan(params: { modules: readonly ModuleQuery[] }): GgufWeightPlan;
  /** A parameter's tensor with its byte range (`locateGgufParameter`). */
  parameter(params: { param: string; shape: readonly number[] }): GgufParameterLocation | string;
}

/**
 * The weight locator of a GGUF model: modules and parameters under llama.cpp's tensor names for the
 * file's architecture (or the mapping), shapes as ggml's reversed ne, F32/F16/BF16 only.
 */
export function ggufWeightLocator(params: GgufWeightLocatorParams): GgufWeightLocator {
  const label = params.label ?? "gguf";
  const mapping = params.mapping;
  let ranges: ReturnType<typeof ggufRangesByName> | undefined;
  const base = loraBaseFromGguf(params.file, label);
  const plan = (p: { modules: readonly ModuleQuery[] }): GgufWeightPlan =>
    locateGgufWeights({
      file: params.file,
      modules: [...p.modules],
      label,
      ...(params.parts !== undefined ? { parts: params.parts } : {}),
      ...(mapping ? { mapping } : {}),
    });
  const parameter = (p: { param: string; shape: readonly number[] }): GgufParameterLocation | string => {
    ranges ??= ggufRangesByName(params.file, params.parts, label);
    return locateGgufParameter({
      architecture: base.architecture,
      ranges,
      param: p.param,
      shape: p.shape,
      nHead: base.nHead ?? 0,
      nHeadKv: base.nHeadKv ?? base.nHead ?? 0,
      ...(mapping ? { mapping } : {}),
    });
  };
  return {
    container: "gguf",
    plan,
    parameter,
    locateModules(p) {
      const modules: LocatedModule[] = plan(p).weights.map((w) => {
        const [inFeatures, outFeatures] = w.ne as [number, number];
        const mapped =
          mapping !== undefined && ggufTensorName({ architecture: "", module: w.module, mapping }) !== undefined;
        return {
          module: w.module,
          tensor: w.name,
          matched: w.name,
          matchedBy: mapped ? "mapping" : "exact",
          layout: "out_in",
          dtype: w.dtype,
          inFeatures,
          outFeatures,
          outRange: [0, outFeatures],
        };
      });
      return { modules, skipped: [], warnings: [] };
    },
    locateParameter(p) {
      const loc = parameter(p);
      if (typeof loc === "string") return loc;
      return { param: p.param, tensor: loc.name, matchedBy: loc.matchedBy, dtype: loc.dtype, transposed: false };
    },
  };
}

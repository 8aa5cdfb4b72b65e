import type { LocatedModule, ModuleQuery, WeightLocator } from "../locate/weight-locator.js";
import type { WeightMapping } from "../locate/weight-mapping.js";
import { indexGraph, type GraphIndex } from "./graph-index.js";
import { listLinearWeights, type LinearWeight } from "./list-linear-weights.js";
import { locateOnnxParameter, type OnnxParameterLocation } from "./locate-onnx-parameter.js";
import type { OnnxMergePlan } from "./merge-plan-types.js";
import { planOnnxMerge } from "./plan-onnx-merge.js";
import type { OnnxModel } from "./types.js";

/** Parameters of {@link onnxWeightLocator}. */
export interface OnnxWeightLocatorParams {
  /** The parsed model. */
  model: OnnxModel;
  /** Its Linear weights. @default listLinearWeights({ model }) */
  weights?: LinearWeight[];
  /** Module -> initializer entries, consulted first. @default none */
  mapping?: WeightMapping;
  /** Give a shared weight's adapted node its own copy instead of refusing. @default false */
  untie?: boolean;
}

/** The ONNX weight locator, with the ONNX detail the merge and graft need. */
export interface OnnxWeightLocator extends WeightLocator {
  readonly model: OnnxModel;
  readonly index: GraphIndex;
  readonly weights: readonly LinearWeight[];
  /** The merge plan of the modules (`planOnnxMerge`): what `locateModules` answers, with the initializers. */
  plan(params: { modules: readonly ModuleQuery[]; skipMissing?: boolean }): OnnxMergePlan;
  /** A parameter's initializer, with the node input to untie it at (`locateOnnxParameter`). */
  parameter(params: { param: string; shape: readonly number[] }): OnnxParameterLocation | string;
}

/**
 * The weight locator of an ONNX model: modules by `planOnnxMerge` (module paths from the exporter's
 * metadata or names, the shared suffix rules, fused weights as themselves and by parts, the mapping),
 * parameters by `locateOnnxParameter`.
 */
export function onnxWeightLocator(params: OnnxWeightLocatorParams): OnnxWeightLocator {
  const { model } = params;
  const weights = params.weights ?? listLinearWeights({ model });
  const index = indexGraph(model);
  const plan = (p: { modules: readonly ModuleQuery[]; skipMissing?: boolean }): OnnxMergePlan =>
    planOnnxMerge({
      model,
      modules: [...p.modules],
      weights,
      ...(p.skipMissing !== undefined ? { skipMissing: p.skipMissing } : {}),
      ...(params.untie !== undefined ? { untie: params.untie } : {}),
      ...(params.mapping !== undefined ? { mapping: params.mapping } : {}),
    });
  const parameter = (p: { param: string; shape: readonly number[] }): OnnxParameterLocation | string =>
    locateOnnxParameter({ model, index, weights, param: p.param, shape: p.shape });
  return {
    container: "onnx",
    model,
    index,
    weights,
    plan,
    parameter,
    locateModules(p) {
      const r = plan(p);
      const modules: LocatedModule[] = r.weights.flatMap((w) =>
        w.modules.map((m) => ({
          module: m.module,
          tensor: w.untie?.name ?? w.initializer,
          matched: m.matched,
          matchedBy: m.matchedBy,
          layout: w.layout,
          dtype: w.dtype,
          inFeatures: w.inFeatures,
          outFeatures: w.outFeatures,
          outRange: [m.outStart, m.outEnd] as [number, number],
        })),
      );
      return { modules, skipped: r.skipped, warnings: r.warnings };
    },
    locateParameter(p) {
      const loc = parameter(p);
      if (typeof loc === "string") return loc;
      return {
        param: p.param,
        tensor: loc.tensor.name,
        matchedBy: loc.matchedBy === "linear" ? `linear (${loc.matched})` : loc.matchedBy,
        dtype: loc.dtype,
        transposed: loc.transposed,
        ...(loc.use ? { shared: true } : {}),
      };
    },
  };
}

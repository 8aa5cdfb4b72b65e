/**
 * Import stage 4: every module's in_features / out_features / layout, from the base model's shapes or,
 * without one, from what the adapter proves (see inferInFeatures).
 * @internal
 */
import { VeraError } from "../../errors.js";
import type { Layout, VeraModule } from "../../format/types.js";
import { inferInFeatures } from "../base-shapes-from-adapter.js";
import type { BaseShapes } from "../base-shapes.js";
import { PeftErrorCode } from "../error-codes.js";
import { KEY_VERA_A } from "../internal.js";
import type { PyObject } from "../py-json.js";
import { BaseIndex, chooseShape } from "../resolve-base.js";
import type { ModuleVectors } from "./read-vera-vectors.js";

/** What {@link resolveDimensions} decided. */
export interface ResolvedDimensions {
  modules: VeraModule[];
  maxIn: number;
  maxOut: number;
  /** Where in_features came from, for people. */
  dimensionSource: string;
  /** Whether in_features were inferred from the adapter alone (no base given). */
  inferred: boolean;
  /** The transformers class an inference relied on. */
  architecture?: string;
}

/** Size every module from the base (PEFT_BASE_MODULE_MISSING, PEFT_BASE_SHAPE). */
function fromBase(params: {
  base: BaseShapes;
  vectors: ModuleVectors[];
  fanInFanOut: boolean;
  storedMaxIn: number | undefined;
}): VeraModule[] {
  const { base, storedMaxIn } = params;
  const index = new BaseIndex(base);
  return params.vectors.map((p) => {
    const bm = index.find(p.name);
    if (!bm)
      throw new VeraError(
        PeftErrorCode.PEFT_BASE_MODULE_MISSING,
        `module "${p.name}" is not in the base model (${base.description})`,
        {
          path: p.name,
          expected: "a Linear/Conv1D module of the base with this path",
          received: "absent",
        },
      );
    const s = chooseShape({
      path: p.name,
      module: bm,
      outFeatures: p.lambdaB.length,
      fanInFanOut: params.fanInFanOut,
      baseLabel: base.description,
    });
    if (storedMaxIn !== undefined && s.inFeatures > storedMaxIn)
      throw new VeraError(
        PeftErrorCode.PEFT_BASE_SHAPE,
        `module "${p.name}": the base gives in_features ${s.inFeatures} but vera_A has only ${storedMaxIn} columns`,
        {
          path: p.name,
          expected: `<= ${storedMaxIn}`,
          received: s.inFeatures,
        },
      );
    return {
      name: p.name,
      inFeatures: s.inFeatures,
      outFeatures: s.outFeatures,
      layout: s.layout,
      lambdaD: p.lambdaD,
      lambdaB: p.lambdaB,
    };
  });
}

/**
 * Dimensions of every module, then the check that ties them to the stored projections: PEFT sizes vera_A /
 * vera_B by the largest in/out features of the adapted modules, so (max_in, max_out) must equal the file's
 * (PEFT_BASE_SHAPE). Without a base and without proof, PEFT_BASE_REQUIRED says why.
 */
export function resolveDimensions(params: {
  vectors: ModuleVectors[];
  config: PyObject;
  fanInFanOut: boolean;
  base?: BaseShapes;
  stored?: { maxIn: number; maxOut: number };
}): ResolvedDimensions {
  const { vectors, stored } = params;
  let modules: VeraModule[];
  let dimensionSource: string;
  let architecture: string | undefined;
  if (params.base) {
    modules = fromBase({
      base: params.base,
      vectors,
      fanInFanOut: params.fanInFanOut,
      storedMaxIn: stored?.maxIn,
    });
    dimensionSource = `base: ${params.base.description}`;
  } else {
    const inferred = inferInFeatures({
      config: params.config,
      modules: vectors.map((v) => ({ name: v.name, outFeatures: v.lambdaB.length })),
      ...(stored ? { storedMaxIn: stored.maxIn } : {}),
    });
    if (!inferred.ok)
      throw new VeraError(
        PeftErrorCode.PEFT_BASE_REQUIRED,
        `in_features of ${vectors.length} module(s) cannot be inferred from the adapter alone (PEFT does not store them${stored === undefined ? "" : "; vera_A only gives their maximum"}; ${inferred.reason}): pass the base model (a transformers config.json, model.safetensors or its index, or an ONNX model)`,
        { path: vectors[0]?.name ?? "", expected: "a base model", received: "none" },
      );
    const layout: Layout = params.fanInFanOut ? "conv1d" : "linear";
    modules = vectors.map((v, k) => ({
      name: v.name,
      inFeatures: inferred.inFeatures[k]!,
      outFeatures: v.lambdaB.length,
      layout,
      lambdaD: v.lambdaD,
      lambdaB: v.lambdaB,
    }));
    dimensionSource = inferred.reason;
    architecture = inferred.architecture;
  }
  const maxIn = Math.max(...modules.map((m) => m.inFeatures));
  const maxOut = Math.max(...modules.map((m) => m.outFeatures));
  if (stored !== undefined && (maxIn !== stored.maxIn || maxOut !== stored.maxOut))
    throw new VeraError(
      PeftErrorCode.PEFT_BASE_SHAPE,
      `the stored projections are sized (max_in ${stored.maxIn}, max_out ${stored.maxOut}) but the modules' largest dims are (${maxIn}, ${maxOut}); PEFT sizes them by the largest in/out features of the adapted modules, so the base disagrees with the adapter`,
      {
        path: KEY_VERA_A,
        expected: `max_in ${maxIn}, max_out ${maxOut}`,
        received: `max_in ${stored.maxIn}, max_out ${stored.maxOut}`,
      },
    );
  return {
    modules,
    maxIn,
    maxOut,
    dimensionSource,
    inferred: !params.base,
    ...(architecture !== undefined ? { architecture } : {}),
  };
}

/**
 * Internal: the carried tensors of an adapter (modules_to_save parameters, trainable biases) placed in
 * an ONNX model: each one's initializer located (the locator's `parameter`), and where the initializer has
 * other users too (an exporter folds equal tensors into one; a tied weight), a copy of its own for the
 * parameter's node input, so no other module changes (PEFT's saved module is its own copy as well).
 */
import { locateAddableBias, type AddableBias } from "../../onnx/add-bias.js";
import { dtypeSize, numel } from "../../onnx/inline-values.js";
import type { OnnxWeightLocator } from "../../onnx/onnx-weight-locator.js";
import type { PlannedWeight } from "../../onnx/plan-onnx-merge.js";
import type { CarriedTensorTarget } from "../../peft/carried-tensors.js";
import { carriedValues, refuseCarried, type CarriedPlacement, type CarriedRefusal } from "./carried-values.js";

/** A carried tensor placed in an ONNX model. */
export interface OnnxCarried {
  /** The initializer (with `untie` set when it gets a copy of its own), as the planner's weights are. */
  planned: PlannedWeight;
  placement: CarriedPlacement;
  /** The stored bytes it takes. */
  values: Uint8Array;
}

/** A carried bias the model holds no tensor for, added to it (see `addBiasEdits`). */
export interface OnnxAddedBias {
  bias: AddableBias;
  /** The new initializer's name. */
  name: string;
  /** A fresh name for the MatMul's output. */
  matmulOut: string;
  placement: CarriedPlacement;
  values: Uint8Array;
}

/** Parameters of {@link placeOnnxCarried}. */
export interface PlaceOnnxCarriedParams {
  /** The model's weight locator (`onnxWeightLocator`). */
  locator: OnnxWeightLocator;
  /** The weights the VeRA merge patches (a carried tensor may not land on one of them). */
  planned: readonly PlannedWeight[];
  carried: readonly CarriedTensorTarget[];
  /** For messages. */
  label: string;
}

/**
 * Place every carried tensor, or refuse them all by name.
 *
 * @throws VeraError `MERGE_CARRIED_TENSOR` naming each tensor that cannot be placed.
 */
export function placeOnnxCarried(params: PlaceOnnxCarriedParams): { placed: OnnxCarried[]; added: OnnxAddedBias[] } {
  const { index } = params.locator;
  const taken = new Set([...index.initializers.keys(), ...index.producer.keys()]);
  for (const p of params.planned) if (p.untie) taken.add(p.untie.name);
  const merged = new Set(params.planned.filter((p) => !p.untie).map((p) => p.initializer));
  const whole = new Set<string>();
  const refusals: CarriedRefusal[] = [];
  const out: OnnxCarried[] = [];
  const added: OnnxAddedBias[] = [];
  const fresh = (base: string): string => {
    let name = base;
    for (let k = 2; taken.has(name); k++) name = `${base}${k}`;
    taken.add(name);
    return name;
  };
  for (const target of params.carried) {
    const refuse = (reason: string): void => void refusals.push({ target, reason });
    if (target.kind === "other") {
      refuse("not a modules_to_save parameter or a trainable bias: no merge knows where it belongs");
      continue;
    }
    const loc = params.locator.parameter({ param: target.param, shape: target.tensor.shape });
    if (typeof loc === "string") {
      const { model, weights } = params.locator;
      const bias =
        target.param.endsWith(".bias") && loc.startsWith("no tensor for ")
          ? locateAddableBias({ model, index, weights, param: target.param, shape: target.tensor.shape })
          : loc;
      if (typeof bias === "string") {
        refuse(loc);
        continue;
      }
      const name = fresh(target.param);
      added.push({
        bias,
        name,
        matmulOut: fresh(`${bias.node.outputs[0]!}/verakit_no_bias`),
        placement: {
          target,
          tensor: name,
          dtype: bias.dtype,
          transposed: false,
          matchedBy: `added to ${bias.node.opType} (${bias.matched})`,
        },
        values: carriedValues({ tensor: target.tensor, dtype: bias.dtype, transpose: false }),
      });
      continue;
    }
    const t = loc.tensor;
    if (!loc.use && (merged.has(t.name) || whole.has(t.name))) {
      refuse(`the model's ${JSON.stringify(t.name)} also takes another change of this merge`);
      continue;
    }
    if (!loc.use) whole.add(t.name);
    const planned: PlannedWeight = {
      initializer: t.name,
      tensor: t,
      dtype: loc.dtype,
      layout: "out_in",
      inFeatures: 0,
      outFeatures: 0,
      byteLength: numel(t.dims) * dtypeSize(loc.dtype),
      source: "initializer_name",
      node: "",
      via: [],
      modules: [],
    };
    if (loc.use) {
      let name = `${t.name}.${target.kind === "bias" ? "bias" : "saved"}`;
      for (let k = 2; taken.has(name); k++) name = `${t.name}.saved${k}`;
      taken.add(name);
      planned.untie = { name, ...loc.use };
    }
    out.push({
      planned,
      placement: {
        target,
        tensor: t.name,
        dtype: loc.dtype,
        transposed: loc.transposed,
        matchedBy: loc.matchedBy === "linear" ? `linear (${loc.matched})` : loc.matchedBy,
      },
      values: carriedValues({ tensor: target.tensor, dtype: loc.dtype, transpose: loc.transposed }),
    });
  }
  refuseCarried(refusals, params.label);
  return { placed: out, added };
}

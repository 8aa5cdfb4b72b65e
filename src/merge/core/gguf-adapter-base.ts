/** The base a GGUF merge sizes a PEFT adapter by: the model's tensors, by llama.cpp's names or a mapping. */
import { VeraError } from "../../errors.js";
import { baseShapesFromGguf } from "../../gguf/base-shapes-from-gguf.js";
import { GgufErrorCode } from "../../gguf/error-codes.js";
import { loraBaseFromGguf } from "../../gguf/lora-base.js";
import { isKnownGgufArchitecture, type GgufNameMapping } from "../../gguf/tensor-names.js";
import type { GgufFile } from "../../gguf/types.js";
import type { AdapterBase } from "../../peft/load/load-adapter.js";
import { peftModulePaths } from "../../peft/peft-module-paths.js";

/** Parameters of {@link ggufAdapterBase}. */
export interface GgufAdapterBaseParams {
  /** The model's (first part's) header. */
  file: GgufFile;
  /** What messages call the model. */
  label: string;
  /** Every part of a split GGUF (their weights are sized against all of them). @default the one file */
  parts?: readonly GgufFile[];
  mapping?: GgufNameMapping;
}

/**
 * The adapter base of a GGUF model: a function of the PEFT weights giving each module's shape from the model's
 * tensors. Checked before the adapter is sized: without a known architecture or a mapping there is no name to size
 * it by.
 *
 * @throws VeraError `GGUF_UNKNOWN_ARCHITECTURE`.
 */
export function ggufAdapterBase(params: GgufAdapterBaseParams): AdapterBase {
  const { mapping } = params;
  const base = loraBaseFromGguf(params.file, params.label);
  if (params.parts) base.tensors = new Map(params.parts.flatMap((p) => p.tensors.map((t) => [t.name, t.ne])));
  if (!mapping && !isKnownGgufArchitecture(base.architecture))
    throw new VeraError(
      GgufErrorCode.GGUF_UNKNOWN_ARCHITECTURE,
      `${params.label}: architecture ${JSON.stringify(base.architecture)} has no built-in llama.cpp tensor names; ` +
        "give a mapping file (JSON: module path -> tensor name, {bid} for the block number) with --mapping",
      { path: "general.architecture", expected: "a known architecture or a mapping", received: base.architecture },
    );
  return (peft) => baseShapesFromGguf({ base, modules: peftModulePaths(peft), ...(mapping ? { mapping } : {}) });
}

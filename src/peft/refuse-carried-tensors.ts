import { VeraError } from "../errors.js";
import type { VeraAdapter } from "../format/types.js";
import { carriedTensorTargets } from "./carried-tensors.js";
import { PeftErrorCode } from "./error-codes.js";

/** Parameters of {@link refuseCarriedTensors}. */
export interface RefuseCarriedTensorsParams {
  adapter: VeraAdapter;
  /** What is being written, for the message, e.g. "a llama.cpp GGUF LoRA adapter". */
  target: string;
  /**
   * Drop the carried tensors instead of refusing: the output then lacks them (its model's function differs from
   * PEFT's wherever they matter) and the caller's report must list them as dropped.
   * @default false
   */
  dropCarried?: boolean;
}

/** The adapter an output can hold, and what was left out of it. */
export interface CarriedTensorsDecision {
  /** The adapter without its carried tensors when they were dropped, else the adapter as given. */
  adapter: VeraAdapter;
  /** Names of the dropped tensors (the PEFT keys); empty when the adapter carried none. */
  dropped: string[];
}

/**
 * For outputs that hold only low-rank pairs (GGUF LoRA, vLLM/TGI/LoRAX folders, a LoRA .onnx_adapter): refuse an
 * adapter that carries tensors besides its VeRA vectors (a modules_to_save head, trainable biases), naming every one
 * with what it replaces, unless `dropCarried` says to drop them knowingly. Never drops silently.
 *
 * @throws VeraError `ADAPTER_CARRIED_TENSORS` (every tensor in `received` and in its issues).
 */
export function refuseCarriedTensors(params: RefuseCarriedTensorsParams): CarriedTensorsDecision {
  const { adapter } = params;
  const carried = carriedTensorTargets({ adapter });
  if (carried.length === 0) return { adapter, dropped: [] };
  const names = carried.map((c) => c.tensor.name);
  if (params.dropCarried) {
    const rest: VeraAdapter = { ...adapter };
    delete rest.extraTensors;
    return { adapter: rest, dropped: names };
  }
  const what = carried.map((c) => `${c.tensor.name} (${c.kind}${c.param ? `, replaces ${c.param}` : ""})`);
  const issues = carried.map((c) => ({
    code: PeftErrorCode.ADAPTER_CARRIED_TENSORS,
    message: `${params.target} cannot hold ${c.tensor.name} (${c.kind})`,
    path: c.tensor.name,
    expected: "only VeRA vectors",
    received: c.kind,
  }));
  throw new VeraError(
    PeftErrorCode.ADAPTER_CARRIED_TENSORS,
    `${params.target} holds only low-rank pairs, and this adapter also carries ${carried.length} tensor(s) that PEFT ` +
      `applies to the model: ${what.join(", ")}. Without them the model's function differs from PEFT's; ` +
      `drop them knowingly with --drop-carried (library: dropCarried: true)`,
    { path: names[0]!, expected: "an adapter without carried tensors, or dropCarried", received: names, issues },
  );
}

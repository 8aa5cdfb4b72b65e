import type { SafetensorsFile } from "../safetensors/parse.js";

/** The module paths a PEFT VeRA adapter_model.safetensors adapts (one per `vera_lambda_b`, or PVeRA's `pvera_lambda_b`), without PEFT's prefix. */
export function peftModulePaths(weights: SafetensorsFile): string[] {
  const out: string[] = [];
  for (const k of weights.tensors.keys()) {
    const m = /^base_model\.model\.(.+)\.p?vera_lambda_b$/.exec(k);
    if (m) out.push(m[1]!);
  }
  return out;
}

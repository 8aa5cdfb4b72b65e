/**
 * verakit: VeRA adapters everywhere JavaScript runs. This entry is the pure, browser-safe core:
 * errors, the safetensors codec, the verakit format, torch-exact projections and the PEFT/LoRA converters. Node-only parts
 * live under `verakit/node`, `verakit/merge` and `verakit/hub`.
 */
export * from "./errors.js";
export * from "./safetensors/index.js";
export * from "./format/index.js";
export * from "./projections/index.js";
export * from "./peft/index.js";
export * from "./numeric/half.js";
export {
  sha256Hex,
  Sha256,
  PURE_SHA256,
  setSha256Implementation,
  sha256Implementation,
  type Sha256Implementation,
  type SetSha256ImplementationParams,
} from "./util/sha256.js";
export { canonicalJson } from "./util/strict-json.js";
export { INPUT_LIMITS, checkInputSize, type CheckInputSizeParams } from "./util/input-limits.js";

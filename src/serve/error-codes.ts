/**
 * Stable error codes of the serving path (grafted ONNX graphs, adapter feeds, `.onnx_adapter` files). The string values
 * never change once released. Weight location problems use the `ONNX_*` codes of the locator.
 */
export const ServeErrorCode = {
  /** The model carries no graft record (it was not made by `graftOnnx`), or the record is malformed. */
  SERVE_NOT_GRAFTED: "SERVE_NOT_GRAFTED",
  /** The adapter's PRNG (seed, arithmetic), rank, projection rounding or shapes differ from the graft's. */
  SERVE_SPEC_MISMATCH: "SERVE_SPEC_MISMATCH",
  /** A module of the adapter is not grafted in the model (feeds for it would be ignored). */
  SERVE_MODULE_NOT_GRAFTED: "SERVE_MODULE_NOT_GRAFTED",
  /** An `.onnx_adapter` file is malformed (identifier, version, parameter table). */
  SERVE_ADAPTER_FILE: "SERVE_ADAPTER_FILE",
} as const;

/** One of {@link ServeErrorCode}'s values. */
export type ServeErrorCodeValue = (typeof ServeErrorCode)[keyof typeof ServeErrorCode];

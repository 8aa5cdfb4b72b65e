/**
 * Stable error codes of the serving path (grafted ONNX graphs, adapter feeds, `.onnx_adapter` files). The string values
 * never change once released. Weight location problems use the `ONNX_*` codes of the locator.
 */
export const ServeErrorCode = {
  /** The model carries no graft record (it was not made by `graftOnnx`), or the record is malformed. */
  SERVE_NOT_GRAFTED: "SERVE_NOT_GRAFTED",
  /** The adapter's PRNG (seed, arithmetic), rank, projection rounding or shapes differ from the graft's. */
  SERVE_SPEC_MISMATCH: "SERVE_SPEC_MISMATCH",
  /** A module (or carried tensor) of the adapter is not grafted in the model (feeds for it would be ignored). */
  SERVE_MODULE_NOT_GRAFTED: "SERVE_MODULE_NOT_GRAFTED",
  /**
   * The graph cannot be grafted: it is grafted already, its default-domain opset is below 13, a target sits in a fused
   * weight (q/k/v in one MatMul), the adapter keeps explicit projections, the branch precision does not fit the model,
   * or a tensor the adapter carries (a head, a bias) cannot be placed (no initializer, a shared one, a batched use that
   * cannot be made per row).
   */
  SERVE_GRAPH_UNSUPPORTED: "SERVE_GRAPH_UNSUPPORTED",
  /**
   * Feeds do not fit the graph or the session: a list for an unbatched graph, an empty batch, a feed name the session
   * does not take, an adapter input not fed, a wrong shape, a decoder without cache inputs for generation.
   */
  SERVE_FEEDS: "SERVE_FEEDS",
  /** An `.onnx_adapter` file is malformed (identifier, version, parameter table). */
  SERVE_ADAPTER_FILE: "SERVE_ADAPTER_FILE",
} as const;

/** One of {@link ServeErrorCode}'s values. */
export type ServeErrorCodeValue = (typeof ServeErrorCode)[keyof typeof ServeErrorCode];

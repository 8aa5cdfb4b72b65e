import { VeraError } from "../errors.js";
import { readOnnxMetadata } from "../onnx/read-onnx-model.js";
import type { BaseShapes } from "../peft/base-shapes.js";
import { ServeErrorCode } from "./error-codes.js";
import { GRAFT_METADATA_KEY, parseGraftSpec, type GraftSpec } from "./graft-spec.js";

/** Parameters of {@link readGraftSpec}: the model's bytes, or its metadata_props as a record. */
export type ReadGraftSpecParams =
  /** The `.onnx` file's bytes (only the top-level fields are read; the graph is skipped). */
  | { bytes: Uint8Array }
  /** The model's metadata_props (e.g. from `onnx.load(...).metadata_props` or a session's custom metadata map). */
  | { metadata: Readonly<Record<string, string>> };

/**
 * The graft record of a grafted model (see `graftOnnx`).
 *
 * @throws VeraError `SERVE_NOT_GRAFTED` when the model has no `verakit.graft` entry or it is malformed;
 *   `ONNX_PARSE` for bytes that are not a protobuf message.
 */
export function readGraftSpec(params: ReadGraftSpecParams): GraftSpec {
  const text = ("metadata" in params ? params.metadata : readOnnxMetadata({ bytes: params.bytes }))[GRAFT_METADATA_KEY];
  if (text === undefined)
    throw new VeraError(
      ServeErrorCode.SERVE_NOT_GRAFTED,
      `the model has no "${GRAFT_METADATA_KEY}" metadata entry: it was not grafted (run vera graft first)`,
      { expected: GRAFT_METADATA_KEY },
    );
  return parseGraftSpec(text);
}

/**
 * The base shapes a grafted model records (every grafted module's in/out features and layout), enough to import a
 * PEFT adapter for it without the base model.
 */
export function baseShapesFromGraftSpec(spec: GraftSpec): BaseShapes {
  return {
    source: "onnx",
    description: "the graft record of a grafted model",
    modules: spec.modules.map((m) => ({
      path: m.name,
      shapes: [{ inFeatures: m.inFeatures, outFeatures: m.outFeatures, layout: m.layout }],
    })),
  };
}

import { VeraError } from "../errors.js";
import { fieldString, fields } from "../onnx/wire.js";
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
  let text: string | undefined;
  if ("metadata" in params) text = params.metadata[GRAFT_METADATA_KEY];
  else {
    const b = params.bytes;
    for (const f of fields(b, 0, b.length)) {
      if (f.field !== 14) continue;
      let key: string | undefined;
      let value = "";
      for (const g of fields(b, f.dataStart, f.dataEnd)) {
        if (g.field === 1) key = fieldString(b, g);
        else if (g.field === 2) value = fieldString(b, g);
      }
      if (key === GRAFT_METADATA_KEY) text = value;
    }
  }
  if (text === undefined)
    throw new VeraError(
      ServeErrorCode.SERVE_NOT_GRAFTED,
      `the model has no "${GRAFT_METADATA_KEY}" metadata entry: it was not grafted (run vera graft first)`,
      { expected: GRAFT_METADATA_KEY },
    );
  return parseGraftSpec(text);
}

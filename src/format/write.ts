import { VeraError } from "../errors.js";
import { encodeVera } from "./encode-vera.js";
import type { VeraAdapter, VectorDtype } from "./types.js";
import { validateVera } from "./validate.js";

/** Parameters of {@link writeVera}. */
export interface WriteVeraParams {
  adapter: VeraAdapter;
  /**
   * Storage dtype of the d and b vectors. F16/BF16 round the vectors (lossy; opt-in).
   * @default adapter.vectorDtype
   */
  vectorDtype?: VectorDtype;
}

/**
 * Serialise an adapter to canonical verakit bytes: the same adapter always gives the same bytes
 * (modules and tensors sorted by name, canonical JSON metadata, padded header, SHA-256 digest of the
 * data section). The result is validated before it is returned, so an invalid adapter never reaches a
 * file: a {@link VeraError} lists every problem. The data is hashed once (the digest just computed is
 * not checked again).
 */
export function writeVera(params: WriteVeraParams): Uint8Array {
  const bytes = encodeVera(params);
  const check = validateVera(bytes, { checkCanonical: false, checkDigest: false });
  if (!check.ok)
    throw VeraError.fromIssues(check.issues, `cannot write an invalid adapter: ${check.issues[0]!.message}`);
  return bytes;
}

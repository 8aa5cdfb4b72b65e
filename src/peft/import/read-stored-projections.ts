/**
 * Import stage 3: the vera_A / vera_B a PEFT file stores (save_projection true), checked against r.
 * @internal
 */
import { VeraError } from "../../errors.js";
import type { VectorDtype } from "../../format/types.js";
import { tensorBytes, type SafetensorsFile } from "../../safetensors/parse.js";
import { PeftErrorCode } from "../error-codes.js";
import { decodeFloat, KEY_VERA_A, KEY_VERA_B } from "../internal.js";

/** Projections stored in the file, decoded to float32. */
export interface StoredProjections {
  A: Float32Array;
  B: Float32Array;
  /** Columns of vera_A: the largest in_features of the targeted layers. */
  maxIn: number;
  /** Rows of vera_B: the largest out_features of the targeted layers. */
  maxOut: number;
  dtype: VectorDtype;
}

/**
 * Read vera_A (r x max_in) and vera_B (max_out x r) when the file has them (PEFT_PROJECTION_SHAPE,
 * PEFT_TENSOR_DTYPE); undefined, with a warning when save_projection promised them, when it has neither.
 */
export function readStoredProjections(params: {
  file: SafetensorsFile;
  rank: number;
  hasA: boolean;
  hasB: boolean;
  saveProjection: boolean;
  warnings: string[];
}): StoredProjections | undefined {
  const { file, rank, hasA, hasB } = params;
  if (hasA !== hasB)
    throw new VeraError(
      PeftErrorCode.PEFT_PROJECTION_SHAPE,
      `the file has ${hasA ? KEY_VERA_A : KEY_VERA_B} but not ${hasA ? KEY_VERA_B : KEY_VERA_A}`,
      {
        path: hasA ? KEY_VERA_B : KEY_VERA_A,
        expected: "both vera_A and vera_B, or neither",
      },
    );
  if (!hasA) {
    if (params.saveProjection)
      params.warnings.push(
        "save_projection is true but the file has no vera_A / vera_B (PEFT cannot load it as is); the projections are regenerated from projection_prng_key",
      );
    return undefined;
  }
  const ia = file.tensors.get(KEY_VERA_A)!;
  const ib = file.tensors.get(KEY_VERA_B)!;
  for (const [key, info] of [
    [KEY_VERA_A, ia],
    [KEY_VERA_B, ib],
  ] as const) {
    if (info.dtype !== "F32" && info.dtype !== "F16" && info.dtype !== "BF16")
      throw new VeraError(PeftErrorCode.PEFT_TENSOR_DTYPE, `${key} must be F32, F16 or BF16, found ${info.dtype}`, {
        path: key,
        expected: "F32",
        received: info.dtype,
      });
  }
  if (ia.shape.length !== 2 || ia.shape[0] !== rank || ia.shape[1]! < 1)
    throw new VeraError(
      PeftErrorCode.PEFT_PROJECTION_SHAPE,
      `${KEY_VERA_A} has shape ${JSON.stringify(ia.shape)}, expected [${rank}, max_in] (r = ${rank})`,
      {
        path: KEY_VERA_A,
        expected: `[${rank}, max_in]`,
        received: ia.shape,
      },
    );
  if (ib.shape.length !== 2 || ib.shape[1] !== rank || ib.shape[0]! < 1)
    throw new VeraError(
      PeftErrorCode.PEFT_PROJECTION_SHAPE,
      `${KEY_VERA_B} has shape ${JSON.stringify(ib.shape)}, expected [max_out, ${rank}] (r = ${rank})`,
      {
        path: KEY_VERA_B,
        expected: `[max_out, ${rank}]`,
        received: ib.shape,
      },
    );
  if (ia.dtype !== ib.dtype)
    throw new VeraError(PeftErrorCode.PEFT_TENSOR_DTYPE, `vera_A is ${ia.dtype} but vera_B is ${ib.dtype}`, {
      path: KEY_VERA_B,
      expected: ia.dtype,
      received: ib.dtype,
    });
  return {
    A: decodeFloat(tensorBytes(file, KEY_VERA_A), ia.dtype),
    B: decodeFloat(tensorBytes(file, KEY_VERA_B), ib.dtype),
    maxIn: ia.shape[1]!,
    maxOut: ib.shape[0]!,
    dtype: ia.dtype as VectorDtype,
  };
}

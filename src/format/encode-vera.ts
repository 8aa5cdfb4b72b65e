import { ErrorCode, VeraError } from "../errors.js";
import { f32ArrayToBf16, f32ArrayToF16 } from "../numeric/half.js";
import { bytesOf, writeSafetensors, type TensorToWrite } from "../safetensors/write.js";
import { canonicalJson } from "../util/strict-json.js";
import { sha256Hex } from "../util/sha256.js";
import { EXTRA_TENSOR_PREFIX, FORMAT_VERSION, type VeraAdapter, type VectorDtype } from "./types.js";

/** Parameters of {@link encodeVera}. @internal */
export interface EncodeVeraParams {
  adapter: VeraAdapter;
  /**
   * Storage dtype of the d and b vectors.
   * @default adapter.vectorDtype
   */
  vectorDtype?: VectorDtype;
  /**
   * SHA-256 (lowercase hex) of the data section, when the caller has already hashed the very bytes
   * this adapter encodes to (the validator, comparing a file with its canonical form: the comparison
   * covers the data section, so a wrong value can only make the bytes differ). Hashed here when omitted.
   * @default undefined
   */
  dataDigest?: string;
}

function encodeVector(v: Float32Array, dtype: VectorDtype): Uint8Array {
  if (dtype === "F32") return bytesOf(Float32Array.from(v));
  return bytesOf(dtype === "F16" ? f32ArrayToF16(v) : f32ArrayToBf16(Float32Array.from(v)));
}

/**
 * The canonical bytes of an adapter, not validated (internal: {@link writeVera} validates them, the
 * validator's canonical check compares with them). Modules and tensors sorted by name, canonical JSON
 * metadata, padded header, SHA-256 digest of the data section.
 * @internal
 */
export function encodeVera(params: EncodeVeraParams): Uint8Array {
  const a = params.adapter;
  const dtype = params.vectorDtype ?? a.vectorDtype ?? "F32";
  if (dtype !== "F32" && dtype !== "F16" && dtype !== "BF16")
    throw new VeraError(ErrorCode.VERA_TENSOR_DTYPE, `vector dtype must be F32, F16 or BF16`, { received: dtype });
  const modules = [...a.modules].sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
  const tensors: TensorToWrite[] = [];
  for (const m of modules) {
    tensors.push({
      name: `${m.name}.vera_lambda_d`,
      dtype,
      shape: [m.lambdaD.length],
      data: encodeVector(m.lambdaD, dtype),
    });
    tensors.push({
      name: `${m.name}.vera_lambda_b`,
      dtype,
      shape: [m.lambdaB.length],
      data: encodeVector(m.lambdaB, dtype),
    });
  }
  if (a.storedProjections) {
    tensors.push({ name: "vera_A", dtype: "F32", shape: [a.rank, a.maxIn], data: bytesOf(a.storedProjections.A) });
    tensors.push({ name: "vera_B", dtype: "F32", shape: [a.maxOut, a.rank], data: bytesOf(a.storedProjections.B) });
  }
  for (const t of a.extraTensors ?? [])
    tensors.push({ name: EXTRA_TENSOR_PREFIX + t.name, dtype: t.dtype, shape: t.shape, data: t.data });
  tensors.sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
  // The digest covers the data section, which is the sorted tensors' bytes back to back.
  const dataLen = tensors.reduce((s, t) => s + t.data.byteLength, 0);
  const data = new Uint8Array(dataLen);
  let o = 0;
  for (const t of tensors) {
    data.set(t.data, o);
    o += t.data.byteLength;
  }
  const meta: Record<string, unknown> = {
    format_version: FORMAT_VERSION,
    prng: { algorithm: a.prng.algorithm, seed: a.prng.seed.toString(), arithmetic: a.prng.arithmetic },
    projections: {
      rank: a.rank,
      max_in: a.maxIn,
      max_out: a.maxOut,
      rounding: a.projectionRounding,
      storage: a.storedProjections ? "stored" : "regenerate",
    },
    modules: modules.map((m) => ({
      name: m.name,
      in_features: m.inFeatures,
      out_features: m.outFeatures,
      layout: m.layout,
    })),
    digest: { algorithm: "sha256", data: params.dataDigest ?? sha256Hex(data) },
  };
  if (a.baseModel && (a.baseModel.id !== undefined || a.baseModel.revision !== undefined))
    meta["base_model"] = a.baseModel;
  if (a.training && Object.keys(a.training).length > 0) meta["training"] = a.training;
  if (a.extra && Object.keys(a.extra).length > 0) meta["extra"] = a.extra;
  let metaJson: string;
  try {
    metaJson = canonicalJson(meta);
  } catch (e) {
    throw new VeraError(ErrorCode.VERA_SCHEMA, `metadata is not JSON-serialisable: ${(e as Error).message}`);
  }
  return writeSafetensors({ tensors, metadata: { format: "vera", vera: metaJson } });
}

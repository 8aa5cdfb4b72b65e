/**
 * PVeRA (PEFT's `PveraConfig`, peft_type "PVERA") read as the VeRA adapter its inference computes.
 * @internal
 *
 * PVeRA shares VeRA's frozen projections but draws A with 2r rows (A = kaiming (2r, max_in), then B = kaiming
 * (max_out, r) from the same generator) and trains lambda_d of length 2r: its first half is the mean, its second a
 * log-variance. Without sampling at inference (`sample_at_inference` false, the default) the forward pass and
 * merge_and_unload use the mean only: delta_W = diag(b) B[:out, :] diag(d[:r]) A[:r, :in], which is a VeRA delta whose
 * A is PVeRA's first r rows and whose B is drawn after all 2r rows, so B is never VeRA's B for the same seed: the
 * imported adapter keeps its projections explicitly (the format's stored projections). The log-variance halves (of
 * lambda_d and of A), unused at inference, are carried under src/peft/pvera-keys.ts's names, which no merge or graft
 * applies, so that an export writes PVeRA's folder back; the original config is kept as `extra.peft.pvera_config`.
 */
import { VeraError } from "../../errors.js";
import { kaimingUniformInto } from "../../projections/generate.js";
import { MT19937 } from "../../projections/mt19937.js";
import { seedToState } from "../../projections/seed.js";
import type { Arithmetic } from "../../projections/generate.js";
import { parseSafetensors, tensorBytes, type SafetensorsFile } from "../../safetensors/parse.js";
import type { Dtype } from "../../safetensors/dtypes.js";
import { PeftErrorCode } from "../error-codes.js";
import { MODEL_PREFIX, parseConfigText, writeTorchSafetensors } from "../internal.js";
import { dumpsPy, type PyObject } from "../py-json.js";
import { PVERA_LOGVAR_A, PVERA_LOGVAR_D_PREFIX } from "../pvera-keys.js";

const ELEMENT_BYTES: Partial<Record<Dtype, number>> = { F32: 4, F16: 2, BF16: 2 };
/** PVeRA config fields VeRA does not have. */
const PVERA_ONLY = ["sample_at_inference", "generator_seed"];

/** A PVeRA adapter rewritten in VeRA's terms, for the importer. */
export interface PveraAsVera {
  /** The config as a VeRA config (peft_type VERA, vera_dropout), save_projection as the file says. */
  configText: string;
  /** The same with save_projection true (once the drawn projections are added). */
  configTextStored: string;
  /** The weights under VeRA's keys: lambda_d's mean half, A's first r rows. */
  weights: SafetensorsFile;
  /** Whether the file stored pvera_A / pvera_B (else they are drawn once the dimensions are known). */
  stored: boolean;
  rank: number;
  seed: bigint;
  warnings: string[];
}

/** The config and weights of a PVeRA adapter as VeRA's, or undefined when the config is not PVeRA's. */
export function pveraAsVera(params: {
  configText: string;
  weights: SafetensorsFile;
  label: string;
}): PveraAsVera | undefined {
  const cfg = parseConfigText(params.configText, params.label);
  if (cfg.get("peft_type") !== "PVERA") return undefined;
  if (cfg.get("sample_at_inference") === true)
    throw new VeraError(
      PeftErrorCode.PEFT_NOT_VERA,
      `${params.label}: this PVeRA adapter samples at inference (sample_at_inference: true), so its output is random; ` +
        "a VeRA adapter (and any merge) computes the mean only. Save it with sample_at_inference false to import it",
      { path: `${params.label}/sample_at_inference`, expected: false, received: true },
    );
  const rank = Number((cfg.get("r") as { value?: bigint } | undefined)?.value ?? 256n);
  const seedRaw = cfg.get("projection_prng_key") as { value?: bigint } | undefined;
  const vera: PyObject = new Map();
  for (const [k, v] of cfg) {
    if (PVERA_ONLY.includes(k)) continue;
    vera.set(k === "pvera_dropout" ? "vera_dropout" : k, k === "peft_type" ? "VERA" : v);
  }
  const stored = params.weights.tensors.has("base_model.pvera_A");
  vera.set("save_projection", stored);
  const configText = dumpsPy(vera);
  vera.set("save_projection", true);
  return {
    configText,
    configTextStored: dumpsPy(vera),
    weights: renameTensors(params.weights, rank),
    stored,
    rank,
    seed: seedRaw?.value ?? 0n,
    warnings: [
      "PVeRA adapter read as the VeRA adapter its inference computes (the mean half of lambda_d, the first r rows of " +
        "A); the log-variance halves, unused at inference, are carried for export-peft only, and the projections are " +
        "stored explicitly (PVeRA's B is not VeRA's B for the same seed)",
    ],
  };
}

/**
 * PVeRA's tensors under VeRA's keys: lambda_b as it is, lambda_d's first r entries, A's first r rows, B as it is; the
 * second halves of lambda_d and A under the PVeRA-only names.
 */
function renameTensors(file: SafetensorsFile, rank: number): SafetensorsFile {
  const out = [];
  for (const [name, info] of file.tensors) {
    const data = tensorBytes(file, name);
    const size = ELEMENT_BYTES[info.dtype] ?? 0;
    const lambdaD = /^(.*)\.pvera_lambda_d$/.exec(name);
    if (lambdaD && info.shape.length === 1 && info.shape[0] === 2 * rank && size > 0) {
      const half = rank * size;
      out.push({ name: `${lambdaD[1]}.vera_lambda_d`, dtype: info.dtype, shape: [rank], data: data.slice(0, half) });
      const key = lambdaD[1]!;
      const module = key.startsWith(MODEL_PREFIX) ? key.slice(MODEL_PREFIX.length) : key;
      out.push({ name: PVERA_LOGVAR_D_PREFIX + module, dtype: info.dtype, shape: [rank], data: data.slice(half) });
    } else if (name === "base_model.pvera_A" && info.shape.length === 2 && info.shape[0] === 2 * rank && size > 0) {
      const half = rank * info.shape[1]! * size;
      const shape = [rank, info.shape[1]!];
      out.push({ name: "base_model.vera_A", dtype: info.dtype, shape, data: data.slice(0, half) });
      out.push({ name: PVERA_LOGVAR_A, dtype: info.dtype, shape, data: data.slice(half) });
    } else
      out.push({
        name: name.replace(/\.pvera_lambda_b$/, ".vera_lambda_b").replace(/^base_model\.pvera_B$/, "base_model.vera_B"),
        dtype: info.dtype,
        shape: [...info.shape],
        data: data.slice(),
      });
  }
  return parseSafetensors(writeTorchSafetensors(out, file.metadata));
}

/**
 * PVeRA's projections as PEFT draws them: `manual_seed(seed)`, A = kaiming (2r, maxIn), then B = kaiming
 * (maxOut, r); the first r rows of A, B, and A's last r rows (`Alogvar`), as float32.
 */
export function pveraProjections(p: {
  seed: bigint;
  rank: number;
  maxIn: number;
  maxOut: number;
  arithmetic: Arithmetic;
}): { A: Float32Array; B: Float32Array; Alogvar: Float32Array } {
  const gen = new MT19937(seedToState(p.seed));
  const A2 = new Float32Array(2 * p.rank * p.maxIn);
  const B = new Float32Array(p.maxOut * p.rank);
  kaimingUniformInto(gen, A2, p.maxIn, p.arithmetic);
  kaimingUniformInto(gen, B, p.rank, p.arithmetic);
  return { A: A2.slice(0, p.rank * p.maxIn), B, Alogvar: A2.slice(p.rank * p.maxIn) };
}

/** The weights with the drawn projections added under VeRA's keys (for a PVeRA file that does not store them). */
export function withProjections(
  file: SafetensorsFile,
  proj: { A: Float32Array; B: Float32Array; Alogvar: Float32Array },
  dims: { rank: number; maxIn: number; maxOut: number },
): SafetensorsFile {
  const out = [...file.tensors].map(([name, info]) => ({
    name,
    dtype: info.dtype,
    shape: [...info.shape],
    data: tensorBytes(file, name).slice(),
  }));
  out.push({
    name: "base_model.vera_A",
    dtype: "F32",
    shape: [dims.rank, dims.maxIn],
    data: new Uint8Array(proj.A.slice().buffer as ArrayBuffer),
  });
  out.push({
    name: "base_model.vera_B",
    dtype: "F32",
    shape: [dims.maxOut, dims.rank],
    data: new Uint8Array(proj.B.slice().buffer as ArrayBuffer),
  });
  out.push({
    name: PVERA_LOGVAR_A,
    dtype: "F32",
    shape: [dims.rank, dims.maxIn],
    data: new Uint8Array(proj.Alogvar.slice().buffer as ArrayBuffer),
  });
  return parseSafetensors(writeTorchSafetensors(out, file.metadata));
}

/**
 * @internal The PVeRA side of {@link exportPeft}: an adapter imported from PEFT's PVeRA (its config kept as
 * `extra.peft.pvera_config`, its log-variance halves carried under src/peft/pvera-keys.ts's names) is written back as
 * PVeRA's folder: peft_type "PVERA", `pvera_lambda_d` (2r: the mean half from the module's vectors, then the carried
 * log-variance half), `pvera_lambda_b`, and with saved projections `pvera_A` (2r rows: the stored A, then the carried
 * log-variance rows) and `pvera_B`. PEFT loads it as PVeRA with the same eval-mode function.
 */
import { VeraError } from "../errors.js";
import type { ExtraTensor, VeraAdapter } from "../format/types.js";
import { pveraProjections } from "./import/pvera.js";
import { PeftErrorCode } from "./error-codes.js";
import { decodeFloat, encodeFloat, KEY_VERA_A, KEY_VERA_B, MODEL_PREFIX, VERA_CONFIG_FIELDS } from "./internal.js";
import {
  isPveraSamplingTensor,
  KEY_PVERA_A,
  KEY_PVERA_B,
  PVERA_LOGVAR_A,
  PVERA_LOGVAR_D_PREFIX,
} from "./pvera-keys.js";
import type { TensorToWrite } from "../safetensors/write.js";

/** Fields of PEFT 0.21's PveraConfig (VeraConfig's, with pvera_dropout, sample_at_inference, generator_seed). */
export const PVERA_CONFIG_FIELDS = new Set([
  ...[...VERA_CONFIG_FIELDS].filter((f) => f !== "vera_dropout"),
  "pvera_dropout",
  "sample_at_inference",
  "generator_seed",
]);

function incomplete(what: string, path: string): VeraError {
  return new VeraError(
    PeftErrorCode.PEFT_PVERA_INCOMPLETE,
    `the adapter came from PEFT's PVeRA but lacks ${what}: PVeRA's folder cannot be written without it`,
    { path, expected: `the carried tensor ${path}`, received: "none" },
  );
}

/** A carried PVeRA half as bytes of `dtype`, checked against the length it completes. */
function half(t: ExtraTensor | undefined, name: string, length: number, dtype: TensorToWrite["dtype"]): Uint8Array {
  if (!t) throw incomplete(name === PVERA_LOGVAR_A ? "the log-variance rows of pvera_A" : `${name}`, name);
  const v = decodeFloat(t.data, t.dtype);
  if (v.length !== length)
    throw new VeraError(
      PeftErrorCode.PEFT_PVERA_INCOMPLETE,
      `${name}: ${v.length} values, the PVeRA tensor it completes needs ${length}`,
      { path: name, expected: length, received: v.length },
    );
  return t.dtype === dtype ? t.data : encodeFloat(v, dtype as "F32" | "F16" | "BF16");
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

/**
 * VeRA's tensors (as exportPeft lays them out) made PVeRA's: the vectors and projections renamed and completed with
 * the carried log-variance halves; the PVeRA-only carried tensors themselves left out.
 */
export function pveraTensors(a: VeraAdapter, tensors: TensorToWrite[]): TensorToWrite[] {
  const carried = new Map((a.extraTensors ?? []).map((t) => [t.name, t]));
  const out: TensorToWrite[] = [];
  for (const t of tensors) {
    if (isPveraSamplingTensor(t.name)) continue;
    if (t.name.startsWith(MODEL_PREFIX) && t.name.endsWith(".vera_lambda_d")) {
      const m = t.name.slice(MODEL_PREFIX.length, -".vera_lambda_d".length);
      const key = PVERA_LOGVAR_D_PREFIX + m;
      const logvar = half(carried.get(key), key, a.rank, t.dtype);
      out.push({
        ...t,
        name: t.name.replace(/\.vera_lambda_d$/, ".pvera_lambda_d"),
        shape: [2 * a.rank],
        data: concat(t.data, logvar),
      });
    } else if (t.name.startsWith(MODEL_PREFIX) && t.name.endsWith(".vera_lambda_b"))
      out.push({ ...t, name: t.name.replace(/\.vera_lambda_b$/, ".pvera_lambda_b") });
    else if (t.name === KEY_VERA_A) {
      const rows = half(carried.get(PVERA_LOGVAR_A), PVERA_LOGVAR_A, a.rank * a.maxIn, t.dtype);
      out.push({ ...t, name: KEY_PVERA_A, shape: [2 * a.rank, a.maxIn], data: concat(t.data, rows) });
    } else if (t.name === KEY_VERA_B) out.push({ ...t, name: KEY_PVERA_B });
    else out.push(t);
  }
  return out;
}

/**
 * Whether PEFT's PVeRA, loading without saved projections, regenerates exactly the adapter's: A (and its log-variance
 * rows) and B drawn from the seed as PVeRA draws them.
 */
export function pveraRegenerates(a: VeraAdapter): boolean {
  const stored = a.storedProjections;
  const rows = (a.extraTensors ?? []).find((t) => t.name === PVERA_LOGVAR_A);
  if (!stored || !rows) return false;
  const p = pveraProjections({
    seed: a.prng.seed,
    rank: a.rank,
    maxIn: a.maxIn,
    maxOut: a.maxOut,
    arithmetic: a.prng.arithmetic,
  });
  const same = (x: Float32Array, y: Float32Array): boolean =>
    x.length === y.length && x.every((v, i) => Object.is(v, y[i]));
  return same(p.A, stored.A) && same(p.B, stored.B) && same(p.Alogvar, decodeFloat(rows.data, rows.dtype));
}

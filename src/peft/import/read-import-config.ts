/**
 * Import stage 1: adapter_config.json, checked field by field.
 * @internal
 */
import { VeraError } from "../../errors.js";
import { SEED_MAX, SEED_MIN } from "../../projections/seed.js";
import { PeftErrorCode } from "../error-codes.js";
import { parseConfigText, VERA_CONFIG_FIELDS } from "../internal.js";
import { dumpsPy as dumps, isPyInt, isPyNumber, pyToPlain, type PyJson, type PyObject } from "../py-json.js";

/** What the importer uses of the config. */
export interface ImportConfig {
  /** The config text, kept verbatim for export. */
  text: string;
  /** The parsed config (Python JSON: ints and floats apart). */
  cfg: PyObject;
  rank: number;
  seed: bigint;
  saveProjection: boolean;
  fanInFanOut: boolean;
  bias: string;
  modulesToSave: string[];
  peftVersion?: string;
  /** Fields PEFT 0.21's VeraConfig does not know. */
  unknownConfigFields: string[];
  warnings: string[];
}

function describe(v: PyJson | undefined): string {
  if (v === undefined) return "missing";
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  if (v instanceof Map) return "object";
  if (typeof v === "object") return v.kind;
  return typeof v;
}

/** A JS object to Python JSON (integral numbers become ints). */
function fromPlain(v: unknown, path: string): PyJson {
  if (v === null || typeof v === "boolean" || typeof v === "string") return v;
  if (typeof v === "bigint") return { kind: "int", value: v };
  if (typeof v === "number")
    return Number.isInteger(v) ? { kind: "int", value: BigInt(v) } : { kind: "float", value: v };
  if (Array.isArray(v)) return v.map((x, k) => fromPlain(x, `${path}/${k}`));
  if (typeof v === "object") {
    const m: PyObject = new Map();
    for (const k of Object.keys(v as object)) m.set(k, fromPlain((v as Record<string, unknown>)[k], `${path}/${k}`));
    return m;
  }
  throw new VeraError(PeftErrorCode.PEFT_CONFIG_INVALID, `config value at ${path} is not JSON`, { path });
}

/** Python JSON back to text, for keeping an object-given config (no float/int distinction for integral values). */
function configText(config: string | Record<string, unknown>, label: string): { text: string; obj: PyObject } {
  if (typeof config === "string") return { text: config, obj: parseConfigText(config, label) };
  const obj = fromPlain(config, label);
  if (!(obj instanceof Map))
    throw new VeraError(PeftErrorCode.PEFT_CONFIG_INVALID, `${label} must be a JSON object`, { path: label });
  return { text: dumps(obj), obj };
}

/** Parse and check adapter_config.json (PEFT_CONFIG_INVALID, PEFT_NOT_VERA), with PEFT's defaults. */
export function readImportConfig(config: string | Record<string, unknown>, label: string): ImportConfig {
  const { text, obj: cfg } = configText(config, label);
  const warnings: string[] = [];
  const bad = (key: string, expected: string): never => {
    throw new VeraError(
      PeftErrorCode.PEFT_CONFIG_INVALID,
      `${label}: "${key}" must be ${expected}, found ${describe(cfg.get(key))}`,
      {
        path: `${label}/${key}`,
        expected,
        received: describe(cfg.get(key)),
      },
    );
  };
  const peftType = cfg.get("peft_type");
  if (peftType === undefined || peftType === null)
    throw new VeraError(PeftErrorCode.PEFT_CONFIG_INVALID, `${label} has no peft_type`, {
      path: `${label}/peft_type`,
      expected: '"VERA"',
    });
  if (peftType !== "VERA")
    throw new VeraError(
      PeftErrorCode.PEFT_NOT_VERA,
      `${label}: peft_type is ${JSON.stringify(pyToPlain(peftType))}, not "VERA"`,
      {
        path: `${label}/peft_type`,
        expected: "VERA",
        received: pyToPlain(peftType),
      },
    );
  const rField = cfg.get("r");
  let rank = 256;
  if (rField !== undefined) {
    if (!isPyInt(rField) || rField.value < 1n || rField.value > 2n ** 24n) bad("r", "a positive integer");
    rank = Number((rField as { value: bigint }).value);
  }
  const seedField = cfg.get("projection_prng_key");
  let seed = 0n;
  if (seedField !== undefined) {
    if (!isPyInt(seedField)) bad("projection_prng_key", "an integer");
    seed = (seedField as { value: bigint }).value;
    if (seed < SEED_MIN || seed > SEED_MAX)
      throw new VeraError(
        PeftErrorCode.PEFT_CONFIG_INVALID,
        `${label}: projection_prng_key ${seed} is outside what torch.manual_seed accepts`,
        {
          path: `${label}/projection_prng_key`,
          expected: "[-2^63, 2^64-1]",
          received: seed.toString(),
        },
      );
  }
  const boolField = (key: string, dflt: boolean): boolean => {
    const v = cfg.get(key);
    if (v === undefined) return dflt;
    if (typeof v !== "boolean") bad(key, "true or false");
    return v as boolean;
  };
  const saveProjection = boolField("save_projection", true);
  const fanInFanOut = boolField("fan_in_fan_out", false);
  const biasField = cfg.get("bias") ?? "none";
  if (biasField !== "none" && biasField !== "all" && biasField !== "vera_only")
    bad("bias", '"none", "all" or "vera_only"');
  const mts = cfg.get("modules_to_save");
  if (mts !== undefined && mts !== null && !(Array.isArray(mts) && mts.every((x) => typeof x === "string")))
    bad("modules_to_save", "null or a list of strings");
  for (const k of ["d_initial", "vera_dropout"]) {
    const v = cfg.get(k);
    if (v !== undefined && v !== null && !isPyNumber(v)) bad(k, "a number");
  }
  const pv = cfg.get("peft_version");
  const unknownConfigFields = [...cfg.keys()].filter((k) => !VERA_CONFIG_FIELDS.has(k)).sort();
  if (unknownConfigFields.length > 0)
    warnings.push(`${label} has field(s) PEFT 0.21 does not know: ${unknownConfigFields.join(", ")} (kept verbatim)`);
  return {
    text,
    cfg,
    rank,
    seed,
    saveProjection,
    fanInFanOut,
    bias: biasField as string,
    modulesToSave: (Array.isArray(mts) ? mts : []) as string[],
    ...(typeof pv === "string" ? { peftVersion: pv } : {}),
    unknownConfigFields,
    warnings,
  };
}

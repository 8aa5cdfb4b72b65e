import { isVeraError } from "../errors.js";
import type { SafetensorsFile } from "../safetensors/parse.js";
import { carriedTensorKind, type CarriedTensorKind } from "./carried-tensors.js";
import { KEY_VERA_A, KEY_VERA_B, MODEL_PREFIX, parseConfigText } from "./internal.js";
import { pyToPlain } from "./py-json.js";

/** Parameters of {@link describePeftAdapter}. */
export interface DescribePeftAdapterParams {
  /** The adapter_model.safetensors, parsed. */
  weights: SafetensorsFile;
  /** adapter_config.json's text; undefined when only the weights file was given. @default undefined */
  configText?: string;
  /** The folder (or the weights file, without a config) as the user named it, for the import command. */
  path: string;
  /** The adapter's name in its folder. @default "default" */
  adapterName?: string;
  /** Other adapters of the folder. @default [] */
  otherAdapters?: string[];
  /** Whether importing needs `--base` (see validatePeftAdapter's `needsBase`). @default true */
  needsBase?: boolean;
  /** What the command puts after `--base`. @default "BASE" */
  baseArg?: string;
}

/** A PEFT adapter as `vera inspect` describes it, read without importing (no base needed). */
export interface PeftAdapterDescription {
  format: "peft";
  path: string;
  adapterName: string;
  otherAdapters: string[];
  /** Whether adapter_config.json was there to read. */
  hasConfig: boolean;
  /** peft_type of the config ("VERA" for a VeRA adapter); null without a config or when absent. */
  peftType: string | null;
  peftVersion: string | null;
  taskType: string | null;
  baseModel: string | null;
  /** r of the config; null when absent. */
  rank: number | null;
  /** projection_prng_key as a decimal string (PEFT's default 0 when absent). */
  seed: string | null;
  targetModules: unknown;
  /** save_projection of the config (PEFT's default true when absent); null without a config. */
  saveProjection: boolean | null;
  /** Shapes of vera_A / vera_B when the file stores them. */
  projections: { stored: boolean; A?: number[]; B?: number[] };
  /** Every adapted module (a vera_lambda_b key), with its out_features. */
  modules: Array<{ name: string; outFeatures: number }>;
  /** Every tensor besides the VeRA vectors and projections, with what it is and the base parameter it replaces. */
  carried: Array<{ name: string; kind: CarriedTensorKind; param: string; dtype: string; shape: number[] }>;
  /** The command that turns it into a verakit file (with `--base` when in_features cannot be proven without one). */
  importCommand: string;
}

function field(cfg: Map<string, unknown> | undefined, key: string): unknown {
  const v = cfg?.get(key);
  return v === undefined ? undefined : pyToPlain(v as Parameters<typeof pyToPlain>[0]);
}

/** A shell word: the path as it is when plain, else single-quoted. */
function shellWord(s: string): string {
  return /^[A-Za-z0-9_./@:+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The config parsed exactly (big ints kept), or undefined when it cannot be. */
function parseConfig(text: string | undefined): Map<string, unknown> | undefined {
  if (text === undefined) return undefined;
  try {
    return parseConfigText(text, "adapter_config.json") as Map<string, unknown>;
  } catch (e) {
    if (isVeraError(e)) return undefined;
    throw e;
  }
}

/**
 * Describe a PEFT adapter from its files alone, as `vera inspect` shows it: peft_type, r, seed, targets, every
 * adapted module with its out_features, the carried tensors (modules_to_save, trainable biases, others) and
 * whether the projections are stored, plus the exact `vera import-peft` command to run. Nothing is checked here
 * (see {@link validatePeftAdapter}); a config that does not parse is described as absent fields.
 */
export function describePeftAdapter(params: DescribePeftAdapterParams): PeftAdapterDescription {
  const cfg = parseConfig(params.configText);
  const str = (k: string): string | null => {
    const v = field(cfg, k);
    return typeof v === "string" ? v : null;
  };
  const r = field(cfg, "r");
  const seedRaw = cfg?.get("projection_prng_key") as { kind?: string; value?: bigint } | undefined;
  const mts = field(cfg, "modules_to_save");
  const modulesToSave = Array.isArray(mts) ? mts.filter((x): x is string => typeof x === "string") : [];
  const bias = str("bias") ?? "none";
  const modules: PeftAdapterDescription["modules"] = [];
  const carried: PeftAdapterDescription["carried"] = [];
  for (const [name, info] of [...params.weights.tensors].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const lambda = /^(.+)\.p?vera_lambda_([bd])$/.exec(name);
    if (lambda) {
      if (lambda[2] === "b")
        modules.push({
          name: lambda[1]!.slice(lambda[1]!.startsWith(MODEL_PREFIX) ? MODEL_PREFIX.length : 0),
          outFeatures: info.shape[0] ?? 0,
        });
      continue;
    }
    if (name === KEY_VERA_A || name === KEY_VERA_B || /^base_model\.pvera_[AB]$/.test(name)) continue;
    carried.push({
      name,
      ...carriedTensorKind({ name, modulesToSave, bias }),
      dtype: info.dtype,
      shape: [...info.shape],
    });
  }
  const a = params.weights.tensors.get(KEY_VERA_A) ?? params.weights.tensors.get("base_model.pvera_A");
  const b = params.weights.tensors.get(KEY_VERA_B) ?? params.weights.tensors.get("base_model.pvera_B");
  const sp = field(cfg, "save_projection");
  const folder = params.configText === undefined ? "FOLDER" : shellWord(params.path);
  const adapterName = params.adapterName ?? "default";
  return {
    format: "peft",
    path: params.path,
    adapterName,
    otherAdapters: params.otherAdapters ?? [],
    hasConfig: cfg !== undefined,
    peftType: str("peft_type"),
    peftVersion: str("peft_version"),
    taskType: str("task_type"),
    baseModel: str("base_model_name_or_path"),
    rank: typeof r === "number" ? r : null,
    seed: cfg === undefined ? null : seedRaw?.kind === "int" ? String(seedRaw.value) : "0",
    targetModules: field(cfg, "target_modules") ?? null,
    saveProjection: cfg === undefined ? null : typeof sp === "boolean" ? sp : true,
    projections: {
      stored: a !== undefined || b !== undefined,
      ...(a ? { A: [...a.shape] } : {}),
      ...(b ? { B: [...b.shape] } : {}),
    },
    modules,
    carried,
    importCommand:
      `vera import-peft ${folder}${adapterName !== "default" ? ` --adapter ${shellWord(adapterName)}` : ""} ` +
      `-o adapter.vera.safetensors${params.needsBase === false ? "" : ` --base ${shellWord(params.baseArg ?? "BASE")}`}`,
  };
}

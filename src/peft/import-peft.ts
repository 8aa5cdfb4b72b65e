import { VeraError } from "../errors.js";
import { MODULE_NAME_RE } from "../format/validate.js";
import {
  PRNG_TORCH_MT19937_KAIMING,
  type ExtraTensor,
  type Layout,
  type VeraAdapter,
  type VeraModule,
  type VectorDtype,
} from "../format/types.js";
import { roundThroughBf16, roundThroughF16 } from "../numeric/half.js";
import { generateProjections, type Arithmetic, type ProjectionRounding } from "../projections/generate.js";
import { SEED_MAX, SEED_MIN } from "../projections/seed.js";
import { tensorBytes, type SafetensorsFile } from "../safetensors/parse.js";
import type { BaseShapes } from "./base-shapes.js";
import { PeftErrorCode } from "./error-codes.js";
import {
  decodeFloat,
  KEY_VERA_A,
  KEY_VERA_B,
  MODEL_PREFIX,
  parseConfigText,
  sameBits,
  VERA_CONFIG_FIELDS,
  type PeftOrigin,
} from "./internal.js";
import { dumpsPy as dumps, isPyInt, isPyNumber, pyToPlain, type PyJson, type PyObject } from "./py-json.js";
import { BaseIndex, chooseShape } from "./resolve-base.js";

/** Parameters of {@link importPeft}. */
export interface ImportPeftParams {
  /**
   * adapter_config.json: its text (kept verbatim, so an export reproduces it exactly) or a parsed object
   * (integral numbers are then read as ints, so `0.0` and `0` cannot be told apart).
   */
  config: string | Record<string, unknown>;
  /** The parsed adapter_model.safetensors (`parseSafetensors`). */
  weights: SafetensorsFile;
  /**
   * Module shapes of the base model (`baseShapesFromConfig`, `baseShapesFromWeights`, `baseShapesFromOnnx`).
   * PEFT files do not store in_features; without a base they are inferred only when unambiguous.
   * @default undefined
   */
  base?: BaseShapes;
  /** Name of the adapter (PEFT's sub-folder name for a non-default adapter). @default "default" */
  adapterName?: string;
  /** Where the config came from, for messages. @default "adapter_config.json" */
  configLabel?: string;
}

/** How the stored projections compared with regeneration. */
export interface ProjectionMatch {
  arithmetic: Arithmetic;
  rounding: ProjectionRounding;
}

/** What {@link importPeft} found and decided. */
export interface ImportPeftReport {
  adapterName: string;
  /** peft_version of the config, when written (PEFT >= 0.18). */
  peftVersion?: string;
  rank: number;
  /** projection_prng_key as a decimal string. */
  seed: string;
  modules: number;
  maxIn: number;
  maxOut: number;
  /** Where in_features came from, e.g. `base: config.json (llama, LlamaForCausalLM)`. */
  dimensionSource: string;
  projections: {
    /** Whether the file held vera_A / vera_B. */
    inFile: boolean;
    /** Every (arithmetic, rounding) whose regeneration equals the stored projections bit for bit. */
    matches: ProjectionMatch[];
    /** "regenerate": the adapter records the seed (and the match); "stored": kept explicitly (no match). */
    storage: "regenerate" | "stored";
  };
  /** PEFT keys carried as opaque extra tensors (modules_to_save, trainable biases, unknown tensors). */
  carriedTensors: string[];
  /** Config fields PEFT 0.21's VeraConfig does not know (kept verbatim for export). */
  unknownConfigFields: string[];
  warnings: string[];
}

/** Result of {@link importPeft}. */
export interface ImportPeftResult {
  adapter: VeraAdapter;
  report: ImportPeftReport;
}

const ARITHMETICS: Arithmetic[] = ["fused", "separate"];
const ROUNDINGS: ProjectionRounding[] = ["none", "bf16", "fp16"];

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

/**
 * Convert a PEFT VeRA adapter (adapter_config.json + adapter_model.safetensors) into a verakit adapter,
 * without losing a bit: the vectors are kept in their dtype, the config text is kept verbatim under
 * `extra.peft` (so {@link exportPeft} reproduces it), modules_to_save and trainable bias tensors are carried
 * as extra tensors under their PEFT key, and stored vera_A / vera_B are compared with regeneration under
 * both arithmetics and each rounding: a match is recorded, otherwise the projections are kept explicitly.
 * Throws a {@link VeraError} (`PEFT_*`) naming the module for every inconsistency.
 */
export function importPeft(params: ImportPeftParams): ImportPeftResult {
  const label = params.configLabel ?? "adapter_config.json";
  const { text, obj: cfg } = configText(params.config, label);
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

  // --- config
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
  const bias = biasField as string;
  const mts = cfg.get("modules_to_save");
  if (mts !== undefined && mts !== null && !(Array.isArray(mts) && mts.every((x) => typeof x === "string")))
    bad("modules_to_save", "null or a list of strings");
  const modulesToSave = (Array.isArray(mts) ? mts : []) as string[];
  for (const k of ["d_initial", "vera_dropout"]) {
    const v = cfg.get(k);
    if (v !== undefined && v !== null && !isPyNumber(v)) bad(k, "a number");
  }
  const pv = cfg.get("peft_version");
  const peftVersion = typeof pv === "string" ? pv : undefined;
  const unknownConfigFields = [...cfg.keys()].filter((k) => !VERA_CONFIG_FIELDS.has(k)).sort();
  if (unknownConfigFields.length > 0)
    warnings.push(`${label} has field(s) PEFT 0.21 does not know: ${unknownConfigFields.join(", ")} (kept verbatim)`);

  // --- tensors
  const file = params.weights;
  const lambdas = new Map<string, { b?: string; d?: string }>();
  const carried: string[] = [];
  let hasA = false;
  let hasB = false;
  for (const key of file.tensors.keys()) {
    if (key === KEY_VERA_A) hasA = true;
    else if (key === KEY_VERA_B) hasB = true;
    else if (key.startsWith(MODEL_PREFIX) && (key.endsWith(".vera_lambda_b") || key.endsWith(".vera_lambda_d"))) {
      const name = key.slice(MODEL_PREFIX.length, -".vera_lambda_b".length);
      const e = lambdas.get(name) ?? {};
      if (key.endsWith("_b")) e.b = key;
      else e.d = key;
      lambdas.set(name, e);
    } else carried.push(key);
  }
  if (lambdas.size === 0)
    throw new VeraError(
      PeftErrorCode.PEFT_LAMBDA_UNPAIRED,
      "the adapter file has no vera_lambda_b / vera_lambda_d tensors",
      {
        path: "adapter_model.safetensors",
        expected: "base_model.model.<module>.vera_lambda_b and .vera_lambda_d",
      },
    );

  // modules_to_save / bias tensors: carried, never dropped; anything else carried with a warning
  for (const key of carried) {
    const rest = key.startsWith(MODEL_PREFIX) ? key.slice(MODEL_PREFIX.length) : key;
    const parts = rest.split(".");
    const explained =
      (bias !== "none" && key.endsWith(".bias")) ||
      modulesToSave.some((m) => {
        const mp = m.split(".");
        for (let s = 0; s + mp.length <= parts.length; s++) if (mp.every((x, k) => parts[s + k] === x)) return true;
        return false;
      });
    if (!explained)
      warnings.push(`tensor "${key}" is neither a VeRA tensor, a modules_to_save tensor nor a bias: carried unchanged`);
  }

  const vectorDtypes = new Map<string, VectorDtype>();
  const readVector = (key: string, name: string, kind: string): Float32Array => {
    const info = file.tensors.get(key)!;
    if ((info.dtype !== "F32" && info.dtype !== "F16" && info.dtype !== "BF16") || info.shape.length !== 1)
      throw new VeraError(
        PeftErrorCode.PEFT_TENSOR_DTYPE,
        `module "${name}": ${kind} must be a 1-D F32/F16/BF16 tensor, found ${info.dtype} ${JSON.stringify(info.shape)}`,
        {
          path: key,
          expected: "1-D F32, F16 or BF16",
          received: `${info.dtype} ${JSON.stringify(info.shape)}`,
        },
      );
    vectorDtypes.set(key, info.dtype);
    return decodeFloat(tensorBytes(file, key), info.dtype);
  };

  type Pending = { name: string; lambdaD: Float32Array; lambdaB: Float32Array };
  const pending: Pending[] = [];
  for (const [name, e] of [...lambdas].sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0))) {
    if (!e.b || !e.d) {
      const have = e.b ? "vera_lambda_b" : "vera_lambda_d";
      const miss = e.b ? "vera_lambda_d" : "vera_lambda_b";
      throw new VeraError(PeftErrorCode.PEFT_LAMBDA_UNPAIRED, `module "${name}" has ${have} but no ${miss}`, {
        path: `${MODEL_PREFIX}${name}.${miss}`,
        expected: `${MODEL_PREFIX}${name}.${miss}`,
        received: "missing",
      });
    }
    if (!MODULE_NAME_RE.test(name))
      throw new VeraError(
        PeftErrorCode.PEFT_MODULE_NAME,
        `module path "${name}" cannot be stored: parts must be [A-Za-z0-9_-], dot-separated, not starting with __`,
        {
          path: e.b,
          expected: MODULE_NAME_RE.source,
          received: name,
        },
      );
    const lambdaD = readVector(e.d, name, "vera_lambda_d");
    const lambdaB = readVector(e.b, name, "vera_lambda_b");
    if (lambdaD.length !== rank)
      throw new VeraError(
        PeftErrorCode.PEFT_VECTOR_LENGTH,
        `module "${name}": vera_lambda_d has ${lambdaD.length} entries but r is ${rank}`,
        {
          path: e.d,
          expected: rank,
          received: lambdaD.length,
        },
      );
    if (lambdaB.length < 1)
      throw new VeraError(PeftErrorCode.PEFT_VECTOR_LENGTH, `module "${name}": vera_lambda_b is empty`, {
        path: e.b,
        expected: ">= 1",
        received: 0,
      });
    pending.push({ name, lambdaD, lambdaB });
  }

  // --- projections in the file
  if (hasA !== hasB)
    throw new VeraError(
      PeftErrorCode.PEFT_PROJECTION_SHAPE,
      `the file has ${hasA ? KEY_VERA_A : KEY_VERA_B} but not ${hasA ? KEY_VERA_B : KEY_VERA_A}`,
      {
        path: hasA ? KEY_VERA_B : KEY_VERA_A,
        expected: "both vera_A and vera_B, or neither",
      },
    );
  let storedA: Float32Array | undefined;
  let storedB: Float32Array | undefined;
  let fileMaxIn: number | undefined;
  let fileMaxOut: number | undefined;
  let projectionDtype: VectorDtype = "F32";
  if (hasA) {
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
    projectionDtype = ia.dtype as VectorDtype;
    fileMaxIn = ia.shape[1]!;
    fileMaxOut = ib.shape[0]!;
    storedA = decodeFloat(tensorBytes(file, KEY_VERA_A), ia.dtype);
    storedB = decodeFloat(tensorBytes(file, KEY_VERA_B), ib.dtype);
  } else if (saveProjection) {
    warnings.push(
      "save_projection is true but the file has no vera_A / vera_B (PEFT cannot load it as is); the projections are regenerated from projection_prng_key",
    );
  }

  // --- dimensions
  const defaultLayout: Layout = fanInFanOut ? "conv1d" : "linear";
  const modules: VeraModule[] = [];
  let dimensionSource: string;
  if (params.base) {
    const index = new BaseIndex(params.base);
    dimensionSource = `base: ${params.base.description}`;
    for (const p of pending) {
      const bm = index.find(p.name);
      if (!bm)
        throw new VeraError(
          PeftErrorCode.PEFT_BASE_MODULE_MISSING,
          `module "${p.name}" is not in the base model (${params.base.description})`,
          {
            path: p.name,
            expected: "a Linear/Conv1D module of the base with this path",
            received: "absent",
          },
        );
      const s = chooseShape({
        path: p.name,
        module: bm,
        outFeatures: p.lambdaB.length,
        fanInFanOut,
        baseLabel: params.base.description,
      });
      if (fileMaxIn !== undefined && s.inFeatures > fileMaxIn)
        throw new VeraError(
          PeftErrorCode.PEFT_BASE_SHAPE,
          `module "${p.name}": the base gives in_features ${s.inFeatures} but vera_A has only ${fileMaxIn} columns`,
          {
            path: p.name,
            expected: `<= ${fileMaxIn}`,
            received: s.inFeatures,
          },
        );
      modules.push({
        name: p.name,
        inFeatures: s.inFeatures,
        outFeatures: s.outFeatures,
        layout: s.layout,
        lambdaD: p.lambdaD,
        lambdaB: p.lambdaB,
      });
    }
  } else if (pending.length === 1 && fileMaxIn !== undefined) {
    const p = pending[0]!;
    dimensionSource = "inferred: a single module, in_features = columns of vera_A";
    modules.push({
      name: p.name,
      inFeatures: fileMaxIn,
      outFeatures: p.lambdaB.length,
      layout: defaultLayout,
      lambdaD: p.lambdaD,
      lambdaB: p.lambdaB,
    });
  } else {
    throw new VeraError(
      PeftErrorCode.PEFT_BASE_REQUIRED,
      `in_features of ${pending.length} module(s) cannot be inferred from the adapter alone (PEFT does not store them${fileMaxIn === undefined ? "" : "; vera_A only gives their maximum"}): pass the base model (a transformers config.json, model.safetensors or its index, or an ONNX model)`,
      { path: pending[0]?.name ?? "", expected: "a base model", received: "none" },
    );
  }
  const maxIn = Math.max(...modules.map((m) => m.inFeatures));
  const maxOut = Math.max(...modules.map((m) => m.outFeatures));
  if (fileMaxIn !== undefined && (maxIn !== fileMaxIn || maxOut !== fileMaxOut))
    throw new VeraError(
      PeftErrorCode.PEFT_BASE_SHAPE,
      `the stored projections are sized (max_in ${fileMaxIn}, max_out ${fileMaxOut}) but the modules' largest dims are (${maxIn}, ${maxOut}); PEFT sizes them by the largest in/out features of the adapted modules, so the base disagrees with the adapter`,
      {
        path: KEY_VERA_A,
        expected: `max_in ${maxIn}, max_out ${maxOut}`,
        received: `max_in ${fileMaxIn}, max_out ${fileMaxOut}`,
      },
    );

  // --- compare stored projections with regeneration
  const matches: ProjectionMatch[] = [];
  let arithmetic: Arithmetic = "fused";
  let rounding: ProjectionRounding = "none";
  let storedProjections: VeraAdapter["storedProjections"];
  if (storedA && storedB) {
    for (const ar of ARITHMETICS) {
      const g = generateProjections({ seed, rank, maxIn, maxOut, arithmetic: ar });
      for (const ro of ROUNDINGS) {
        const A =
          ro === "none"
            ? g.A
            : ro === "bf16"
              ? roundThroughBf16(Float32Array.from(g.A))
              : roundThroughF16(Float32Array.from(g.A));
        if (!sameBits(A, storedA)) continue;
        const B =
          ro === "none"
            ? g.B
            : ro === "bf16"
              ? roundThroughBf16(Float32Array.from(g.B))
              : roundThroughF16(Float32Array.from(g.B));
        if (sameBits(B, storedB)) matches.push({ arithmetic: ar, rounding: ro });
      }
    }
    if (matches.length > 0) {
      arithmetic = matches[0]!.arithmetic;
      rounding = matches[0]!.rounding;
      if (matches[0]!.arithmetic === "separate" && !matches.some((m) => m.arithmetic === "fused"))
        warnings.push(
          'the stored projections match torch\'s non-FMA CPU path (arithmetic "separate"), not the AVX2/AVX512 path PEFT uses on x86-64',
        );
      if (rounding !== "none")
        warnings.push(
          `the stored projections are the regenerated ones rounded to ${rounding} (a ${rounding} base model)`,
        );
    } else {
      storedProjections = { A: storedA, B: storedB };
      warnings.push(
        "the stored vera_A / vera_B match no regeneration from projection_prng_key (fused or separate arithmetic, f32/bf16/fp16 rounding): they are kept explicitly in the adapter",
      );
    }
  }

  // --- build
  const origin: PeftOrigin = { adapter_config: text };
  if (params.adapterName !== undefined && params.adapterName !== "default") origin.adapter_name = params.adapterName;
  const md = file.metadata;
  if (!(file.hasMetadata && Object.keys(md).length === 1 && md["format"] === "pt")) origin.weights_metadata = { ...md };
  const dtypes = [...vectorDtypes.values()];
  const vectorDtype: VectorDtype = dtypes.every((d) => d === dtypes[0]) ? dtypes[0]! : "F32";
  const odd: Record<string, VectorDtype> = {};
  for (const [k, d] of vectorDtypes) if (d !== vectorDtype) odd[k] = d;
  if (Object.keys(odd).length > 0) origin.vector_dtypes = odd;
  if (projectionDtype !== "F32") origin.projection_dtype = projectionDtype;
  if (!file.hasMetadata) origin.weights_metadata = {};

  const extraTensors: ExtraTensor[] = carried
    .sort((x, y) => (x < y ? -1 : x > y ? 1 : 0))
    .map((key) => {
      const info = file.tensors.get(key)!;
      return { name: key, dtype: info.dtype, shape: [...info.shape], data: tensorBytes(file, key).slice() };
    });

  const training: Record<string, unknown> = {};
  for (const k of [
    "d_initial",
    "vera_dropout",
    "bias",
    "task_type",
    "init_weights",
    "modules_to_save",
    "layers_to_transform",
    "layers_pattern",
    "target_modules",
  ]) {
    const v = cfg.get(k);
    if (v !== undefined && v !== null) training[k] = pyToPlain(v);
  }
  const baseModel: { id?: string; revision?: string } = {};
  const bmn = cfg.get("base_model_name_or_path");
  const rev = cfg.get("revision");
  if (typeof bmn === "string") baseModel.id = bmn;
  if (typeof rev === "string") baseModel.revision = rev;

  const adapter: VeraAdapter = {
    prng: { algorithm: PRNG_TORCH_MT19937_KAIMING, seed, arithmetic },
    rank,
    maxIn,
    maxOut,
    projectionRounding: rounding,
    vectorDtype,
    modules,
    training,
    extra: { peft: origin },
  };
  if (storedProjections) adapter.storedProjections = storedProjections;
  if (baseModel.id !== undefined || baseModel.revision !== undefined) adapter.baseModel = baseModel;
  if (extraTensors.length > 0) adapter.extraTensors = extraTensors;

  const report: ImportPeftReport = {
    adapterName: params.adapterName ?? "default",
    ...(peftVersion !== undefined ? { peftVersion } : {}),
    rank,
    seed: seed.toString(),
    modules: modules.length,
    maxIn,
    maxOut,
    dimensionSource,
    projections: { inFile: hasA, matches, storage: storedProjections ? "stored" : "regenerate" },
    carriedTensors: extraTensors.map((t) => t.name),
    unknownConfigFields,
    warnings,
  };
  return { adapter, report };
}

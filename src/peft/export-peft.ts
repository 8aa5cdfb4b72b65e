import { isVeraError, VeraError } from "../errors.js";
import type { VeraAdapter, VectorDtype } from "../format/types.js";
import { projectionsFor } from "../projections/for-adapter.js";
import type { TensorToWrite } from "../safetensors/write.js";
import { PeftErrorCode } from "./error-codes.js";
import {
  compareVersions,
  DEFAULT_PEFT_VERSION,
  encodeFloat,
  KEY_VERA_A,
  KEY_VERA_B,
  matchesTargets,
  MODEL_PREFIX,
  parseConfigText,
  parsePeftVersion,
  peftOrigin,
  VERA_CONFIG_FIELDS,
  VERA_CONFIG_FIELDS_0_11,
  writeTorchSafetensors,
  type PeftOrigin,
  type PeftVersion,
} from "./internal.js";
import { dumpsPy, pyFloat, pyInt, type PyJson, type PyObject } from "./py-json.js";
import { PVERA_CONFIG_FIELDS, pveraRegenerates, pveraTensors } from "./export-pvera.js";
import { isPveraSamplingTensor } from "./pvera-keys.js";

/** Parameters of {@link exportPeft}. */
export interface ExportPeftParams {
  adapter: VeraAdapter;
  /**
   * Write `base_model.vera_A` / `base_model.vera_B` and `save_projection: true`.
   * @default the imported config's save_projection, else true
   */
  saveProjection?: boolean;
  /**
   * The oldest PEFT version that must load the result (e.g. "0.13", "0.17.1"). Fields it would reject are
   * dropped from the config (PEFT < 0.14 raises on unknown keys; `peft_version` exists since 0.18), and
   * projections it would silently regenerate differently are refused (PEFT <= 0.20 ignores saved ones).
   * @default the version that wrote the imported config, else "0.21.0"
   */
  peftCompat?: string;
}

/** What {@link exportPeft} wrote and decided. */
export interface ExportPeftReport {
  /** The adapter's name when it was imported from a named (sub-folder) adapter. */
  adapterName?: string;
  saveProjection: boolean;
  peftCompat: string;
  /** Number of tensors written. */
  tensors: number;
  /** Config fields dropped for the compatibility target. */
  droppedFields: string[];
  /** "original": the imported config with verakit-owned fields updated; "new": built from defaults. */
  config: "original" | "new";
  warnings: string[];
}

/** Result of {@link exportPeft}: the two files of a PEFT adapter folder. */
export interface ExportPeftResult {
  /** adapter_config.json, exactly as PEFT writes it (json.dumps indent=2, sort_keys, no trailing newline). */
  configJson: string;
  /** adapter_model.safetensors bytes, laid out as safetensors.torch.save_file lays them out. */
  safetensors: Uint8Array;
  report: ExportPeftReport;
}

/** @internal Defaults of a fresh VeraConfig as PEFT 0.21 writes it from save_pretrained. */
function freshVeraConfig(adapter: VeraAdapter): PyObject {
  const t = adapter.training ?? {};
  const num = (k: string, d: number) =>
    typeof t[k] === "number" && Number.isFinite(t[k] as number) ? (t[k] as number) : d;
  const str = (k: string, allowed: string[], d: string) =>
    typeof t[k] === "string" && allowed.includes(t[k] as string) ? (t[k] as string) : d;
  const strList = (k: string): PyJson =>
    Array.isArray(t[k]) && (t[k] as unknown[]).every((x) => typeof x === "string") ? [...(t[k] as string[])] : null;
  const taskTypes = ["SEQ_CLS", "SEQ_2_SEQ_LM", "CAUSAL_LM", "TOKEN_CLS", "QUESTION_ANS", "FEATURE_EXTRACTION"];
  return new Map<string, PyJson>([
    ["auto_mapping", null],
    ["base_model_name_or_path", null],
    ["bias", str("bias", ["none", "all", "vera_only"], "none")],
    ["d_initial", pyFloat(num("d_initial", 0.1))],
    ["fan_in_fan_out", false],
    ["inference_mode", true],
    ["init_weights", typeof t["init_weights"] === "boolean" ? (t["init_weights"] as boolean) : true],
    ["layers_pattern", null],
    ["layers_to_transform", null],
    ["modules_to_save", strList("modules_to_save")],
    ["peft_type", "VERA"],
    ["peft_version", DEFAULT_PEFT_VERSION],
    ["projection_prng_key", pyInt(0)],
    ["r", pyInt(256)],
    ["revision", null],
    ["save_projection", true],
    ["target_modules", null],
    [
      "task_type",
      typeof t["task_type"] === "string" && taskTypes.includes(t["task_type"] as string)
        ? (t["task_type"] as string)
        : null,
    ],
    ["vera_dropout", pyFloat(num("vera_dropout", 0.0))],
  ]);
}

/** @internal The target_modules to write: the original when it still selects exactly these modules, else their full paths. */
export function targetModulesFor(adapter: VeraAdapter, original: PyJson | undefined, warnings: string[]): PyJson {
  const names = adapter.modules.map((m) => m.name);
  if (original !== undefined && original !== null) {
    let ok: Array<boolean | undefined>;
    try {
      ok = names.map((n) => matchesTargets(n, original));
    } catch (e) {
      if (!isVeraError(e) || e.code !== PeftErrorCode.PEFT_TARGET_REGEX) throw e;
      warnings.push(`${e.message}: target_modules written as the modules' full paths`);
      return [...names].sort();
    }
    if (ok.every((x) => x === true) || (original === "all-linear" && names.length > 0)) return original;
    if (ok.some((x) => x === false))
      warnings.push(
        "target_modules of the imported config does not select every module any more: written as the modules' full paths",
      );
  }
  return [...names].sort();
}

/** @internal Refuse a compatibility target that cannot load a VeRA (or PVeRA) adapter of these module shapes. */
function checkPeftCompat(a: VeraAdapter, compat: PeftVersion, pvera: boolean): void {
  if (pvera && compareVersions(compat, { major: 0, minor: 21 }) < 0)
    throw new VeraError(PeftErrorCode.PEFT_COMPAT, `PVeRA exists in PEFT since 0.21.0; ${compat.text} cannot load it`, {
      path: "peftCompat",
      expected: ">= 0.21",
      received: compat.text,
    });
  if (compareVersions(compat, { major: 0, minor: 11 }) < 0)
    throw new VeraError(PeftErrorCode.PEFT_COMPAT, `VeRA exists in PEFT since 0.11.0; ${compat.text} cannot load it`, {
      path: "peftCompat",
      expected: ">= 0.11",
      received: compat.text,
    });
  const shapes = new Set(a.modules.map((m) => `${m.inFeatures}x${m.outFeatures}`));
  if (compareVersions(compat, { major: 0, minor: 12 }) < 0 && shapes.size > 1)
    throw new VeraError(
      PeftErrorCode.PEFT_COMPAT,
      `PEFT ${compat.text} requires every adapted module to have the same shape (found ${shapes.size} shapes); modules of different shapes need PEFT >= 0.12`,
      {
        path: "peftCompat",
        expected: ">= 0.12",
        received: compat.text,
      },
    );
}

/**
 * @internal Projections: refuse what PEFT would silently replace, warn about what it regenerates only
 * approximately. `explicitCompat`: the caller named the compatibility target.
 */
function checkProjections(
  a: VeraAdapter,
  compat: PeftVersion,
  saveProjection: boolean,
  explicitCompat: boolean,
  warnings: string[],
): void {
  const oldLoader = compareVersions(compat, { major: 0, minor: 21 }) < 0;
  const regeneratesOnLoad = !saveProjection || oldLoader;
  if (a.storedProjections && saveProjection && oldLoader && !explicitCompat) {
    // reproducing an imported file as it was: say what its PEFT version does with it
    warnings.push(
      `the adapter keeps projections that no seed regenerates; PEFT ${compat.text} (<= 0.20) ignores saved projections and regenerates them: load it with PEFT >= 0.21`,
    );
  } else if (a.storedProjections && regeneratesOnLoad)
    throw new VeraError(
      PeftErrorCode.PEFT_PROJECTION_NOT_REGENERABLE,
      saveProjection
        ? `the adapter keeps projections that no seed regenerates, and PEFT ${compat.text} (<= 0.20) ignores saved projections and regenerates them: it would silently run other matrices. Target PEFT >= 0.21 (--peft-compat 0.21) or expand to LoRA instead`
        : "the adapter keeps projections that no seed regenerates: export them (--save-projection) for PEFT >= 0.21, or expand to LoRA instead",
      {
        path: "storedProjections",
        expected: "projections regenerable from the seed",
        received: "explicit projections",
      },
    );
  if (!a.storedProjections && regeneratesOnLoad) {
    if (a.prng.arithmetic === "separate")
      warnings.push(
        'the projections follow torch\'s non-FMA arithmetic ("separate"); PEFT regenerating them on an AVX2/AVX512 x86-64 CPU gets last-bit differences. Save the projections (PEFT >= 0.21) to pin them',
      );
    if (a.projectionRounding !== "none")
      warnings.push(
        `the projections are rounded to ${a.projectionRounding}; PEFT regenerates those values only when the base model is loaded in ${a.projectionRounding}`,
      );
  }
}

/** @internal Set the config fields owned by the adapter (in place). */
function setAdapterFields(
  cfg: PyObject,
  a: VeraAdapter,
  saveProjection: boolean,
  configKind: "original" | "new",
  warnings: string[],
  pvera: boolean,
): void {
  cfg.set("peft_type", pvera ? "PVERA" : "VERA");
  cfg.set("r", pyInt(a.rank));
  cfg.set("projection_prng_key", pyInt(a.prng.seed));
  cfg.set("save_projection", saveProjection);
  if (a.modules.some((m) => m.layout === "conv1d") && cfg.get("fan_in_fan_out") !== true) {
    cfg.set("fan_in_fan_out", true);
    if (configKind === "original")
      warnings.push("fan_in_fan_out set to true: the adapter has Conv1D (fan_in_fan_out) modules");
  }
  if (a.baseModel?.id !== undefined) cfg.set("base_model_name_or_path", a.baseModel.id);
  if (a.baseModel?.revision !== undefined) cfg.set("revision", a.baseModel.revision);
  cfg.set("target_modules", targetModulesFor(a, cfg.get("target_modules"), warnings));
  const carried = (a.extraTensors ?? []).filter((t) => !isPveraSamplingTensor(t.name));
  if (carried.length > 0 && (cfg.get("modules_to_save") ?? null) === null && (cfg.get("bias") ?? "none") === "none")
    warnings.push(
      "the adapter carries extra tensors but the config names no modules_to_save and no bias: PEFT loads them only if their keys match its model",
    );
}

/**
 * @internal Fit the config to the compatibility target (in place): drop the fields it would reject, add
 * peft_version where it knows it. Returns the dropped fields.
 */
function fitConfigToCompat(
  cfg: PyObject,
  compat: PeftVersion,
  peftCompat: string | undefined,
  warnings: string[],
  known: Set<string> = VERA_CONFIG_FIELDS,
): string[] {
  const dropped: string[] = [];
  if (compareVersions(compat, { major: 0, minor: 18 }) < 0 && cfg.has("peft_version")) {
    cfg.delete("peft_version");
    dropped.push("peft_version");
  } else if (compareVersions(compat, { major: 0, minor: 18 }) >= 0 && !cfg.has("peft_version")) {
    cfg.set("peft_version", peftCompat !== undefined ? compat.text : DEFAULT_PEFT_VERSION);
  }
  if (compareVersions(compat, { major: 0, minor: 14 }) < 0) {
    for (const k of [...cfg.keys()])
      if (!VERA_CONFIG_FIELDS_0_11.has(k)) {
        cfg.delete(k);
        dropped.push(k);
      }
  } else {
    const unknown = [...cfg.keys()].filter((k) => !known.has(k));
    if (unknown.length > 0)
      warnings.push(`config field(s) ${unknown.join(", ")} kept; PEFT >= 0.14 ignores them with a warning`);
  }
  return dropped;
}

/** @internal The tensors of adapter_model.safetensors: the vectors, the projections if saved, the carried extras. */
function peftTensors(a: VeraAdapter, origin: PeftOrigin | undefined, saveProjection: boolean): TensorToWrite[] {
  const tensors: TensorToWrite[] = [];
  const dtypeOf = (key: string): VectorDtype => origin?.vector_dtypes?.[key] ?? a.vectorDtype;
  for (const m of a.modules) {
    for (const [suffix, v] of [
      ["vera_lambda_b", m.lambdaB],
      ["vera_lambda_d", m.lambdaD],
    ] as const) {
      const name = `${MODEL_PREFIX}${m.name}.${suffix}`;
      const dtype = dtypeOf(name);
      tensors.push({ name, dtype, shape: [v.length], data: encodeFloat(v, dtype) });
    }
  }
  if (saveProjection) {
    const p = projectionsFor(a);
    const dtype = origin?.projection_dtype ?? "F32";
    tensors.push({ name: KEY_VERA_A, dtype, shape: [a.rank, a.maxIn], data: encodeFloat(p.A, dtype) });
    tensors.push({ name: KEY_VERA_B, dtype, shape: [a.maxOut, a.rank], data: encodeFloat(p.B, dtype) });
  }
  const names = new Set(tensors.map((t) => t.name));
  // PVeRA's sampling-only halves go into PVeRA's own tensors (pveraTensors), never under their own names
  for (const t of (a.extraTensors ?? []).filter((x) => !isPveraSamplingTensor(x.name))) {
    if (names.has(t.name))
      throw new VeraError(
        PeftErrorCode.PEFT_TENSOR_UNEXPECTED,
        `extra tensor "${t.name}" collides with a VeRA tensor of the same key`,
        { path: t.name },
      );
    tensors.push({ name: t.name, dtype: t.dtype, shape: t.shape, data: t.data });
  }
  return tensors;
}

/**
 * Turn a verakit adapter into the two files of a PEFT VeRA adapter folder that PEFT loads unchanged: the
 * config as PEFT writes it (the imported one, reproduced exactly, with r, projection_prng_key,
 * save_projection, base model and target_modules updated from the adapter), the vectors under PEFT's keys
 * in their dtype, the carried extra tensors, and, with `saveProjection`, the projections PEFT regenerates.
 * An adapter imported from PEFT's PVeRA is written back as PVeRA's folder (its config, `pvera_*` keys, the carried
 * log-variance halves; see src/peft/export-pvera.ts).
 * Throws `PEFT_PROJECTION_NOT_REGENERABLE` when the adapter keeps projections no seed reproduces and the
 * target would regenerate them (no saved projections, or PEFT <= 0.20; PVeRA's own regeneration is checked),
 * `PEFT_PVERA_INCOMPLETE` when a PVeRA adapter lacks a log-variance half, `PEFT_COMPAT` for PVeRA below PEFT 0.21.
 */
export function exportPeft(params: ExportPeftParams): ExportPeftResult {
  const a = params.adapter;
  const origin = peftOrigin(a);
  const warnings: string[] = [];
  // an adapter read from PEFT's PVeRA is written back as PVeRA (its own config and keys)
  const pvera = origin?.pvera_config !== undefined;
  const cfg = origin
    ? pvera
      ? parseConfigText(origin.pvera_config!, "adapter.extra.peft.pvera_config")
      : parseConfigText(origin.adapter_config, "adapter.extra.peft.adapter_config")
    : freshVeraConfig(a);
  const configKind: "original" | "new" = origin ? "original" : "new";
  const saveProjection =
    params.saveProjection ??
    (typeof cfg.get("save_projection") === "boolean" ? (cfg.get("save_projection") as boolean) : true);
  const origVersion = typeof cfg.get("peft_version") === "string" ? (cfg.get("peft_version") as string) : undefined;
  const compatText = params.peftCompat ?? (origin ? (origVersion ?? "0.17.0") : DEFAULT_PEFT_VERSION);
  const compat: PeftVersion = parsePeftVersion(compatText);
  checkPeftCompat(a, compat, pvera);
  if (!pvera || saveProjection || !pveraRegenerates(a))
    checkProjections(a, compat, saveProjection, params.peftCompat !== undefined, warnings);
  setAdapterFields(cfg, a, saveProjection, configKind, warnings, pvera);
  const known = pvera ? PVERA_CONFIG_FIELDS : VERA_CONFIG_FIELDS;
  const dropped = fitConfigToCompat(cfg, compat, params.peftCompat, warnings, known);
  const veraTensors = peftTensors(a, origin, saveProjection);
  const tensors = pvera ? pveraTensors(a, veraTensors) : veraTensors;
  const metadata = origin?.weights_metadata ?? { format: "pt" };
  const safetensors = writeTorchSafetensors(tensors, metadata);
  return {
    configJson: dumpsPy(cfg),
    safetensors,
    report: {
      ...(origin?.adapter_name !== undefined ? { adapterName: origin.adapter_name } : {}),
      saveProjection,
      peftCompat: compat.text,
      tensors: tensors.length,
      droppedFields: dropped,
      config: configKind,
      warnings,
    },
  };
}

import { ErrorCode, VeraError, type Issue } from "../errors.js";
import { parseSafetensors, type SafetensorsFile } from "../safetensors/parse.js";
import { parseStrictJson, type JsonValue } from "../util/strict-json.js";
import { sha256Hex } from "../util/sha256.js";
import { FORMAT_MAJOR, FORMAT_MINOR, PRNG_TORCH_MT19937_KAIMING, type VeraAdapter } from "./types.js";
import { encodeVera } from "./encode-vera.js";
import {
  checkBaseModel,
  checkDigestField,
  checkModules,
  checkPrng,
  checkProjections,
} from "./internal/check-metadata.js";
import { collectExtraTensors, readModuleVectors, readStoredProjections } from "./internal/check-tensors.js";
import { createChecker, describe, isObj, type Checker, type Obj } from "./internal/checker.js";

export { MODULE_NAME_RE } from "./internal/check-metadata.js";

/** Result of {@link validateVera}. */
export interface ValidationResult {
  /** True when no issue (error) was found. Warnings do not make a file invalid. */
  ok: boolean;
  /** Every error found, each with a stable code. */
  issues: Issue[];
  /** Non-fatal findings (e.g. unknown fields of a newer minor version, non-canonical bytes). */
  warnings: Issue[];
  /** The decoded adapter when `ok`. */
  adapter?: VeraAdapter;
  /** The format version the file declares, when readable. */
  version?: string;
  /** Digest status. */
  digest?: { algorithm: string; expected: string; actual: string; ok: boolean };
}

/** Options of {@link validateVera} / {@link readVera}. */
export interface ValidateOptions {
  /**
   * Check the SHA-256 digest of the tensor data. Turning it off is for recovering damaged files only.
   * @default true
   */
  checkDigest?: boolean;
  /**
   * Re-serialise a valid file and warn (VERA_NOT_CANONICAL) when the bytes differ from what a
   * canonical writer produces.
   * @default true
   */
  checkCanonical?: boolean;
}

const KNOWN_TOP = new Set([
  "format_version",
  "prng",
  "projections",
  "modules",
  "base_model",
  "training",
  "extra",
  "digest",
]);

/**
 * Validate verakit file bytes and report ALL problems found (after the container itself parses),
 * each with a stable code, a path, and what was expected and found. Never throws on bad input.
 */
export function validateVera(bytes: Uint8Array, options: ValidateOptions = {}): ValidationResult {
  const c = createChecker();
  const { issues, warnings } = c;
  let file: SafetensorsFile;
  try {
    file = parseSafetensors(bytes);
  } catch (e) {
    if (e instanceof VeraError) return { ok: false, issues: e.issues, warnings };
    throw e;
  }
  const head = readHeader(file, c);
  if ("stop" in head) return { ok: false, issues, warnings, ...(head.version ? { version: head.version } : {}) };
  const { meta, version } = head;
  c.unknownFields(meta, KNOWN_TOP, "");
  const prng = checkPrng(meta, c);
  const proj = checkProjections(meta, c);
  const entries = checkModules(meta, proj, c);
  const baseModel = checkBaseModel(meta, c);
  const digest = checkDigest(bytes, file, checkDigestField(meta, c), options, c);
  const used = new Set<string>();
  const { modules, vectorDtype } = readModuleVectors(file, entries, proj.rank, meta["modules"], c, used);
  const storedProjections = readStoredProjections(file, proj, c, used);
  const extraTensors = collectExtraTensors(file, c, used);

  if (issues.length > 0) return { ok: false, issues, warnings, version, ...(digest ? { digest } : {}) };
  const adapter: VeraAdapter = {
    prng: { algorithm: PRNG_TORCH_MT19937_KAIMING, seed: prng.seed!, arithmetic: prng.arithmetic! },
    rank: proj.rank!,
    maxIn: proj.maxIn!,
    maxOut: proj.maxOut!,
    projectionRounding: proj.rounding!,
    vectorDtype: vectorDtype ?? "F32",
    modules,
  };
  if (storedProjections) adapter.storedProjections = storedProjections;
  if (baseModel && Object.keys(baseModel).length > 0) adapter.baseModel = baseModel;
  if (isObj(meta["training"])) adapter.training = meta["training"] as Record<string, unknown>;
  if (isObj(meta["extra"])) adapter.extra = meta["extra"] as Record<string, unknown>;
  if (extraTensors.length > 0) adapter.extraTensors = extraTensors;
  if (options.checkCanonical !== false && c.newerMinorVersion === undefined) checkCanonical(bytes, adapter, digest, c);
  return { ok: true, issues, warnings, adapter, version, ...(digest ? { digest } : {}) };
}

/**
 * The `vera` metadata as an object, its version checked (a known major). `stop` when nothing after can
 * be checked. Sets the checker's `newerMinorVersion` for a newer minor.
 */
function readHeader(
  file: SafetensorsFile,
  c: Checker,
): { meta: Obj; version: string } | { stop: true; version?: string } {
  const metaText = file.metadata["vera"];
  if (file.metadata["format"] !== "vera" || metaText === undefined) {
    c.add(
      ErrorCode.VERA_NOT_VERA,
      'not a verakit file: __metadata__ needs "format": "vera" and a "vera" entry',
      "__metadata__",
      '{"format":"vera","vera":"{...}"}',
      JSON.stringify(file.metadata).slice(0, 200),
    );
    return { stop: true };
  }
  let meta: JsonValue;
  try {
    meta = parseStrictJson(metaText);
  } catch (e) {
    c.add(
      ErrorCode.VERA_METADATA_JSON,
      `__metadata__.vera is not valid JSON: ${(e as Error).message}`,
      "__metadata__/vera",
    );
    return { stop: true };
  }
  if (!isObj(meta)) {
    c.add(
      ErrorCode.VERA_METADATA_JSON,
      "__metadata__.vera is not a JSON object",
      "__metadata__/vera",
      "object",
      describe(meta),
    );
    return { stop: true };
  }
  const version = meta["format_version"];
  if (typeof version !== "string" || !/^(0|[1-9][0-9]{0,5})\.(0|[1-9][0-9]{0,5})$/.test(version)) {
    c.add(
      ErrorCode.VERA_VERSION,
      "format_version must be a string MAJOR.MINOR",
      "/format_version",
      '"1.0"',
      JSON.stringify(version),
    );
    return { stop: true };
  }
  const [major, minor] = version.split(".").map(Number) as [number, number];
  if (major !== FORMAT_MAJOR) {
    c.add(
      ErrorCode.VERA_MAJOR_UNSUPPORTED,
      `format major version ${major} is not supported (this reader knows ${FORMAT_MAJOR}.x)`,
      "/format_version",
      `${FORMAT_MAJOR}.x`,
      version,
    );
    return { stop: true, version };
  }
  if (minor > FORMAT_MINOR) c.newerMinorVersion = version;
  return { meta, version };
}

/** Hash the tensor data against the digest field (unless turned off). */
function checkDigest(
  bytes: Uint8Array,
  file: SafetensorsFile,
  expectedDigest: string | undefined,
  options: ValidateOptions,
  c: Checker,
): ValidationResult["digest"] {
  if (expectedDigest === undefined || options.checkDigest === false) return undefined;
  const actual = sha256Hex(bytes.subarray(file.dataStart));
  const digest = { algorithm: "sha256", expected: expectedDigest, actual, ok: actual === expectedDigest };
  if (!digest.ok)
    c.add(
      ErrorCode.VERA_DIGEST_MISMATCH,
      `tensor data digest mismatch: the file is corrupted or was modified`,
      "/digest/data",
      expectedDigest,
      actual,
    );
  return digest;
}

/** Warn (VERA_NOT_CANONICAL) when a valid file's bytes are not what the canonical writer produces. */
function checkCanonical(bytes: Uint8Array, adapter: VeraAdapter, digest: ValidationResult["digest"], c: Checker): void {
  // the canonical form's digest is the one just computed when the data sections are equal, and the
  // comparison fails anyway when they are not: the data is hashed once per validation
  const again = encodeVera({ adapter, ...(digest ? { dataDigest: digest.actual } : {}) });
  let same = again.length === bytes.length;
  for (let i = 0; same && i < again.length; i++) same = again[i] === bytes[i];
  if (!same)
    c.warn(
      ErrorCode.VERA_NOT_CANONICAL,
      "the file is valid but not in canonical form (rewrite it with verakit to canonicalise)",
    );
}

/** Read a verakit file. Throws a {@link VeraError} carrying every issue found. */
export function readVera(bytes: Uint8Array, options: ValidateOptions = {}): VeraAdapter {
  const r = validateVera(bytes, options);
  if (!r.ok || !r.adapter) throw VeraError.fromIssues(r.issues);
  return r.adapter;
}

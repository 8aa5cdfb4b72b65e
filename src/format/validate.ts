import { ErrorCode, VeraError, type Issue } from "../errors.js";
import { bf16ArrayToF32, f16ArrayToF32 } from "../numeric/half.js";
import { parseSeed } from "../projections/seed.js";
import { asFloat32, asUint16, parseSafetensors, tensorBytes, type SafetensorsFile } from "../safetensors/parse.js";
import { parseStrictJson, type JsonValue } from "../util/strict-json.js";
import { sha256Hex } from "../util/sha256.js";
import {
  EXTRA_TENSOR_PREFIX,
  FORMAT_MAJOR,
  FORMAT_MINOR,
  MAX_DIM,
  PRNG_TORCH_MT19937_KAIMING,
  type ExtraTensor,
  type Layout,
  type VeraAdapter,
  type VeraModule,
  type VectorDtype,
} from "./types.js";
import { MAX_PROJECTION_ELEMENTS } from "../projections/generate.js";
import { encodeVera } from "./encode-vera.js";

/** Module names: dot-separated parts of letters, digits, `_` and `-`; not starting with `__`. */
export const MODULE_NAME_RE = /^(?!__)[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;

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

type Obj = { [k: string]: JsonValue };
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);
const isPosInt = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 1;
const describe = (v: unknown): string => (v === null ? "null" : Array.isArray(v) ? "array" : typeof v);

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
const KNOWN_PRNG = new Set(["algorithm", "seed", "arithmetic"]);
const KNOWN_PROJ = new Set(["rank", "max_in", "max_out", "rounding", "storage"]);
const KNOWN_MODULE = new Set(["name", "in_features", "out_features", "layout"]);
const KNOWN_BASE = new Set(["id", "revision"]);
const KNOWN_DIGEST = new Set(["algorithm", "data"]);

/**
 * Validate verakit file bytes and report ALL problems found (after the container itself parses),
 * each with a stable code, a path, and what was expected and found. Never throws on bad input.
 */
export function validateVera(bytes: Uint8Array, options: ValidateOptions = {}): ValidationResult {
  const issues: Issue[] = [];
  const warnings: Issue[] = [];
  const add = (code: string, message: string, path?: string, expected?: unknown, received?: unknown) =>
    issues.push({
      code,
      message,
      ...(path !== undefined ? { path } : {}),
      ...(expected !== undefined ? { expected } : {}),
      ...(received !== undefined ? { received } : {}),
    });
  const warn = (code: string, message: string, path?: string) =>
    warnings.push({ code, message, ...(path !== undefined ? { path } : {}) });

  let file: SafetensorsFile;
  try {
    file = parseSafetensors(bytes);
  } catch (e) {
    if (e instanceof VeraError) return { ok: false, issues: e.issues, warnings };
    throw e;
  }
  const metaText = file.metadata["vera"];
  if (file.metadata["format"] !== "vera" || metaText === undefined) {
    add(
      ErrorCode.VERA_NOT_VERA,
      'not a verakit file: __metadata__ needs "format": "vera" and a "vera" entry',
      "__metadata__",
      '{"format":"vera","vera":"{...}"}',
      JSON.stringify(file.metadata).slice(0, 200),
    );
    return { ok: false, issues, warnings };
  }
  let meta: JsonValue;
  try {
    meta = parseStrictJson(metaText);
  } catch (e) {
    add(
      ErrorCode.VERA_METADATA_JSON,
      `__metadata__.vera is not valid JSON: ${(e as Error).message}`,
      "__metadata__/vera",
    );
    return { ok: false, issues, warnings };
  }
  if (!isObj(meta)) {
    add(
      ErrorCode.VERA_METADATA_JSON,
      "__metadata__.vera is not a JSON object",
      "__metadata__/vera",
      "object",
      describe(meta),
    );
    return { ok: false, issues, warnings };
  }
  const version = meta["format_version"];
  if (typeof version !== "string" || !/^(0|[1-9][0-9]{0,5})\.(0|[1-9][0-9]{0,5})$/.test(version)) {
    add(
      ErrorCode.VERA_VERSION,
      "format_version must be a string MAJOR.MINOR",
      "/format_version",
      '"1.0"',
      JSON.stringify(version),
    );
    return { ok: false, issues, warnings };
  }
  const [major, minor] = version.split(".").map(Number) as [number, number];
  if (major !== FORMAT_MAJOR) {
    add(
      ErrorCode.VERA_MAJOR_UNSUPPORTED,
      `format major version ${major} is not supported (this reader knows ${FORMAT_MAJOR}.x)`,
      "/format_version",
      `${FORMAT_MAJOR}.x`,
      version,
    );
    return { ok: false, issues, warnings, version };
  }
  const newerMinor = minor > FORMAT_MINOR;
  const unknownFields = (o: Obj, known: Set<string>, path: string) => {
    for (const k of Object.keys(o))
      if (!known.has(k)) {
        if (newerMinor)
          warn(ErrorCode.VERA_SCHEMA, `unknown field "${k}" (from format ${version}) ignored`, `${path}/${k}`);
        else add(ErrorCode.VERA_SCHEMA, `unknown field "${k}"`, `${path}/${k}`, [...known].join(", "), k);
      }
  };
  unknownFields(meta, KNOWN_TOP, "");

  // prng
  let seed: bigint | undefined;
  let arithmetic: "fused" | "separate" | undefined;
  const prng = meta["prng"];
  if (!isObj(prng)) add(ErrorCode.VERA_SCHEMA, "prng must be an object", "/prng", "object", describe(prng));
  else {
    unknownFields(prng, KNOWN_PRNG, "/prng");
    if (prng["algorithm"] !== PRNG_TORCH_MT19937_KAIMING)
      add(
        ErrorCode.VERA_PRNG_UNKNOWN,
        `unknown PRNG algorithm ${JSON.stringify(prng["algorithm"])}`,
        "/prng/algorithm",
        PRNG_TORCH_MT19937_KAIMING,
        prng["algorithm"],
      );
    if (prng["arithmetic"] !== "fused" && prng["arithmetic"] !== "separate")
      add(
        ErrorCode.VERA_ARITHMETIC,
        `prng.arithmetic must be "fused" or "separate"`,
        "/prng/arithmetic",
        "fused|separate",
        prng["arithmetic"],
      );
    else arithmetic = prng["arithmetic"];
    const s = prng["seed"];
    if (typeof s !== "string")
      add(ErrorCode.VERA_SEED, "prng.seed must be a decimal integer string", "/prng/seed", "string", describe(s));
    else {
      try {
        seed = parseSeed(s);
      } catch (e) {
        add(ErrorCode.VERA_SEED, (e as Error).message, "/prng/seed", "[-2^63, 2^64-1]", s);
      }
    }
  }

  // projections
  let rank: number | undefined, maxIn: number | undefined, maxOut: number | undefined;
  let rounding: "none" | "bf16" | "fp16" | undefined;
  let storage: "regenerate" | "stored" | undefined;
  const proj = meta["projections"];
  if (!isObj(proj))
    add(ErrorCode.VERA_SCHEMA, "projections must be an object", "/projections", "object", describe(proj));
  else {
    unknownFields(proj, KNOWN_PROJ, "/projections");
    const r = proj["rank"];
    if (!isPosInt(r) || r > MAX_DIM)
      add(ErrorCode.VERA_RANK, `rank must be an integer in [1, ${MAX_DIM}]`, "/projections/rank", `1..${MAX_DIM}`, r);
    else rank = r;
    for (const [key, set] of [
      ["max_in", (v: number) => (maxIn = v)],
      ["max_out", (v: number) => (maxOut = v)],
    ] as const) {
      const v = proj[key];
      if (!isPosInt(v) || v > MAX_DIM)
        add(
          ErrorCode.VERA_MAX_DIMS,
          `${key} must be an integer in [1, ${MAX_DIM}]`,
          `/projections/${key}`,
          `1..${MAX_DIM}`,
          v,
        );
      else set(v);
    }
    if (
      rank !== undefined &&
      maxIn !== undefined &&
      maxOut !== undefined &&
      (rank * maxIn > MAX_PROJECTION_ELEMENTS || rank * maxOut > MAX_PROJECTION_ELEMENTS)
    )
      add(
        ErrorCode.VERA_MAX_DIMS,
        `projections of rank ${rank} x ${Math.max(maxIn, maxOut)} exceed ${MAX_PROJECTION_ELEMENTS} elements`,
        "/projections",
        `<= ${MAX_PROJECTION_ELEMENTS}`,
        rank * Math.max(maxIn, maxOut),
      );
    const ro = proj["rounding"];
    if (ro !== "none" && ro !== "bf16" && ro !== "fp16")
      add(
        ErrorCode.VERA_ROUNDING,
        'projections.rounding must be "none", "bf16" or "fp16"',
        "/projections/rounding",
        "none|bf16|fp16",
        ro,
      );
    else rounding = ro;
    const st = proj["storage"];
    if (st !== "regenerate" && st !== "stored")
      add(
        ErrorCode.VERA_SCHEMA,
        'projections.storage must be "regenerate" or "stored"',
        "/projections/storage",
        "regenerate|stored",
        st,
      );
    else storage = st;
  }

  // modules
  const modulesMeta: Array<{ name: string; inFeatures: number; outFeatures: number; layout: Layout }> = [];
  const mods = meta["modules"];
  if (!Array.isArray(mods) || mods.length === 0)
    add(ErrorCode.VERA_SCHEMA, "modules must be a non-empty array", "/modules", "non-empty array", describe(mods));
  else {
    const seen = new Set<string>();
    let prev: string | undefined;
    mods.forEach((m, i) => {
      const p = `/modules/${i}`;
      if (!isObj(m)) return add(ErrorCode.VERA_SCHEMA, "module entry must be an object", p, "object", describe(m));
      unknownFields(m, KNOWN_MODULE, p);
      const name = m["name"];
      let ok = true;
      if (typeof name !== "string" || !MODULE_NAME_RE.test(name)) {
        add(
          ErrorCode.VERA_MODULE_NAME,
          "module name must be dot-separated [A-Za-z0-9_-] parts, not starting with __",
          `${p}/name`,
          MODULE_NAME_RE.source,
          name,
        );
        ok = false;
      } else {
        if (seen.has(name)) {
          add(ErrorCode.VERA_MODULE_DUPLICATE, `module "${name}" is listed twice`, `${p}/name`, "unique names", name);
          ok = false;
        } else if (prev !== undefined && !(prev < name))
          add(
            ErrorCode.VERA_MODULE_ORDER,
            `modules must be sorted by name: "${name}" comes after "${prev}"`,
            `${p}/name`,
            `> "${prev}"`,
            name,
          );
        seen.add(name);
        prev = name;
      }
      const inF = m["in_features"],
        outF = m["out_features"];
      if (!isPosInt(inF) || inF > MAX_DIM) {
        add(
          ErrorCode.VERA_MODULE_DIMS,
          `in_features must be an integer in [1, ${MAX_DIM}]`,
          `${p}/in_features`,
          `1..${MAX_DIM}`,
          inF,
        );
        ok = false;
      } else if (maxIn !== undefined && inF > maxIn) {
        add(
          ErrorCode.VERA_MODULE_RANGE,
          `module "${String(name)}" in_features ${inF} exceeds max_in ${maxIn}`,
          `${p}/in_features`,
          `<= ${maxIn}`,
          inF,
        );
        ok = false;
      }
      if (!isPosInt(outF) || outF > MAX_DIM) {
        add(
          ErrorCode.VERA_MODULE_DIMS,
          `out_features must be an integer in [1, ${MAX_DIM}]`,
          `${p}/out_features`,
          `1..${MAX_DIM}`,
          outF,
        );
        ok = false;
      } else if (maxOut !== undefined && outF > maxOut) {
        add(
          ErrorCode.VERA_MODULE_RANGE,
          `module "${String(name)}" out_features ${outF} exceeds max_out ${maxOut}`,
          `${p}/out_features`,
          `<= ${maxOut}`,
          outF,
        );
        ok = false;
      }
      const layout = m["layout"];
      if (layout !== "linear" && layout !== "conv1d") {
        add(ErrorCode.VERA_LAYOUT, 'layout must be "linear" or "conv1d"', `${p}/layout`, "linear|conv1d", layout);
        ok = false;
      }
      if (ok)
        modulesMeta.push({
          name: name as string,
          inFeatures: inF as number,
          outFeatures: outF as number,
          layout: layout as Layout,
        });
    });
    if (maxIn !== undefined && modulesMeta.length === mods.length && !modulesMeta.some((m) => m.inFeatures === maxIn))
      warn(
        ErrorCode.VERA_MODULE_RANGE,
        `max_in ${maxIn} is larger than every module's in_features`,
        "/projections/max_in",
      );
    if (
      maxOut !== undefined &&
      modulesMeta.length === mods.length &&
      !modulesMeta.some((m) => m.outFeatures === maxOut)
    )
      warn(
        ErrorCode.VERA_MODULE_RANGE,
        `max_out ${maxOut} is larger than every module's out_features`,
        "/projections/max_out",
      );
  }

  // base_model, training, extra
  let baseModel: VeraAdapter["baseModel"];
  const bm = meta["base_model"];
  if (bm !== undefined) {
    if (!isObj(bm)) add(ErrorCode.VERA_SCHEMA, "base_model must be an object", "/base_model", "object", describe(bm));
    else {
      unknownFields(bm, KNOWN_BASE, "/base_model");
      baseModel = {};
      for (const k of ["id", "revision"] as const) {
        const v = bm[k];
        if (v === undefined) continue;
        if (typeof v !== "string" || v.length === 0)
          add(
            ErrorCode.VERA_SCHEMA,
            `base_model.${k} must be a non-empty string`,
            `/base_model/${k}`,
            "string",
            describe(v),
          );
        else baseModel[k] = v;
      }
    }
  }
  for (const k of ["training", "extra"] as const) {
    const v = meta[k];
    if (v !== undefined && !isObj(v))
      add(ErrorCode.VERA_SCHEMA, `${k} must be an object`, `/${k}`, "object", describe(v));
  }

  // digest
  const dg = meta["digest"];
  let expectedDigest: string | undefined;
  if (!isObj(dg))
    add(
      ErrorCode.VERA_DIGEST_FORMAT,
      "digest must be an object {algorithm, data}",
      "/digest",
      '{"algorithm":"sha256","data":"<hex>"}',
      describe(dg),
    );
  else {
    unknownFields(dg, KNOWN_DIGEST, "/digest");
    if (dg["algorithm"] !== "sha256" || typeof dg["data"] !== "string" || !/^[0-9a-f]{64}$/.test(dg["data"]))
      add(
        ErrorCode.VERA_DIGEST_FORMAT,
        'digest must be {"algorithm":"sha256","data":<64 lowercase hex digits>}',
        "/digest",
        "sha256 + 64 hex",
        JSON.stringify(dg).slice(0, 120),
      );
    else expectedDigest = dg["data"];
  }
  let digest: ValidationResult["digest"];
  if (expectedDigest !== undefined && options.checkDigest !== false) {
    const actual = sha256Hex(bytes.subarray(file.dataStart));
    digest = { algorithm: "sha256", expected: expectedDigest, actual, ok: actual === expectedDigest };
    if (!digest.ok)
      add(
        ErrorCode.VERA_DIGEST_MISMATCH,
        `tensor data digest mismatch: the file is corrupted or was modified`,
        "/digest/data",
        expectedDigest,
        actual,
      );
  }

  // tensors
  const used = new Set<string>();
  const modules: VeraModule[] = [];
  let vectorDtype: VectorDtype | undefined;
  const readVector = (tname: string, len: number, what: string): Float32Array | undefined => {
    const info = file.tensors.get(tname);
    if (!info) {
      add(
        ErrorCode.VERA_TENSOR_MISSING,
        `tensor "${tname}" (${what}) is missing`,
        tname,
        `${len}-element vector`,
        "absent",
      );
      return undefined;
    }
    used.add(tname);
    if (info.dtype !== "F32" && info.dtype !== "F16" && info.dtype !== "BF16") {
      add(ErrorCode.VERA_TENSOR_DTYPE, `tensor "${tname}" has dtype ${info.dtype}`, tname, "F32|F16|BF16", info.dtype);
      return undefined;
    }
    if (vectorDtype === undefined) vectorDtype = info.dtype;
    else if (vectorDtype !== info.dtype) {
      add(
        ErrorCode.VERA_TENSOR_DTYPE,
        `tensor "${tname}" has dtype ${info.dtype} but other vectors are ${vectorDtype}`,
        tname,
        vectorDtype,
        info.dtype,
      );
      return undefined;
    }
    if (info.shape.length !== 1 || info.shape[0] !== len) {
      add(
        ErrorCode.VERA_VECTOR_LENGTH,
        `tensor "${tname}" (${what}) has shape ${JSON.stringify(info.shape)}`,
        tname,
        `[${len}]`,
        JSON.stringify(info.shape),
      );
      return undefined;
    }
    const raw = tensorBytes(file, tname);
    const v =
      info.dtype === "F32"
        ? asFloat32(raw).slice()
        : info.dtype === "F16"
          ? f16ArrayToF32(asUint16(raw))
          : bf16ArrayToF32(asUint16(raw));
    for (let i = 0; i < v.length; i++)
      if (!Number.isFinite(v[i]!)) {
        add(
          ErrorCode.VERA_NONFINITE,
          `tensor "${tname}" holds ${v[i]} at index ${i}`,
          tname,
          "finite values",
          String(v[i]),
        );
        return undefined;
      }
    return v;
  };
  for (const m of modulesMeta) {
    const d = rank !== undefined ? readVector(`${m.name}.vera_lambda_d`, rank, "d, length rank") : undefined;
    const b = readVector(`${m.name}.vera_lambda_b`, m.outFeatures, "b, length out_features");
    if (d && b) modules.push({ ...m, lambdaD: d, lambdaB: b });
  }
  // names of modules whose entries were invalid still own their tensors (no double report)
  if (Array.isArray(mods))
    for (const m of mods)
      if (isObj(m) && typeof m["name"] === "string") {
        used.add(`${m["name"]}.vera_lambda_d`);
        used.add(`${m["name"]}.vera_lambda_b`);
      }
  let storedProjections: VeraAdapter["storedProjections"];
  const projShapes = { vera_A: [rank, maxIn], vera_B: [maxOut, rank] } as const;
  for (const pname of ["vera_A", "vera_B"] as const) {
    const info = file.tensors.get(pname);
    if (storage === "stored") {
      used.add(pname);
      if (!info)
        add(
          ErrorCode.VERA_TENSOR_MISSING,
          `projections.storage is "stored" but tensor "${pname}" is missing`,
          pname,
          "present",
          "absent",
        );
      else if (info.dtype !== "F32")
        add(ErrorCode.VERA_TENSOR_DTYPE, `tensor "${pname}" must be F32`, pname, "F32", info.dtype);
      else if (
        rank !== undefined &&
        maxIn !== undefined &&
        maxOut !== undefined &&
        JSON.stringify(info.shape) !== JSON.stringify(projShapes[pname])
      )
        add(
          ErrorCode.VERA_PROJECTION_SHAPE,
          `tensor "${pname}" has shape ${JSON.stringify(info.shape)}`,
          pname,
          JSON.stringify(projShapes[pname]),
          JSON.stringify(info.shape),
        );
      else if (rank !== undefined && maxIn !== undefined && maxOut !== undefined) {
        const v = asFloat32(tensorBytes(file, pname)).slice();
        const bad = v.findIndex((x) => !Number.isFinite(x));
        if (bad >= 0)
          add(
            ErrorCode.VERA_NONFINITE,
            `tensor "${pname}" holds ${v[bad]} at index ${bad}`,
            pname,
            "finite values",
            String(v[bad]),
          );
        else
          storedProjections = {
            ...(storedProjections ?? { A: new Float32Array(0), B: new Float32Array(0) }),
            [pname === "vera_A" ? "A" : "B"]: v,
          };
      }
    }
  }
  const extraTensors: ExtraTensor[] = [];
  for (const [tname, info] of file.tensors) {
    if (used.has(tname)) continue;
    if (tname.startsWith(EXTRA_TENSOR_PREFIX) && tname.length > EXTRA_TENSOR_PREFIX.length) {
      extraTensors.push({
        name: tname.slice(EXTRA_TENSOR_PREFIX.length),
        dtype: info.dtype,
        shape: [...info.shape],
        data: tensorBytes(file, tname).slice(),
      });
      continue;
    }
    add(
      ErrorCode.VERA_TENSOR_UNEXPECTED,
      `tensor "${tname}" belongs to no module`,
      tname,
      "a listed module's vera_lambda_d/vera_lambda_b, vera_A/vera_B when stored, or __extra__.*",
      tname,
    );
  }

  if (issues.length > 0) return { ok: false, issues, warnings, version, ...(digest ? { digest } : {}) };
  const adapter: VeraAdapter = {
    prng: { algorithm: PRNG_TORCH_MT19937_KAIMING, seed: seed!, arithmetic: arithmetic! },
    rank: rank!,
    maxIn: maxIn!,
    maxOut: maxOut!,
    projectionRounding: rounding!,
    vectorDtype: vectorDtype ?? "F32",
    modules,
  };
  if (storedProjections) adapter.storedProjections = storedProjections;
  if (baseModel && Object.keys(baseModel).length > 0) adapter.baseModel = baseModel;
  if (isObj(meta["training"])) adapter.training = meta["training"] as Record<string, unknown>;
  if (isObj(meta["extra"])) adapter.extra = meta["extra"] as Record<string, unknown>;
  if (extraTensors.length > 0) adapter.extraTensors = extraTensors;
  if (options.checkCanonical !== false && !newerMinor) {
    // the canonical form's digest is the one just computed when the data sections are equal, and the
    // comparison fails anyway when they are not: the data is hashed once per validation
    const again = encodeVera({ adapter, ...(digest ? { dataDigest: digest.actual } : {}) });
    let same = again.length === bytes.length;
    for (let i = 0; same && i < again.length; i++) same = again[i] === bytes[i];
    if (!same)
      warn(
        ErrorCode.VERA_NOT_CANONICAL,
        "the file is valid but not in canonical form (rewrite it with verakit to canonicalise)",
      );
  }
  return { ok: true, issues, warnings, adapter, version, ...(digest ? { digest } : {}) };
}

/** Read a verakit file. Throws a {@link VeraError} carrying every issue found. */
export function readVera(bytes: Uint8Array, options: ValidateOptions = {}): VeraAdapter {
  const r = validateVera(bytes, options);
  if (!r.ok || !r.adapter) throw VeraError.fromIssues(r.issues);
  return r.adapter;
}

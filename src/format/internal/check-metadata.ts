/** Internal: the checks of the metadata's sections (prng, projections, modules, base model, digest), in file order. */
import { ErrorCode } from "../../errors.js";
import { MAX_PROJECTION_ELEMENTS } from "../../projections/generate.js";
import { parseSeed } from "../../projections/seed.js";
import { MAX_DIM, PRNG_TORCH_MT19937_KAIMING, type Layout, type VeraAdapter } from "../types.js";
import { describe, isObj, isPosInt, type Checker, type Obj } from "./checker.js";

/** Module names: dot-separated parts of letters, digits, `_` and `-`; not starting with `__`. */
export const MODULE_NAME_RE = /^(?!__)[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;

const KNOWN_PRNG = new Set(["algorithm", "seed", "arithmetic"]);
const KNOWN_PROJ = new Set(["rank", "max_in", "max_out", "rounding", "storage"]);
const KNOWN_MODULE = new Set(["name", "in_features", "out_features", "layout"]);
const KNOWN_BASE = new Set(["id", "revision"]);
const KNOWN_DIGEST = new Set(["algorithm", "data"]);

/** What the `prng` section gives when valid. */
export interface PrngFields {
  seed?: bigint;
  arithmetic?: "fused" | "separate";
}

/** Check `prng`. */
export function checkPrng(meta: Obj, c: Checker): PrngFields {
  let seed: bigint | undefined;
  let arithmetic: PrngFields["arithmetic"];
  const prng = meta["prng"];
  if (!isObj(prng)) c.add(ErrorCode.VERA_SCHEMA, "prng must be an object", "/prng", "object", describe(prng));
  else {
    c.unknownFields(prng, KNOWN_PRNG, "/prng");
    if (prng["algorithm"] !== PRNG_TORCH_MT19937_KAIMING)
      c.add(
        ErrorCode.VERA_PRNG_UNKNOWN,
        `unknown PRNG algorithm ${JSON.stringify(prng["algorithm"])}`,
        "/prng/algorithm",
        PRNG_TORCH_MT19937_KAIMING,
        prng["algorithm"],
      );
    if (prng["arithmetic"] !== "fused" && prng["arithmetic"] !== "separate")
      c.add(
        ErrorCode.VERA_ARITHMETIC,
        `prng.arithmetic must be "fused" or "separate"`,
        "/prng/arithmetic",
        "fused|separate",
        prng["arithmetic"],
      );
    else arithmetic = prng["arithmetic"];
    const s = prng["seed"];
    if (typeof s !== "string")
      c.add(ErrorCode.VERA_SEED, "prng.seed must be a decimal integer string", "/prng/seed", "string", describe(s));
    else {
      try {
        seed = parseSeed(s);
      } catch (e) {
        c.add(ErrorCode.VERA_SEED, (e as Error).message, "/prng/seed", "[-2^63, 2^64-1]", s);
      }
    }
  }
  return { seed, arithmetic };
}

/** What the `projections` section gives when valid. */
export interface ProjectionFields {
  rank?: number;
  maxIn?: number;
  maxOut?: number;
  rounding?: "none" | "bf16" | "fp16";
  storage?: "regenerate" | "stored";
}

/** Check `projections`. */
export function checkProjections(meta: Obj, c: Checker): ProjectionFields {
  let rank: number | undefined, maxIn: number | undefined, maxOut: number | undefined;
  let rounding: ProjectionFields["rounding"];
  let storage: ProjectionFields["storage"];
  const proj = meta["projections"];
  if (!isObj(proj))
    c.add(ErrorCode.VERA_SCHEMA, "projections must be an object", "/projections", "object", describe(proj));
  else {
    c.unknownFields(proj, KNOWN_PROJ, "/projections");
    const r = proj["rank"];
    if (!isPosInt(r) || r > MAX_DIM)
      c.add(ErrorCode.VERA_RANK, `rank must be an integer in [1, ${MAX_DIM}]`, "/projections/rank", `1..${MAX_DIM}`, r);
    else rank = r;
    for (const [key, set] of [
      ["max_in", (v: number) => (maxIn = v)],
      ["max_out", (v: number) => (maxOut = v)],
    ] as const) {
      const v = proj[key];
      if (!isPosInt(v) || v > MAX_DIM)
        c.add(
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
      c.add(
        ErrorCode.VERA_MAX_DIMS,
        `projections of rank ${rank} x ${Math.max(maxIn, maxOut)} exceed ${MAX_PROJECTION_ELEMENTS} elements`,
        "/projections",
        `<= ${MAX_PROJECTION_ELEMENTS}`,
        rank * Math.max(maxIn, maxOut),
      );
    const ro = proj["rounding"];
    if (ro !== "none" && ro !== "bf16" && ro !== "fp16")
      c.add(
        ErrorCode.VERA_ROUNDING,
        'projections.rounding must be "none", "bf16" or "fp16"',
        "/projections/rounding",
        "none|bf16|fp16",
        ro,
      );
    else rounding = ro;
    const st = proj["storage"];
    if (st !== "regenerate" && st !== "stored")
      c.add(
        ErrorCode.VERA_SCHEMA,
        'projections.storage must be "regenerate" or "stored"',
        "/projections/storage",
        "regenerate|stored",
        st,
      );
    else storage = st;
  }
  return { rank, maxIn, maxOut, rounding, storage };
}

/** A module entry of the metadata that passed its checks. */
export interface ModuleEntry {
  name: string;
  inFeatures: number;
  outFeatures: number;
  layout: Layout;
}

/** Check `modules` against the projections' bounds; returns the valid entries. */
export function checkModules(meta: Obj, proj: ProjectionFields, c: Checker): ModuleEntry[] {
  const { maxIn, maxOut } = proj;
  const modulesMeta: ModuleEntry[] = [];
  const mods = meta["modules"];
  if (!Array.isArray(mods) || mods.length === 0)
    c.add(ErrorCode.VERA_SCHEMA, "modules must be a non-empty array", "/modules", "non-empty array", describe(mods));
  else {
    const seen = new Set<string>();
    let prev: string | undefined;
    mods.forEach((m, i) => {
      const p = `/modules/${i}`;
      if (!isObj(m)) return c.add(ErrorCode.VERA_SCHEMA, "module entry must be an object", p, "object", describe(m));
      c.unknownFields(m, KNOWN_MODULE, p);
      const name = m["name"];
      let ok = true;
      if (typeof name !== "string" || !MODULE_NAME_RE.test(name)) {
        c.add(
          ErrorCode.VERA_MODULE_NAME,
          "module name must be dot-separated [A-Za-z0-9_-] parts, not starting with __",
          `${p}/name`,
          MODULE_NAME_RE.source,
          name,
        );
        ok = false;
      } else {
        if (seen.has(name)) {
          c.add(ErrorCode.VERA_MODULE_DUPLICATE, `module "${name}" is listed twice`, `${p}/name`, "unique names", name);
          ok = false;
        } else if (prev !== undefined && !(prev < name))
          c.add(
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
      if (!checkFeatures(inF, "in_features", { name, max: maxIn, maxKey: "max_in", p }, c)) ok = false;
      if (!checkFeatures(outF, "out_features", { name, max: maxOut, maxKey: "max_out", p }, c)) ok = false;
      const layout = m["layout"];
      if (layout !== "linear" && layout !== "conv1d") {
        c.add(ErrorCode.VERA_LAYOUT, 'layout must be "linear" or "conv1d"', `${p}/layout`, "linear|conv1d", layout);
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
      c.warn(
        ErrorCode.VERA_MODULE_RANGE,
        `max_in ${maxIn} is larger than every module's in_features`,
        "/projections/max_in",
      );
    if (
      maxOut !== undefined &&
      modulesMeta.length === mods.length &&
      !modulesMeta.some((m) => m.outFeatures === maxOut)
    )
      c.warn(
        ErrorCode.VERA_MODULE_RANGE,
        `max_out ${maxOut} is larger than every module's out_features`,
        "/projections/max_out",
      );
  }
  return modulesMeta;
}

/** Check a module's `in_features` / `out_features`: an integer in [1, MAX_DIM], at most the projections' bound. */
function checkFeatures(
  v: unknown,
  key: "in_features" | "out_features",
  at: { name: unknown; max: number | undefined; maxKey: "max_in" | "max_out"; p: string },
  c: Checker,
): boolean {
  if (!isPosInt(v) || v > MAX_DIM) {
    c.add(
      ErrorCode.VERA_MODULE_DIMS,
      `${key} must be an integer in [1, ${MAX_DIM}]`,
      `${at.p}/${key}`,
      `1..${MAX_DIM}`,
      v,
    );
    return false;
  }
  if (at.max !== undefined && v > at.max) {
    c.add(
      ErrorCode.VERA_MODULE_RANGE,
      `module "${String(at.name)}" ${key} ${v} exceeds ${at.maxKey} ${at.max}`,
      `${at.p}/${key}`,
      `<= ${at.max}`,
      v,
    );
    return false;
  }
  return true;
}

/** Check `base_model`, `training` and `extra`; returns the base model when given. */
export function checkBaseModel(meta: Obj, c: Checker): VeraAdapter["baseModel"] {
  let baseModel: VeraAdapter["baseModel"];
  const bm = meta["base_model"];
  if (bm !== undefined) {
    if (!isObj(bm)) c.add(ErrorCode.VERA_SCHEMA, "base_model must be an object", "/base_model", "object", describe(bm));
    else {
      c.unknownFields(bm, KNOWN_BASE, "/base_model");
      baseModel = {};
      for (const k of ["id", "revision"] as const) {
        const v = bm[k];
        if (v === undefined) continue;
        if (typeof v !== "string" || v.length === 0)
          c.add(
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
      c.add(ErrorCode.VERA_SCHEMA, `${k} must be an object`, `/${k}`, "object", describe(v));
  }
  return baseModel;
}

/** Check the `digest` field; returns the expected digest when well formed. */
export function checkDigestField(meta: Obj, c: Checker): string | undefined {
  const dg = meta["digest"];
  let expectedDigest: string | undefined;
  if (!isObj(dg))
    c.add(
      ErrorCode.VERA_DIGEST_FORMAT,
      "digest must be an object {algorithm, data}",
      "/digest",
      '{"algorithm":"sha256","data":"<hex>"}',
      describe(dg),
    );
  else {
    c.unknownFields(dg, KNOWN_DIGEST, "/digest");
    if (dg["algorithm"] !== "sha256" || typeof dg["data"] !== "string" || !/^[0-9a-f]{64}$/.test(dg["data"]))
      c.add(
        ErrorCode.VERA_DIGEST_FORMAT,
        'digest must be {"algorithm":"sha256","data":<64 lowercase hex digits>}',
        "/digest",
        "sha256 + 64 hex",
        JSON.stringify(dg).slice(0, 120),
      );
    else expectedDigest = dg["data"];
  }
  return expectedDigest;
}

/** Internal: the checks of the tensors (module vectors, stored projections, extra tensors) against the metadata. */
import { ErrorCode } from "../../errors.js";
import { bf16ArrayToF32, f16ArrayToF32 } from "../../numeric/half.js";
import { asFloat32, asUint16, tensorBytes, type SafetensorsFile } from "../../safetensors/parse.js";
import {
  EXTRA_TENSOR_PREFIX,
  type ExtraTensor,
  type VeraAdapter,
  type VeraModule,
  type VectorDtype,
} from "../types.js";
import type { ModuleEntry, ProjectionFields } from "./check-metadata.js";
import { isObj, type Checker } from "./checker.js";

/** The tensors checked so far: names that belong to a module or a stored projection. */
export type UsedTensors = Set<string>;

/** Read and check one module vector (dtype shared by all vectors, length, finite values). */
function readVector(
  file: SafetensorsFile,
  tname: string,
  len: number,
  what: string,
  ctx: { c: Checker; used: UsedTensors; vectorDtype: VectorDtype | undefined },
): Float32Array | undefined {
  const { c, used } = ctx;
  const info = file.tensors.get(tname);
  if (!info) {
    c.add(
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
    c.add(ErrorCode.VERA_TENSOR_DTYPE, `tensor "${tname}" has dtype ${info.dtype}`, tname, "F32|F16|BF16", info.dtype);
    return undefined;
  }
  if (ctx.vectorDtype === undefined) ctx.vectorDtype = info.dtype;
  else if (ctx.vectorDtype !== info.dtype) {
    c.add(
      ErrorCode.VERA_TENSOR_DTYPE,
      `tensor "${tname}" has dtype ${info.dtype} but other vectors are ${ctx.vectorDtype}`,
      tname,
      ctx.vectorDtype,
      info.dtype,
    );
    return undefined;
  }
  if (info.shape.length !== 1 || info.shape[0] !== len) {
    c.add(
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
  return allFinite(v, tname, c) ? v : undefined;
}

/** Whether every value of `v` is finite; reports the first that is not (VERA_NONFINITE). */
function allFinite(v: Float32Array, tname: string, c: Checker): boolean {
  const bad = v.findIndex((x) => !Number.isFinite(x));
  if (bad < 0) return true;
  c.add(
    ErrorCode.VERA_NONFINITE,
    `tensor "${tname}" holds ${v[bad]} at index ${bad}`,
    tname,
    "finite values",
    String(v[bad]),
  );
  return false;
}

/**
 * Read every module's d and b vectors; marks them used, and the vector names of invalid module entries too
 * (their tensors are not reported twice).
 */
export function readModuleVectors(
  file: SafetensorsFile,
  entries: ModuleEntry[],
  rank: number | undefined,
  rawModules: unknown,
  c: Checker,
  used: UsedTensors,
): { modules: VeraModule[]; vectorDtype: VectorDtype | undefined } {
  const modules: VeraModule[] = [];
  const ctx = { c, used, vectorDtype: undefined as VectorDtype | undefined };
  for (const m of entries) {
    const d = rank !== undefined ? readVector(file, `${m.name}.vera_lambda_d`, rank, "d, length rank", ctx) : undefined;
    const b = readVector(file, `${m.name}.vera_lambda_b`, m.outFeatures, "b, length out_features", ctx);
    if (d && b) modules.push({ ...m, lambdaD: d, lambdaB: b });
  }
  // names of modules whose entries were invalid still own their tensors (no double report)
  if (Array.isArray(rawModules))
    for (const m of rawModules)
      if (isObj(m) && typeof m["name"] === "string") {
        used.add(`${m["name"]}.vera_lambda_d`);
        used.add(`${m["name"]}.vera_lambda_b`);
      }
  return { modules, vectorDtype: ctx.vectorDtype };
}

/** Check `vera_A` / `vera_B` when the projections are stored; returns them when valid. */
export function readStoredProjections(
  file: SafetensorsFile,
  proj: ProjectionFields,
  c: Checker,
  used: UsedTensors,
): VeraAdapter["storedProjections"] {
  const { rank, maxIn, maxOut, storage } = proj;
  let storedProjections: VeraAdapter["storedProjections"];
  const projShapes = { vera_A: [rank, maxIn], vera_B: [maxOut, rank] } as const;
  for (const pname of ["vera_A", "vera_B"] as const) {
    const info = file.tensors.get(pname);
    if (storage === "stored") {
      used.add(pname);
      if (!info)
        c.add(
          ErrorCode.VERA_TENSOR_MISSING,
          `projections.storage is "stored" but tensor "${pname}" is missing`,
          pname,
          "present",
          "absent",
        );
      else if (info.dtype !== "F32")
        c.add(ErrorCode.VERA_TENSOR_DTYPE, `tensor "${pname}" must be F32`, pname, "F32", info.dtype);
      else if (
        rank !== undefined &&
        maxIn !== undefined &&
        maxOut !== undefined &&
        JSON.stringify(info.shape) !== JSON.stringify(projShapes[pname])
      )
        c.add(
          ErrorCode.VERA_PROJECTION_SHAPE,
          `tensor "${pname}" has shape ${JSON.stringify(info.shape)}`,
          pname,
          JSON.stringify(projShapes[pname]),
          JSON.stringify(info.shape),
        );
      else if (rank !== undefined && maxIn !== undefined && maxOut !== undefined) {
        const v = asFloat32(tensorBytes(file, pname)).slice();
        if (allFinite(v, pname, c))
          storedProjections = {
            ...(storedProjections ?? { A: new Float32Array(0), B: new Float32Array(0) }),
            [pname === "vera_A" ? "A" : "B"]: v,
          };
      }
    }
  }
  return storedProjections;
}

/** The `__extra__.*` tensors; every other tensor not used is reported. */
export function collectExtraTensors(file: SafetensorsFile, c: Checker, used: UsedTensors): ExtraTensor[] {
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
    c.add(
      ErrorCode.VERA_TENSOR_UNEXPECTED,
      `tensor "${tname}" belongs to no module`,
      tname,
      "a listed module's vera_lambda_d/vera_lambda_b, vera_A/vera_B when stored, or __extra__.*",
      tname,
    );
  }
  return extraTensors;
}

/**
 * Import stage 2: sort the adapter file's tensors into VeRA vectors per module, the projections, and
 * tensors carried unchanged; read and check every module's lambda_d / lambda_b.
 * @internal
 */
import { VeraError } from "../../errors.js";
import { MODULE_NAME_RE } from "../../format/validate.js";
import type { VectorDtype } from "../../format/types.js";
import { tensorBytes, type SafetensorsFile } from "../../safetensors/parse.js";
import { PeftErrorCode } from "../error-codes.js";
import { decodeFloat, KEY_VERA_A, KEY_VERA_B, MODEL_PREFIX } from "../internal.js";
import { isPveraSamplingTensor } from "../pvera-keys.js";

/** One adapted module's trained vectors. */
export interface ModuleVectors {
  /** Module path without `base_model.model.`. */
  name: string;
  lambdaD: Float32Array;
  lambdaB: Float32Array;
}

/** What {@link readVeraVectors} found. */
export interface VeraVectors {
  /** Every module, sorted by name. */
  modules: ModuleVectors[];
  /** Keys that are neither VeRA vectors nor projections, in file order. */
  carried: string[];
  /** The dtype of every vector tensor, by key. */
  vectorDtypes: Map<string, VectorDtype>;
  hasA: boolean;
  hasB: boolean;
  warnings: string[];
}

/** Whether a carried tensor is explained by the config (a modules_to_save module or a trainable bias). */
function explained(key: string, bias: string, modulesToSave: string[]): boolean {
  const rest = key.startsWith(MODEL_PREFIX) ? key.slice(MODEL_PREFIX.length) : key;
  const parts = rest.split(".");
  return (
    isPveraSamplingTensor(key) ||
    (bias !== "none" && key.endsWith(".bias")) ||
    modulesToSave.some((m) => {
      const mp = m.split(".");
      for (let s = 0; s + mp.length <= parts.length; s++) if (mp.every((x, k) => parts[s + k] === x)) return true;
      return false;
    })
  );
}

/**
 * Read every module's vectors (PEFT_LAMBDA_UNPAIRED, PEFT_MODULE_NAME, PEFT_TENSOR_DTYPE, PEFT_VECTOR_LENGTH),
 * modules in name order. modules_to_save and bias tensors are carried, never dropped; anything else is
 * carried with a warning.
 */
export function readVeraVectors(params: {
  file: SafetensorsFile;
  rank: number;
  bias: string;
  modulesToSave: string[];
}): VeraVectors {
  const { file, rank } = params;
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
  const warnings: string[] = [];
  for (const key of carried)
    if (!explained(key, params.bias, params.modulesToSave))
      warnings.push(`tensor "${key}" is neither a VeRA tensor, a modules_to_save tensor nor a bias: carried unchanged`);

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

  const modules: ModuleVectors[] = [];
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
    modules.push({ name, lambdaD, lambdaB });
  }
  return { modules, carried, vectorDtypes, hasA, hasB, warnings };
}

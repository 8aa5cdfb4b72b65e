/**
 * Helpers for the serving tests: the fixtures of fixtures/serve (generate.py, MANIFEST.json), grafting them into a
 * temporary folder, and running grafted models in onnxruntime-node.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { f16BitsToF32 } from "../src/numeric/half.js";
import type { VeraAdapter } from "../src/format/types.js";
import { loadAdapterFromPath } from "../src/node/load-adapter.js";
import { peftBaseFromOnnx } from "../src/peft/base-shapes-from-onnx.js";
import { listLinearWeights, readOnnxModel } from "../src/onnx/index.js";
import { asFloat32, parseSafetensors, tensorBytes } from "../src/safetensors/parse.js";
import type { FeedTensor } from "../src/serve/index.js";
import { loadOrt } from "./onnx-helpers.js";

export const SERVE_FIXTURES = join(__dirname, "../fixtures/serve");

/** case.json of a serving fixture. */
export interface ServeCase {
  case: string;
  /** Model path relative to the case folder. */
  model: string;
  input_ids: number[][];
  adapters: string[];
  adapter_folder?: string;
}

export function loadCase(name: string): ServeCase & { dir: string; modelPath: string; adapterDir: string } {
  const dir = join(SERVE_FIXTURES, name);
  const c = JSON.parse(readFileSync(join(dir, "case.json"), "utf8")) as ServeCase;
  return { ...c, dir, modelPath: join(dir, c.model), adapterDir: join(dir, c.adapter_folder ?? "adapters") };
}

/** PEFT's logits for the case: `base`, `a1`, `a2`, `a3` as flat float32 [batch * seq * vocab]. */
export function peftLogits(name: string): Record<string, Float32Array> {
  const f = parseSafetensors(new Uint8Array(readFileSync(join(SERVE_FIXTURES, name, "logits.safetensors"))));
  const out: Record<string, Float32Array> = {};
  for (const k of f.tensors.keys()) out[k] = asFloat32(tensorBytes(f, k).slice());
  return out;
}

/** A fixture adapter (PEFT folder) imported against the case's model. */
export async function caseAdapter(c: { modelPath: string; adapterDir: string }, name: string): Promise<VeraAdapter> {
  const model = readOnnxModel({ bytes: new Uint8Array(readFileSync(c.modelPath)) });
  const weights = listLinearWeights({ model });
  const loaded = await loadAdapterFromPath({
    path: join(c.adapterDir, name),
    base: (peftWeights) => peftBaseFromOnnx({ weights, peftWeights }),
  });
  return loaded.adapter;
}

/** Run a model in onnxruntime-node (CPU, optimizations off) on token ids and extra float feeds; flat logits. */
export async function runLogits(
  path: string,
  ids: number[][],
  feeds: Record<string, FeedTensor> = {},
): Promise<Float32Array> {
  const ort = await loadOrt();
  const session = await ort.InferenceSession.create(path, {
    graphOptimizationLevel: "disabled",
    executionProviders: ["cpu"],
    logSeverityLevel: 3,
  });
  try {
    const all: Record<string, import("onnxruntime-node").Tensor> = {
      input_ids: new ort.Tensor("int64", BigInt64Array.from(ids.flat().map((x) => BigInt(x))), [
        ids.length,
        ids[0]!.length,
      ]),
    };
    for (const [k, t] of Object.entries(feeds)) all[k] = new ort.Tensor(t.type, t.data, t.dims);
    const out = await session.run(all);
    const v = out["logits"]!;
    if (v.type !== "float16") return v.data as Float32Array;
    const bits = v.data as unknown as ArrayLike<number>;
    return Float32Array.from({ length: bits.length }, (_, i) => f16BitsToF32(bits[i]!));
  } finally {
    await session.release();
  }
}

/** max |a - b| over rows [from, to) of [batch, rowSize] flat arrays (b may hold more rows than a). */
export function maxDiffRows(a: Float32Array, b: Float32Array, rowSize: number, rowA: number, rowB = rowA): number {
  let m = 0;
  for (let i = 0; i < rowSize; i++) m = Math.max(m, Math.abs(a[rowA * rowSize + i]! - b[rowB * rowSize + i]!));
  return m;
}

export function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** Internal: loading onnxruntime-node and checking for its optional CUDA provider. */
import type * as OrtNs from "onnxruntime-node";
import { VeraError } from "../../errors.js";
import { ComputeErrorCode } from "../error-codes.js";

/** The onnxruntime-node module. */
export type Ort = typeof OrtNs;

/** Load onnxruntime-node or explain why it cannot be used. */
export async function loadOrt(given?: unknown): Promise<Ort> {
  if (given) return given as Ort;
  try {
    const m = (await import("onnxruntime-node")) as Ort & { default?: Ort };
    return (m.InferenceSession ? m : m.default) as Ort;
  } catch (e) {
    throw new VeraError(
      ComputeErrorCode.COMPUTE_UNAVAILABLE,
      `onnxruntime-node cannot be loaded (${(e as Error).message}); install it with \`npm i onnxruntime-node\` or choose another backend`,
      { expected: "onnxruntime-node installed", received: "not loadable", cause: e },
    );
  }
}

/**
 * onnxruntime-node ships the CUDA provider as a separate download (its install script, skipped
 * by default here); check for the library before asking onnxruntime, which would log an error.
 */
export async function requireCudaProvider(): Promise<void> {
  const { createRequire } = await import("node:module");
  const path = await import("node:path");
  const fs = await import("node:fs");
  const here = typeof __filename === "string" ? __filename : import.meta.url;
  let dir: string;
  try {
    dir = path.dirname(createRequire(here).resolve("onnxruntime-node/package.json"));
  } catch {
    return; // let onnxruntime report it
  }
  const lib = process.platform === "win32" ? "onnxruntime_providers_cuda.dll" : "libonnxruntime_providers_cuda.so";
  const file = path.join(dir, "bin", "napi-v6", process.platform, process.arch, lib);
  if (!fs.existsSync(file))
    throw new VeraError(
      ComputeErrorCode.COMPUTE_UNAVAILABLE,
      `onnxruntime's CUDA execution provider is not installed (${lib} is missing); install it with \`npm install onnxruntime-node --onnxruntime-node-install=cuda12\` on a machine with CUDA 12`,
      { expected: file, received: "missing" },
    );
}

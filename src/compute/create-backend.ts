import { VeraError } from "../errors.js";
import type { ComputeBackend } from "./backend.js";
import { ComputeErrorCode } from "./error-codes.js";
import { createReferenceBackend } from "./reference-backend.js";
import { createWasmBackend } from "./wasm-backend.js";
import { createWebGpuBackend, type GpuLike } from "./webgpu-backend.js";

/** Backends the browser-safe factory knows. */
export const BROWSER_BACKENDS = ["auto", "webgpu", "wasm", "reference"] as const;

/** A name accepted by {@link createBackend}. */
export type BrowserBackendName = (typeof BROWSER_BACKENDS)[number];

/** Params of {@link createBackend}. */
export interface CreateBackendParams {
  /**
   * Which backend: `auto` takes a hardware WebGPU adapter when there is one, else the WebAssembly SIMD
   * backend, else the reference.
   * @default "auto"
   */
  name?: BrowserBackendName | (string & {});
  /**
   * The WebGPU entry object.
   * @default globalThis.navigator.gpu
   */
  gpu?: GpuLike;
}

/**
 * Create a merge backend where no Node APIs exist (browsers, Deno, workers). A named backend
 * that cannot start throws `COMPUTE_UNAVAILABLE` with the reason; `auto` falls back to the
 * reference backend and lists what it skipped in `info.skipped`. For Node, use
 * `createNodeBackend` from `verakit/node`, which adds the onnxruntime and Dawn backends.
 */
export async function createBackend(params: CreateBackendParams = {}): Promise<ComputeBackend> {
  const name = params.name ?? "auto";
  const gpuParams = params.gpu ? { gpu: params.gpu } : {};
  if (name === "reference") return createReferenceBackend();
  if (name === "webgpu") return createWebGpuBackend(gpuParams);
  if (name === "wasm") return createWasmBackend();
  if (name !== "auto")
    throw new VeraError(
      ComputeErrorCode.COMPUTE_UNKNOWN_BACKEND,
      `unknown compute backend "${name}"; choose one of ${BROWSER_BACKENDS.join(", ")}`,
      {
        expected: BROWSER_BACKENDS,
        received: name,
      },
    );
  const skipped: Array<{ name: string; reason: string }> = [];
  try {
    const be = await createWebGpuBackend({ ...gpuParams, allowSoftware: false });
    be.info!.skipped = skipped;
    return be;
  } catch (e) {
    skipped.push({ name: "webgpu", reason: (e as Error).message });
  }
  try {
    const be = await createWasmBackend();
    be.info!.skipped = skipped;
    return be;
  } catch (e) {
    skipped.push({ name: "wasm", reason: (e as Error).message });
  }
  const ref = createReferenceBackend();
  ref.info!.skipped = skipped;
  return ref;
}

/** Node-only: the WebGPU backend on Dawn through the `webgpu` npm package. */
import { VeraError } from "../../errors.js";
import type { ComputeBackend } from "../backend.js";
import { ComputeErrorCode } from "../error-codes.js";
import { createWebGpuBackend, type CreateWebGpuBackendParams, type GpuLike } from "../webgpu-backend.js";

/** Params of {@link createDawnBackend}. */
export interface CreateDawnBackendParams extends Omit<CreateWebGpuBackendParams, "gpu"> {
  /**
   * Dawn toggles and options passed to the package's `create()` (e.g. `["adapter=..."]`).
   * @default []
   */
  dawnOptions?: string[];
}

let cached: Promise<GpuLike> | undefined;

/** Load the `webgpu` package and create its GPU object once per process. */
function loadDawnGpu(options: string[] = []): Promise<GpuLike> {
  cached ??= (async () => {
    try {
      const m = (await import("webgpu")) as unknown as { create(o: string[]): GpuLike };
      return m.create(options);
    } catch (e) {
      cached = undefined;
      throw new VeraError(
        ComputeErrorCode.COMPUTE_UNAVAILABLE,
        `the \`webgpu\` package cannot be loaded (${(e as Error).message}); install it with \`npm i webgpu\` or choose another backend`,
        { expected: "the webgpu package installed", received: "not loadable", cause: e },
      );
    }
  })();
  return cached;
}

/**
 * The WebGPU backend in Node: Dawn (the `webgpu` npm package) with whatever adapter the system
 * has (Vulkan, Metal, D3D12; Mesa's lavapipe on machines without a GPU).
 */
export async function createDawnBackend(params: CreateDawnBackendParams = {}): Promise<ComputeBackend> {
  const gpu = await loadDawnGpu(params.dawnOptions ?? []);
  return createWebGpuBackend({ ...params, gpu, name: params.name ?? "webgpu" });
}

import { VeraError } from "../../errors.js";
import type { ComputeBackend } from "../backend.js";
import { ComputeErrorCode } from "../error-codes.js";
import { createReferenceBackend } from "../reference-backend.js";
import { createWasmBackend } from "../wasm-backend.js";
import { createOrtBackend } from "./ort-backend.js";
import { createDawnBackend } from "./webgpu-node.js";
import { createWorkerBackend } from "./worker-backend.js";

/** Every backend name `createNodeBackend` accepts, `auto` first. */
export const NODE_BACKENDS = ["auto", "ort-cuda", "webgpu", "ort-webgpu", "ort-cpu", "wasm", "reference"] as const;

/** A name accepted by {@link createNodeBackend}. */
export type NodeBackendName = (typeof NODE_BACKENDS)[number];

/** Params of {@link createNodeBackend}. */
export interface CreateNodeBackendParams {
  /**
   * Which backend. `auto` tries, in order: `ort-cuda` (when onnxruntime's CUDA provider is
   * installed), `webgpu` on a hardware adapter (software adapters such as lavapipe are passed
   * over), `ort-cpu`, `wasm`, then `reference`; `info.skipped` says why each earlier one was not used.
   * @default "auto"
   */
  name?: NodeBackendName | (string & {});
  /**
   * When the named backend cannot start, continue with `auto` instead of throwing (the reason is
   * kept in `info.skipped`).
   * @default false
   */
  fallback?: boolean;
  /**
   * CPU threads of the onnxruntime CPU backend.
   * @default the number of available cores
   */
  threads?: number;
  /**
   * Whether the onnxruntime CPU backend's intra-op threads spin while waiting for work. A merge
   * pipeline reads, journals and writes beside the compute and launches each graph run from the
   * JavaScript thread: spinning threads take the cores those need (measured slower on 2 cores,
   * bench/RESULTS.md).
   * @default false
   */
  spinning?: boolean;
  /**
   * Run the onnxruntime CPU backend's merges on a worker thread, so that what the calling thread does meanwhile
   * (a merge pipeline's reads, undo journal and writes) overlaps the GEMMs. Same bytes and errors either way. When
   * the worker cannot start, the backend runs on the calling thread and `info.warnings` says why.
   * @default false
   */
  worker?: boolean;
}

/** The onnxruntime CPU backend, on a worker thread when asked and possible. */
async function startOrtCpu(p: CreateNodeBackendParams): Promise<ComputeBackend> {
  const opts = { spinning: p.spinning ?? false, ...(p.threads ? { threads: p.threads } : {}) };
  let why: string | undefined;
  if (p.worker) {
    try {
      return await createWorkerBackend(opts);
    } catch (e) {
      why = (e as Error).message;
    }
  }
  const be = await createOrtBackend({ executionProvider: "cpu", ...opts });
  if (why !== undefined && be.info) be.info.warnings = [`${why}; merging on the main thread instead`];
  return be;
}

/** Start one backend by name (internal; `auto` = pass over software adapters). */
export async function startNodeBackend(
  name: string,
  p: CreateNodeBackendParams,
  auto: boolean,
): Promise<ComputeBackend> {
  switch (name) {
    case "reference":
      return createReferenceBackend();
    case "ort-cpu":
      return startOrtCpu(p);
    case "ort-webgpu":
      return createOrtBackend({ executionProvider: "webgpu" });
    case "ort-cuda":
      return createOrtBackend({ executionProvider: "cuda" });
    case "webgpu":
      return createDawnBackend({ allowSoftware: !auto });
    case "wasm":
      return createWasmBackend();
    default:
      throw new VeraError(
        ComputeErrorCode.COMPUTE_UNKNOWN_BACKEND,
        `unknown compute backend "${name}"; choose one of ${NODE_BACKENDS.join(", ")}`,
        {
          expected: NODE_BACKENDS,
          received: name,
        },
      );
  }
}

/**
 * Create a merge backend in Node by name (`--backend`). A named backend that cannot run here
 * throws `COMPUTE_UNAVAILABLE` with the reason (or, with `fallback: true`, continues as `auto`).
 * The backend's `name` and `info` say which one runs.
 */
export async function createNodeBackend(params: CreateNodeBackendParams = {}): Promise<ComputeBackend> {
  const name = params.name ?? "auto";
  const skipped: Array<{ name: string; reason: string }> = [];
  if (name !== "auto") {
    try {
      return await startNodeBackend(name, params, false);
    } catch (e) {
      if (!params.fallback || (e as VeraError).code === ComputeErrorCode.COMPUTE_UNKNOWN_BACKEND) throw e;
      skipped.push({ name, reason: (e as Error).message });
    }
  }
  for (const candidate of ["ort-cuda", "webgpu", "ort-cpu", "wasm"]) {
    if (candidate === name) continue;
    try {
      const be = await startNodeBackend(candidate, params, true);
      if (be.info) be.info.skipped = skipped;
      return be;
    } catch (e) {
      skipped.push({ name: candidate, reason: (e as Error).message });
    }
  }
  const ref = createReferenceBackend();
  ref.info!.skipped = skipped;
  return ref;
}

/**
 * Node-only: the onnxruntime-node backends (`ort-cpu`, `ort-webgpu`, `ort-cuda`).
 *
 * The data path is what makes them fast (see bench/RESULTS.md for the numbers that decided it):
 * - the shared projection A is a constant initializer of a session kept per (A, dtype, layout), so
 *   onnxruntime pre-packs it ONCE for every layer with that in_features; lambda_b and lambda_d are
 *   folded into the thin out x r factor inside the graph;
 * - the weight is processed in row blocks (a few MB, cache-resident), merged IN PLACE: the block
 *   of the caller's weight is both the input and the pre-bound output of one graph run, so no
 *   tensor is allocated, copied or returned per layer;
 * - f16 weights cross the boundary as f16 and are cast inside the graph (onnxruntime's Cast
 *   kernels run on every intra-op thread); bf16 has no onnxruntime-node tensor type: the graph
 *   writes the float32 delta block into the WebAssembly kernel's memory and the kernel does
 *   widen + add + round to nearest even + max |delta| in one cache-resident SIMD pass;
 * - a read-only pre-scan (max |W|, for 16-bit weights the largest magnitude bit pattern by the
 *   WebAssembly kernel) proves that no element can overflow before anything is written; only
 *   when it cannot prove that, the merge runs on a copy that is checked element by element
 *   before it replaces the weight.
 */
import type * as OrtNs from "onnxruntime-node";
import type { BackendInfo, ComputeBackend, MergeTask, MergeTaskResult } from "../backend.js";
import { findOverflow, overflowError } from "../overflow.js";
import { validateMergeTasks } from "../validate-tasks.js";
import { loadWasmKernels, type WasmKernels } from "../wasm/kernels.js";
import { loadOrt, requireCudaProvider } from "./ort-load.js";
import { mergeBlocks, type MergeBlocksContext } from "./ort-merge-blocks.js";
import { scanModel } from "./ort-merge-graphs.js";
import { mayOverflow } from "./ort-overflow-scan.js";
import { OrtSessions } from "./ort-sessions.js";

/** Execution providers the onnxruntime backends can use. */
export type OrtExecutionProvider = "cpu" | "webgpu" | "cuda";

/** Params of {@link createOrtBackend}. */
export interface CreateOrtBackendParams {
  /**
   * The onnxruntime execution provider.
   * @default "cpu"
   */
  executionProvider?: OrtExecutionProvider;
  /**
   * Intra-op threads of the CPU provider.
   * @default the number of available cores
   */
  threads?: number;
  /**
   * Target bytes of float32 output per graph run (row-block size). Blocks of a few MiB stay in the
   * L2/L3 caches and measured fastest on the reference machine (bench/RESULTS.md).
   * @default 4194304
   */
  blockBytes?: number;
  /**
   * Whether onnxruntime's intra-op threads spin while waiting for work (onnxruntime's default is
   * to spin).
   * @default onnxruntime's default
   */
  spinning?: boolean;
  /**
   * Most merge sessions kept open (one per distinct A array, dtype and layout; least recently
   * used ones are released).
   * @default 8
   */
  maxSessions?: number;
  /**
   * The onnxruntime-node module (for tests or a custom build).
   * @default `await import("onnxruntime-node")`
   */
  ort?: unknown;
}

const NAMES: Record<OrtExecutionProvider, string> = { cpu: "ort-cpu", webgpu: "ort-webgpu", cuda: "ort-cuda" };

/**
 * Create an onnxruntime-node merge backend. Throws `COMPUTE_UNAVAILABLE` when onnxruntime-node is
 * not installed or the execution provider cannot start (the check creates a tiny session).
 * The `a` arrays of the tasks are treated as immutable: a session with a pre-packed copy is kept
 * per `a` object (pass the same object for every layer with the same in_features).
 */
export async function createOrtBackend(params: CreateOrtBackendParams = {}): Promise<ComputeBackend> {
  const ep = params.executionProvider ?? "cpu";
  const ort = await loadOrt(params.ort);
  if (ep === "cuda" && !params.ort) await requireCudaProvider();
  const name = NAMES[ep];
  const threads = params.threads ?? (await availableCores());
  const sessions = new OrtSessions({
    ort,
    ep,
    name,
    options: sessionOptions(ep, threads, params.spinning),
    maxSessions: Math.max(1, params.maxSessions ?? 8),
  });
  // Probe: fails fast (COMPUTE_UNAVAILABLE) when the provider is missing.
  const scanF32 = await sessions.open(scanModel());
  let wasm: Promise<WasmKernels> | undefined;
  const kernels = (): Promise<WasmKernels> => (wasm ??= loadWasmKernels({ relaxed: false }));
  const ctx: MergeBlocksContext = { ort, sessions, kernels, blockBytes: Math.max(4096, params.blockBytes ?? 4 << 20) };
  const device =
    ep === "cpu"
      ? `cpu, ${threads} thread${threads === 1 ? "" : "s"} (onnxruntime-node)`
      : `onnxruntime-node ${ep} execution provider${ep === "webgpu" ? " (the adapter is not reported: it may be a software renderer)" : ""}`;
  const info: BackendInfo = { name, device };

  /** Merge one task: in place when the pre-scan proves it cannot overflow, else on a checked copy. */
  const mergeOne = async (task: MergeTask): Promise<MergeTaskResult> => {
    const w = task.weight;
    if (!(await mayOverflow({ ort, sessions, scanF32, kernels }, task)))
      return { name: task.name, maxAbsDelta: await mergeBlocks(ctx, task, w) };
    const copy = w.slice();
    const maxAbsDelta = await mergeBlocks(ctx, task, copy);
    const at = findOverflow(task.dtype, w, copy);
    if (at >= 0) throw overflowError(task, at);
    w.set(copy);
    return { name: task.name, maxAbsDelta };
  };

  // Merges share the WebAssembly kernel's staging memory across awaits: one at a time.
  let queue: Promise<unknown> = Promise.resolve();
  return {
    name,
    info,
    async merge(tasks: MergeTask[]): Promise<MergeTaskResult[]> {
      validateMergeTasks(tasks);
      const done = queue.then(async () => {
        const results: MergeTaskResult[] = [];
        for (const task of tasks) results.push(await mergeOne(task));
        return results;
      });
      queue = done.catch(() => {});
      return done;
    },
    async dispose(): Promise<void> {
      await sessions.dispose();
      await scanF32.release();
    },
  };
}

async function availableCores(): Promise<number> {
  const os = await import("node:os");
  return typeof os.availableParallelism === "function" ? os.availableParallelism() : os.cpus().length;
}

function sessionOptions(
  ep: OrtExecutionProvider,
  threads: number,
  spinning: boolean | undefined,
): OrtNs.InferenceSession.SessionOptions {
  return {
    executionProviders: [ep],
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: "sequential",
    graphOptimizationLevel: "all",
    logSeverityLevel: 3,
    ...(spinning === undefined ? {} : { extra: { session: { intra_op: { allow_spinning: spinning ? "1" : "0" } } } }),
  };
}

/**
 * Internal: the read-only overflow pre-scan of the onnxruntime backends. A cheap bound on
 * |delta| plus the weight's largest magnitude proves, for almost every weight, that no element
 * can overflow, so the merge can run in place; otherwise it runs on a checked copy.
 */
import { DTYPE_BYTES, DTYPE_OVERFLOW_THRESHOLD } from "../round-to-dtype.js";
import type { MergeTask } from "../backend.js";
import { deltaBound, provablyNoOverflow, riskyPattern } from "../overflow.js";
import type { WasmKernels } from "../wasm/kernels.js";
import type { Ort } from "./ort-load.js";
import type { OrtSessions, Session } from "./ort-sessions.js";

/** What the scan needs. */
export interface OverflowScanContext {
  ort: Ort;
  sessions: OrtSessions;
  /** The float32 max/min scan session ({@link scanModel}). */
  scanF32: Session;
  /** The WebAssembly kernels (loaded on first use). */
  kernels: () => Promise<WasmKernels>;
}

/** max |W| over a float32 weight, NaN when it holds a NaN. */
async function maxAbsWeight(ctx: OverflowScanContext, view: Float32Array): Promise<number> {
  const chunk = 1 << 18; // 1 MiB: the second reduction reads it from L2
  // onnxruntime-node takes no tensor over a SharedArrayBuffer (a weight a worker thread merges): chunks copied
  const stage = view.buffer instanceof SharedArrayBuffer ? new Float32Array(Math.min(chunk, view.length)) : undefined;
  let m = 0;
  for (let o = 0; o < view.length; o += chunk) {
    let part = view.subarray(o, Math.min(view.length, o + chunk));
    if (stage) {
      stage.set(part);
      part = stage.subarray(0, part.length);
    }
    const r = await ctx.sessions.run(ctx.scanF32, { W: new ctx.ort.Tensor("float32", part, [part.length]) });
    const mx = (r.MX!.data as Float32Array)[0]!;
    const mn = (r.MN!.data as Float32Array)[0]!;
    if (Number.isNaN(mx) || Number.isNaN(mn)) return NaN;
    m = Math.max(m, Math.abs(mx), Math.abs(mn));
  }
  return m;
}

/**
 * The largest magnitude bit pattern of a 16-bit weight: max(bits & 0x7fff), by the WebAssembly
 * SIMD kernel over chunks copied into its memory (a memory-bound pass, ~13x faster than the same
 * reduction as an onnxruntime graph, which needs an int32 cast of every element).
 */
function maxPattern16(k: WasmKernels, w: Uint8Array): number {
  const chunk = 1 << 19; // bytes: stays in L2
  k.reserve(64 + chunk);
  const view = new Uint8Array(k.memory.buffer, 64, chunk);
  let m = 0;
  for (let o = 0; o < w.byteLength; o += chunk) {
    const part = w.subarray(o, Math.min(w.byteLength, o + chunk));
    view.set(part);
    m = Math.max(m, k.maxBits16(64, part.byteLength >> 1));
  }
  return m;
}

/** Whether merging `task` in place could overflow its dtype (then it is merged on a checked copy). */
export async function mayOverflow(ctx: OverflowScanContext, task: MergeTask): Promise<boolean> {
  const w = task.weight;
  const bound = deltaBound(task);
  if (task.dtype === "F16" || task.dtype === "BF16")
    return maxPattern16(await ctx.kernels(), w) >= riskyPattern(task.dtype, bound);
  if (w.byteOffset % DTYPE_BYTES[task.dtype] === 0) {
    const mw = await maxAbsWeight(ctx, new Float32Array(w.buffer, w.byteOffset, w.byteLength / 4));
    return !(mw + bound < DTYPE_OVERFLOW_THRESHOLD[task.dtype] * (1 - 2 ** -20));
  }
  return !provablyNoOverflow(task, bound);
}

/** Internal: the row-block merge of one task by an onnxruntime merge session. */
import type * as OrtNs from "onnxruntime-node";
import type { MergeTask } from "../backend.js";
import { DTYPE_BYTES } from "../round-to-dtype.js";
import type { WasmKernels } from "../wasm/kernels.js";
import type { Ort } from "./ort-load.js";
import type { GraphKind } from "./ort-merge-graphs.js";
import type { OrtSessions } from "./ort-sessions.js";

/** What a block merge needs. */
export interface MergeBlocksContext {
  ort: Ort;
  sessions: OrtSessions;
  /** The WebAssembly kernels (loaded on first use). */
  kernels: () => Promise<WasmKernels>;
  /** Target bytes of float32 output per graph run. */
  blockBytes: number;
  /**
   * The in_out layout's folded factor, reused from weight to weight (merges run one at a time): a fresh array of a
   * few MiB per weight costs a page fault per 4 KiB on its first touch, more than the folding itself.
   */
  folded?: Float32Array;
}

const transposed = new WeakMap<Float32Array, Float32Array>();
/** A^T (in x r) for the in_out layout, computed once per A. */
function transposeA(a: Float32Array, r: number, n: number): Float32Array {
  let t = transposed.get(a);
  if (!t || t.length !== a.length) {
    t = new Float32Array(a.length);
    for (let k = 0; k < r; k++) for (let j = 0; j < n; j++) t[j * r + k] = a[k * n + j]!;
    transposed.set(a, t);
  }
  return t;
}

/**
 * Merge one task in place on `bytes` (the weight or a copy of it), row block by row block;
 * returns max |delta|. f32 / f16: the block of the caller's weight is the graph's input and its
 * pre-bound output (a staging copy only when unaligned or in a SharedArrayBuffer). bf16: the graph writes the float32 delta
 * block into the WebAssembly kernel's memory, the kernel adds it to the weight block.
 */
export async function mergeBlocks(ctx: MergeBlocksContext, task: MergeTask, bytes: Uint8Array): Promise<number> {
  const { outFeatures: o, inFeatures: n, rank: r, layout, dtype } = task;
  const kind: GraphKind = dtype === "F32" ? "f32" : dtype === "F16" ? "f16" : "delta";
  const session = await ctx.sessions.mergeSession(task, kind);
  const cols = layout === "out_in" ? n : o;
  const rowsTotal = layout === "out_in" ? o : n;
  const rowsPer = Math.max(1, Math.min(rowsTotal, Math.floor(ctx.blockBytes / (4 * cols))));
  const eb = DTYPE_BYTES[dtype];
  // onnxruntime-node takes no tensor over a SharedArrayBuffer (a weight a worker thread merges): staged like unaligned
  const direct = bytes.byteOffset % eb === 0 && !(bytes.buffer instanceof SharedArrayBuffer);
  // f32 / f16: the block of the caller's weight is the graph's input and its pre-bound output
  // (a staging copy, cache-resident, only when unaligned or shared). bf16: the graph writes the float32 delta block
  // into the WebAssembly kernel's memory, the kernel adds it to the weight block (copied in and out).
  const stage = kind !== "delta" && !direct ? new Uint8Array(rowsPer * cols * eb) : undefined;
  const w16At = 64;
  const mAt = w16At + Math.ceil((rowsPer * cols * 2) / 64) * 64;
  let k: WasmKernels | undefined;
  if (kind === "delta") {
    k = await ctx.kernels();
    k.reserve(mAt + rowsPer * cols * 4);
  }
  const ld = layout === "out_in" ? new ctx.ort.Tensor("float32", task.lambdaD, [1, r]) : undefined;
  const at = layout === "in_out" ? transposeA(task.a, r, n) : undefined;
  let bp: OrtNs.Tensor | undefined;
  if (layout === "in_out") {
    if (!ctx.folded || ctx.folded.length < o * r) ctx.folded = new Float32Array(o * r);
    const folded = ctx.folded.subarray(0, o * r);
    const { b, lambdaB: lb, lambdaD: ld } = task;
    for (let i = 0, at = 0; i < o; i++, at += r) {
      const lbi = lb[i]!;
      for (let kk = 0; kk < r; kk++) folded[at + kk] = Math.fround(b[at + kk]! * lbi) * ld[kk]!;
    }
    bp = new ctx.ort.Tensor("float32", folded, [o, r]);
  }
  let maxDelta = 0;
  for (let r0 = 0; r0 < rowsTotal; r0 += rowsPer) {
    const rows = Math.min(rowsPer, rowsTotal - r0);
    const count = rows * cols;
    const byteStart = r0 * cols * eb;
    const byteEnd = byteStart + count * eb;
    const feeds: Record<string, OrtNs.Tensor> =
      layout === "out_in"
        ? {
            B: new ctx.ort.Tensor("float32", task.b.subarray(r0 * r, (r0 + rows) * r), [rows, r]),
            LB: new ctx.ort.Tensor("float32", task.lambdaB.subarray(r0, r0 + rows), [rows, 1]),
            LD: ld!,
          }
        : {
            AT: new ctx.ort.Tensor("float32", at!.subarray(r0 * r, (r0 + rows) * r), [rows, r]),
            BP: bp!,
          };
    if (kind !== "delta") {
      const src = stage ? stage.subarray(0, count * eb) : bytes.subarray(byteStart, byteEnd);
      if (stage) src.set(bytes.subarray(byteStart, byteEnd));
      const wt =
        kind === "f32"
          ? new ctx.ort.Tensor("float32", new Float32Array(src.buffer, src.byteOffset, count), [rows, cols])
          : new ctx.ort.Tensor("float16", new Uint16Array(src.buffer, src.byteOffset, count) as never, [rows, cols]);
      feeds.W = wt;
      const res = await ctx.sessions.run(session, feeds, { Y: wt, D: null as never });
      const d = (res.D!.data as Float32Array)[0]!;
      if (d > maxDelta) maxDelta = d;
      if (stage) bytes.set(src, byteStart);
    } else {
      const mem = k!.memory.buffer;
      const w16 = new Uint8Array(mem, w16At, count * 2);
      w16.set(bytes.subarray(byteStart, byteEnd));
      await ctx.sessions.run(session, feeds, {
        M: new ctx.ort.Tensor("float32", new Float32Array(mem, mAt, count), [rows, cols]),
      });
      k!.bf16Add(w16At, mAt, count, 0);
      const d = new Float32Array(mem, 0, 1)[0]!;
      if (d > maxDelta) maxDelta = d;
      bytes.set(w16, byteStart);
    }
  }
  return maxDelta;
}

import { VeraError } from "../errors.js";
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from "../numeric/half.js";
import type { ComputeBackend, MergeTask, MergeTaskResult } from "./backend.js";
import { ComputeErrorCode } from "./error-codes.js";
import { overflowError } from "./overflow.js";
import { validateMergeTasks } from "./validate-tasks.js";
import { loadWasmKernels, type WasmKernels } from "./wasm/kernels.js";

/** Params of {@link createWasmBackend}. */
export interface CreateWasmBackendParams {
  /**
   * Use relaxed-SIMD fused multiply-add when the engine validates it (Chrome 114+, Firefox 120+;
   * Node 20 only with `--experimental-wasm-relaxed-simd`).
   * @default true
   */
  relaxed?: boolean;
  /**
   * Float32 bytes of one row block of the delta.
   * @default 1048576
   */
  blockBytes?: number;
}

/**
 * The WebAssembly SIMD backend: a 4 x 8 register-blocked float32 GEMM computes the delta of a row
 * block (lambda_b and lambda_d folded into the thin factor), then the weight is added and rounded
 * once per element in JavaScript. One thread, no GPU, runs in every browser: the CPU fallback where
 * onnxruntime-node is not available (measured 16-22 GFLOP/s per thread on the reference machine,
 * about 25x the reference backend). Throws `COMPUTE_UNAVAILABLE` when the engine lacks WebAssembly SIMD.
 */
export async function createWasmBackend(params: CreateWasmBackendParams = {}): Promise<ComputeBackend> {
  let k: WasmKernels;
  try {
    k = await loadWasmKernels({ relaxed: params.relaxed !== false });
  } catch (e) {
    throw new VeraError(ComputeErrorCode.COMPUTE_UNAVAILABLE, `wasm backend unavailable: ${(e as Error).message}`, {
      cause: e,
    });
  }
  const blockBytes = Math.max(4096, params.blockBytes ?? 1 << 20);
  const transposed = new WeakMap<Float32Array, Float32Array>();
  return {
    name: "wasm",
    info: { name: "wasm", device: `cpu, 1 thread (WebAssembly SIMD${k.relaxed ? ", relaxed FMA" : ""})` },
    async merge(tasks: MergeTask[]): Promise<MergeTaskResult[]> {
      validateMergeTasks(tasks);
      const results: MergeTaskResult[] = [];
      for (const task of tasks) results.push(mergeOne(k, task, blockBytes, transposed));
      return results;
    },
  };
}

function mergeOne(
  k: WasmKernels,
  task: MergeTask,
  blockBytes: number,
  transposed: WeakMap<Float32Array, Float32Array>,
): MergeTaskResult {
  const { outFeatures: o, inFeatures: n, rank: r, layout, dtype } = task;
  const cols = layout === "out_in" ? n : o;
  const rowsTotal = layout === "out_in" ? o : n;
  const rowsPer = Math.max(1, Math.min(rowsTotal, Math.floor(blockBytes / (4 * cols))));
  // Right factor R (r x cols) and the left factor source, with lambdas folded into the thin one.
  let right: Float32Array;
  let leftOf: (r0: number, rows: number, dst: Float32Array) => void;
  if (layout === "out_in") {
    right = task.a;
    leftOf = (r0, rows, dst) => {
      for (let i = 0; i < rows; i++) {
        const lb = task.lambdaB[r0 + i]!;
        for (let q = 0; q < r; q++) dst[i * r + q] = Math.fround(task.b[(r0 + i) * r + q]! * lb) * task.lambdaD[q]!;
      }
    };
  } else {
    right = new Float32Array(r * o); // (lambda_b B lambda_d)^T
    for (let i = 0; i < o; i++) {
      const lb = task.lambdaB[i]!;
      for (let q = 0; q < r; q++) right[q * o + i] = Math.fround(task.b[i * r + q]! * lb) * task.lambdaD[q]!;
    }
    let at = transposed.get(task.a);
    if (!at) {
      at = new Float32Array(n * r);
      for (let q = 0; q < r; q++) for (let j = 0; j < n; j++) at[j * r + q] = task.a[q * n + j]!;
      transposed.set(task.a, at);
    }
    const atf = at;
    leftOf = (r0, rows, dst) => dst.set(atf.subarray(r0 * r, (r0 + rows) * r));
  }
  const align = (x: number) => Math.ceil(x / 64) * 64;
  const rOff = 0;
  const lOff = align(right.byteLength);
  const cOff = lOff + align(rowsPer * r * 4);
  k.reserve(cOff + rowsPer * cols * 4);
  new Float32Array(k.memory.buffer, rOff, right.length).set(right);
  const out = new Uint8Array(task.weight.byteLength);
  const src = new DataView(task.weight.buffer, task.weight.byteOffset, task.weight.byteLength);
  const dst = new DataView(out.buffer);
  let maxAbs = 0;
  for (let r0 = 0; r0 < rowsTotal; r0 += rowsPer) {
    const rows = Math.min(rowsPer, rowsTotal - r0);
    const count = rows * cols;
    leftOf(r0, rows, new Float32Array(k.memory.buffer, lOff, rows * r));
    const c = new Float32Array(k.memory.buffer, cOff, count);
    c.fill(0);
    k.gemm(lOff, rOff, cOff, rows, cols, r);
    const base = r0 * cols;
    for (let e = 0; e < count; e++) {
      const d = c[e]!;
      const ad = Math.abs(d);
      if (ad > maxAbs) maxAbs = ad;
      const idx = base + e;
      if (dtype === "F32") {
        const w = src.getFloat32(idx * 4, true);
        const y = Math.fround(w + d);
        if (!Number.isFinite(y) && Number.isFinite(w)) throw overflowError(task, idx);
        dst.setFloat32(idx * 4, y, true);
      } else {
        const h = src.getUint16(idx * 2, true);
        const w = dtype === "F16" ? f16BitsToF32(h) : bf16BitsToF32(h);
        const y = w + d;
        const bits = dtype === "F16" ? f32ToF16Bits(y) : f32ToBf16Bits(y);
        if ((bits & 0x7fff) === (dtype === "F16" ? 0x7c00 : 0x7f80) && Number.isFinite(w))
          throw overflowError(task, idx);
        dst.setUint16(idx * 2, bits, true);
      }
    }
  }
  task.weight.set(out);
  return { name: task.name, maxAbsDelta: Math.fround(maxAbs) };
}

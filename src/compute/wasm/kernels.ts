/** Loader of the WebAssembly SIMD kernels (internal; pure, works in browsers and Node). */
import { embeddedWasm } from "../../wasm/embedded-wasm.js";
import { KERNELS_RELAXED_BASE64, KERNELS_SIMD_BASE64 } from "./kernels-wasm.js";

/** The instantiated kernels; all offsets are byte offsets into `memory`. */
export interface WasmKernels {
  memory: WebAssembly.Memory;
  /** True when the GEMM uses relaxed-SIMD multiply-add. */
  relaxed: boolean;
  bf16ToF32(src: number, dst: number, n: number): void;
  f32ToBf16(src: number, dst: number, n: number): void;
  /**
   * In place: the n bfloat16 bit patterns at `w` become bfloat16(float32(w) + m) (float32
   * addition, then round to nearest even), m being n float32 values at `m`; max |m| (NaN ignored)
   * is stored as a float32 at `stats`.
   */
  bf16Add(w: number, m: number, n: number, stats: number): void;
  /** The largest `bits & 0x7fff` of n 16-bit values at `p` (the largest magnitude pattern). */
  maxBits16(p: number, n: number): number;
  /** C[M x N] += A[M x K] B[K x N], row-major float32. */
  gemm(a: number, b: number, c: number, m: number, n: number, k: number): void;
  /** Grow the memory to at least `bytes`; views on `memory.buffer` must be recreated afterwards. */
  reserve(bytes: number): void;
}

const simd = embeddedWasm(KERNELS_SIMD_BASE64);
const relaxed = embeddedWasm(KERNELS_RELAXED_BASE64);

/** Whether this engine validates WebAssembly SIMD128 / relaxed SIMD. */
export function wasmSupport(): { simd: boolean; relaxed: boolean } {
  return { simd: simd.validates(), relaxed: relaxed.validates() };
}

/** Instantiate the kernels (relaxed-SIMD when asked for and validated, else SIMD128). Throws when the engine lacks SIMD. */
export async function loadWasmKernels(params: { relaxed?: boolean } = {}): Promise<WasmKernels> {
  const sup = wasmSupport();
  if (!sup.simd) throw new Error("this JavaScript engine has no WebAssembly SIMD");
  const useRelaxed = params.relaxed !== false && sup.relaxed;
  const module = await (useRelaxed ? relaxed : simd).compile();
  const instance = await WebAssembly.instantiate(module, {});
  const e = instance.exports as unknown as {
    memory: WebAssembly.Memory;
    bf16_to_f32(s: number, d: number, n: number): void;
    f32_to_bf16(s: number, d: number, n: number): void;
    bf16_add(w: number, m: number, n: number, st: number): void;
    max_bits16(p: number, n: number): number;
    gemm(a: number, b: number, c: number, m: number, n: number, k: number): void;
  };
  return {
    memory: e.memory,
    relaxed: useRelaxed,
    bf16ToF32: e.bf16_to_f32,
    f32ToBf16: e.f32_to_bf16,
    bf16Add: e.bf16_add,
    maxBits16: e.max_bits16,
    gemm: e.gemm,
    reserve(bytes: number) {
      const have = e.memory.buffer.byteLength;
      if (bytes > have) e.memory.grow(Math.ceil((bytes - have) / 65536));
    },
  };
}

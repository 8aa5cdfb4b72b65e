import { embeddedWasm } from "../wasm/embedded-wasm.js";
import { MT19937_WASM_BASE64 } from "./wasm/mt19937-wasm.js";

interface Exports {
  memory: WebAssembly.Memory;
  seed(s: number): void;
  fill(out: number, n: number, from: number, scale: number, fused: number): void;
}

const SCRATCH = 4096;
const CHUNK = (2 * 65536 - SCRATCH) / 4; // elements per fill call (fits the module's 2 pages)
const embedded = embeddedWasm(MT19937_WASM_BASE64);

/** The compiled module, or null where WebAssembly SIMD is unavailable (then the JavaScript generator runs). */
function module(): WebAssembly.Module | null {
  return embedded.moduleSync();
}

/** True when the WebAssembly SIMD generator can run here. */
export function wasmGeneratorAvailable(): boolean {
  return module() !== null;
}

/** MT19937 with torch's uniform transform in WebAssembly SIMD; same results as {@link MT19937.fillUniform}. @internal */
export class WasmMT19937 {
  private readonly ex: Exports;
  constructor(seed32: number) {
    const m = module();
    if (!m) throw new Error("WebAssembly SIMD is not available");
    this.ex = new WebAssembly.Instance(m, {}).exports as unknown as Exports;
    this.ex.seed(seed32 | 0);
  }
  fillUniform(out: Float32Array, from: number, span: number, arithmetic: "fused" | "separate"): void {
    const scale = span * 5.9604644775390625e-8;
    const fused = arithmetic === "fused" ? 1 : 0;
    const view = new Float32Array(this.ex.memory.buffer, SCRATCH, CHUNK);
    for (let k = 0; k < out.length; k += CHUNK) {
      const n = Math.min(CHUNK, out.length - k);
      this.ex.fill(SCRATCH, n, from, scale, fused);
      out.set(n === CHUNK ? view : view.subarray(0, n), k);
    }
  }
}

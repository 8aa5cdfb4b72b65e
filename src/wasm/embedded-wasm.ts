/**
 * The one loader of the WebAssembly modules that src/wasm/build-wasm.mjs embeds as base64 (pure:
 * browsers and Node). A module is decoded and validated once; where the engine lacks a feature it
 * needs (SIMD, relaxed SIMD), it does not validate and callers fall back.
 */

/** An embedded WebAssembly module. */
export interface EmbeddedWasm {
  /** Whether this engine validates the module. */
  validates(): boolean;
  /** The module compiled synchronously (small modules only: browsers refuse large ones on the main thread), or null where it does not validate. */
  moduleSync(): WebAssembly.Module | null;
  /** The module compiled asynchronously. Throws where it does not validate. */
  compile(): Promise<WebAssembly.Module>;
}

function decodeBase64(s: string): Uint8Array<ArrayBuffer> {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** An embedded module from its base64 text (decoded on first use). */
export function embeddedWasm(base64: string): EmbeddedWasm {
  let bytes: Uint8Array<ArrayBuffer> | undefined;
  let valid: boolean | undefined;
  let sync: WebAssembly.Module | null | undefined;
  const get = (): Uint8Array<ArrayBuffer> => (bytes ??= decodeBase64(base64));
  const validates = (): boolean => {
    if (valid === undefined) {
      try {
        valid = typeof WebAssembly === "object" && WebAssembly.validate(get());
      } catch {
        valid = false;
      }
    }
    return valid;
  };
  return {
    validates,
    moduleSync() {
      if (sync === undefined) {
        try {
          sync = validates() ? new WebAssembly.Module(get()) : null;
        } catch {
          sync = null;
        }
      }
      return sync;
    },
    async compile() {
      if (!validates()) throw new Error("this JavaScript engine cannot run the WebAssembly module");
      return WebAssembly.compile(get());
    },
  };
}

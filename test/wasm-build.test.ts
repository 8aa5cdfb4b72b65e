/**
 * One WebAssembly toolchain: every generated module is exactly what src/wasm/build-wasm.mjs
 * assembles from its committed source, and every one loads through the one loader.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadWasmKernels, wasmSupport } from "../src/compute/wasm/kernels.js";
import { wasmGeneratorAvailable } from "../src/projections/wasm-generator.js";
import { embeddedWasm } from "../src/wasm/embedded-wasm.js";
// @ts-expect-error plain ESM build script without types
import { buildWasmModules, WASM_MODULES } from "../src/wasm/build-wasm.mjs";

const root = join(__dirname, "..");

/** Every committed .ts that embeds a WebAssembly module (exports a `*_BASE64` constant). */
function generatedFiles(dir: string, out: string[] = []): string[] {
  for (const e of readdirSync(join(root, dir), { withFileTypes: true })) {
    const rel = `${dir}/${e.name}`;
    if (e.isDirectory()) generatedFiles(rel, out);
    else if (e.name.endsWith(".ts") && /^export const \w+_BASE64 =/m.test(readFileSync(join(root, rel), "utf8")))
      out.push(rel);
  }
  return out;
}

describe("WebAssembly build", () => {
  it("every generated module is listed in the build and equals what it builds from the sources", async () => {
    const built = (await buildWasmModules()) as Array<{ path: string; text: string }>;
    expect(built.map((b) => b.path).sort()).toEqual(generatedFiles("src").sort());
    expect(built.length).toBe((WASM_MODULES as unknown[]).length);
    for (const b of built) expect({ path: b.path, text: readFileSync(join(root, b.path), "utf8") }).toEqual(b);
  });

  it("every embedded module validates and loads through the one loader", async () => {
    for (const b of (await buildWasmModules()) as Array<{ path: string; text: string }>) {
      const consts = [...b.text.matchAll(/export const (\w+) =\n((?:\s*"[^"]*"(?: \+)?\n?)+);/g)];
      expect(consts.length).toBeGreaterThan(0);
      for (const [, name, literal] of consts) {
        const base64 = [...literal!.matchAll(/"([^"]*)"/g)].map((m) => m[1]).join("");
        const m = embeddedWasm(base64);
        // relaxed SIMD is optional: where this engine lacks it, the module must not validate (it falls back)
        const expected = /RELAXED/.test(name!) ? wasmSupport().relaxed : true;
        expect({ name, validates: m.validates() }).toEqual({ name, validates: expected });
        if (expected) expect(await m.compile()).toBeInstanceOf(WebAssembly.Module);
      }
    }
    expect(wasmGeneratorAvailable()).toBe(true);
    expect(wasmSupport().simd).toBe(true);
    expect((await loadWasmKernels({ relaxed: false })).relaxed).toBe(false);
  });

  it("a module this engine cannot run does not validate, and compile() refuses it", async () => {
    const bad = embeddedWasm(btoa("\0asm\x01\0\0\0\x99"));
    expect(bad.validates()).toBe(false);
    expect(bad.moduleSync()).toBeNull();
    await expect(bad.compile()).rejects.toThrow(/cannot run/);
  });
});

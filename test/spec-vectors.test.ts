import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import * as lib from "../src/index.js";
// @ts-expect-error plain ESM generator without types
import { buildVectors } from "../spec/vectors/build.mjs";

const dir = join(__dirname, "../spec/vectors");
const manifest = JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8")) as {
  vectors: Array<{ file: string; valid: boolean; code?: string; warning?: string; rule: string }>;
};

describe("spec/vectors", () => {
  it("committed vectors are exactly what spec/vectors/build.mjs builds", () => {
    const built = buildVectors(lib) as Array<{ file: string; bytes: Uint8Array }>;
    expect(built.map((v) => v.file).sort()).toEqual(manifest.vectors.map((v) => v.file).sort());
    const onDisk = readdirSync(dir)
      .filter((f) => f.endsWith(".vera.safetensors"))
      .sort();
    expect(onDisk).toEqual(built.map((v) => v.file).sort());
    for (const v of built)
      expect(Buffer.compare(Buffer.from(readFileSync(join(dir, v.file))), Buffer.from(v.bytes)), v.file).toBe(0);
  });

  for (const v of manifest.vectors) {
    it(`${v.file}: ${v.valid ? "valid" : v.code}`, () => {
      const r = lib.validateVera(new Uint8Array(readFileSync(join(dir, v.file))));
      expect(r.ok).toBe(v.valid);
      if (!v.valid) {
        expect(r.issues[0]?.code).toBe(v.code);
        expect(() => lib.readVera(new Uint8Array(readFileSync(join(dir, v.file))))).toThrowError(
          expect.objectContaining({ code: v.code, name: "VeraError" }),
        );
      } else {
        expect(r.adapter).toBeDefined();
        if (v.warning) expect(r.warnings.map((w) => w.code)).toContain(v.warning);
        else expect(r.warnings).toEqual([]);
      }
    });
  }

  it("every error code named in a MUST of spec/FORMAT.md has an invalid vector, and every code is documented", () => {
    const spec = readFileSync(join(__dirname, "../spec/FORMAT.md"), "utf8");
    const bracketed = new Set([...spec.matchAll(/\*\*\[([A-Z_]+)\]\*\*/g)].map((m) => m[1]!));
    bracketed.delete("VERA_NOT_CANONICAL"); // a warning: covered by valid-not-canonical
    const covered = new Set(manifest.vectors.filter((v) => !v.valid).map((v) => v.code));
    const missing = [...bracketed].filter((c) => !covered.has(c));
    expect(missing).toEqual([]);
    const fileCodes = Object.values(lib.ErrorCode).filter((c) => c.startsWith("ST_") || c.startsWith("VERA_"));
    expect(fileCodes.filter((c) => !spec.includes(c))).toEqual([]);
    // each MUST sentence's paragraph carries a code
    expect(manifest.vectors.filter((v) => v.valid && v.warning === "VERA_NOT_CANONICAL")).toHaveLength(1);
  });
});

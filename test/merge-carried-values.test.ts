/**
 * carriedValues: a carried tensor's values converted to the model's dtype as torch's `.to()` does (round to
 * nearest even), checked bit for bit against torch's own conversions (fixtures/families/rounding.safetensors,
 * made by generate.py), and transposed for a model that stores the weight (in, out).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { carriedValues } from "../src/merge/core/carried-values.js";
import { parseSafetensors, tensorBytes } from "../src/safetensors/parse.js";

const file = parseSafetensors(
  new Uint8Array(readFileSync(join(__dirname, "../fixtures/families/rounding.safetensors"))),
);
const f32 = tensorBytes(file, "f32").slice();
const n = f32.byteLength / 4;

describe("carriedValues", () => {
  for (const [dtype, key] of [
    ["F16", "f16"],
    ["BF16", "bf16"],
  ] as const)
    it(`float32 -> ${dtype}: torch's .to() bits, ties included`, () => {
      const got = carriedValues({ tensor: { name: "t", dtype: "F32", shape: [n], data: f32 }, dtype });
      expect(Buffer.from(got).equals(Buffer.from(tensorBytes(file, key)))).toBe(true);
    });

  it("float16 -> float32 is exact, and F32 -> F32 keeps every bit", () => {
    const f16 = tensorBytes(file, "f16").slice();
    const back = carriedValues({ tensor: { name: "t", dtype: "F16", shape: [n], data: f16 }, dtype: "F16" });
    expect(Buffer.from(back).equals(Buffer.from(f16))).toBe(true);
    const same = carriedValues({ tensor: { name: "t", dtype: "F32", shape: [n], data: f32 }, dtype: "F32" });
    expect(Buffer.from(same).equals(Buffer.from(f32))).toBe(true);
  });

  it("transposes a 2-D tensor for a model that stores it (in, out)", () => {
    const v = new Float32Array([1, 2, 3, 4, 5, 6]); // (2, 3)
    const got = carriedValues({
      tensor: { name: "w", dtype: "F32", shape: [2, 3], data: new Uint8Array(v.buffer) },
      dtype: "F32",
      transpose: true,
    });
    expect([...new Float32Array(got.buffer)]).toEqual([1, 4, 2, 5, 3, 6]);
  });

  it("refuses an integer tensor", () => {
    expect(() =>
      carriedValues({ tensor: { name: "ids", dtype: "I64", shape: [1], data: new Uint8Array(8) }, dtype: "F32" }),
    ).toThrow(/ids/);
  });
});

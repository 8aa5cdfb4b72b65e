import { readFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { dumpsPy, parsePyJson, pyEqual, pyFloat, pyFloatRepr, pyStringRepr, type PyJson } from "../src/peft/py-json.js";
import { PEFT_DIR } from "./peft-fixtures.js";

/** Vectors written by Python's json module (fixtures/peft/generate.py). */
const vectors = JSON.parse(readFileSync(join(PEFT_DIR, "pyjson-vectors.json"), "utf8")) as {
  floats: Array<[string, string]>;
  strings: Array<[string, string]>;
  doc: string;
  doc_dumped: string;
};

function fromBits(hex: string): number {
  const dv = new DataView(new ArrayBuffer(8));
  dv.setBigUint64(0, BigInt("0x" + hex));
  return dv.getFloat64(0);
}

describe("py-json: Python's json module, exactly", () => {
  it(`formats ${vectors.floats.length} floats as Python's repr does`, () => {
    expect(vectors.floats.length).toBeGreaterThan(600);
    for (const [hex, repr] of vectors.floats) expect(pyFloatRepr(fromBits(hex)), hex).toBe(repr);
  });

  it("parses Python's float text back to the same bits and kind", () => {
    for (const [hex, repr] of vectors.floats) {
      const v = parsePyJson(repr);
      expect(
        typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Map) && v.kind === "float",
        repr,
      ).toBe(true);
      const x = (v as { value: number }).value;
      if (Number.isNaN(fromBits(hex))) expect(Number.isNaN(x)).toBe(true);
      else expect(Object.is(x, fromBits(hex)), repr).toBe(true);
    }
  });

  it("escapes strings as ensure_ascii does", () => {
    for (const [s, dumped] of vectors.strings) expect(pyStringRepr(s)).toBe(dumped);
  });

  it("dumps(indent=2, sort_keys=True) of a parsed document equals Python's", () => {
    expect(dumpsPy(parsePyJson(vectors.doc))).toBe(vectors.doc_dumped);
  });

  it("keeps ints of any size and tells 0 from 0.0", () => {
    const v = parsePyJson('{"a": 0, "b": 0.0, "c": 18446744073709551615, "d": -9223372036854775808, "e": 1e400}');
    expect(dumpsPy(v)).toBe(
      '{\n  "a": 0,\n  "b": 0.0,\n  "c": 18446744073709551615,\n  "d": -9223372036854775808,\n  "e": Infinity\n}',
    );
  });

  it("refuses duplicate keys, deep nesting and trailing garbage", () => {
    expect(() => parsePyJson('{"a": 1, "a": 2}')).toThrow(/duplicate key/);
    expect(() => parsePyJson("[".repeat(100) + "]".repeat(100))).toThrow(/nesting/);
    expect(() => parsePyJson('{"a": 1} x')).toThrow(/trailing/);
    expect(() => parsePyJson('{"__proto__": {"x": 1}}')).not.toThrow();
    const v = parsePyJson('{"__proto__": {"x": 1}}') as Map<string, PyJson>;
    expect(v.get("__proto__")).toBeInstanceOf(Map);
  });

  it("property: parse(dumps(v)) == v for random documents", () => {
    const leaf = fc.oneof(
      fc.constant(null),
      fc.boolean(),
      fc.string(),
      fc.bigInt({ min: -(2n ** 80n), max: 2n ** 80n }).map((v) => ({ kind: "int", value: v }) as PyJson),
      fc.double({ noNaN: true }).map((v) => pyFloat(v)),
    );
    const doc = fc.letrec<{ v: PyJson }>((tie) => ({
      v: fc.oneof(
        { depthSize: "small", withCrossShrink: true },
        leaf,
        fc.array(tie("v"), { maxLength: 4 }),
        fc
          .uniqueArray(fc.tuple(fc.string(), tie("v")), { maxLength: 4, selector: (t) => t[0] })
          .map((e) => new Map(e) as PyJson),
      ),
    })).v;
    fc.assert(fc.property(doc, (v) => pyEqual(parsePyJson(dumpsPy(v)), v)));
  });
});

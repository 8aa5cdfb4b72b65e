import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  parseSafetensors,
  parseSafetensorsHeader,
  tensorBytes,
  writeSafetensors,
  layoutSafetensors,
  bytesOf,
  asFloat32,
} from "../src/index.js";
import { errorCode as code } from "./error-helpers.js";

const enc = new TextEncoder();
function file(header: string, data: Uint8Array = new Uint8Array(0), len?: number): Uint8Array {
  const hb = enc.encode(header);
  const out = new Uint8Array(8 + hb.length + data.length);
  new DataView(out.buffer).setUint32(0, len ?? hb.length, true);
  out.set(hb, 8);
  out.set(data, 8 + hb.length);
  return out;
}

describe("safetensors reader", () => {
  it("reads what the writer writes, canonically", () => {
    const a = new Float32Array([1, 2, 3]);
    const b = new Uint8Array([7]);
    const bytes = writeSafetensors({
      tensors: [
        { name: "z", dtype: "U8", shape: [1], data: b },
        { name: "a", dtype: "F32", shape: [3], data: bytesOf(a) },
      ],
      metadata: { k: "v", a: "b" },
    });
    const f = parseSafetensors(bytes);
    expect(f.metadata).toEqual({ a: "b", k: "v" });
    expect([...f.tensors.keys()]).toEqual(["a", "z"]);
    expect(Array.from(asFloat32(tensorBytes(f, "a")))).toEqual([1, 2, 3]);
    expect(f.headerLength % 8).toBe(0);
    const again = writeSafetensors({
      tensors: [
        { name: "a", dtype: "F32", shape: [3], data: bytesOf(a) },
        { name: "z", dtype: "U8", shape: [1], data: b },
      ],
      metadata: { a: "b", k: "v" },
    });
    expect(Buffer.compare(Buffer.from(bytes), Buffer.from(again))).toBe(0);
  });
  it("accepts empty files with only a header and zero-size tensors", () => {
    expect(parseSafetensors(file("{}")).tensors.size).toBe(0);
    expect(
      parseSafetensors(file('{"e":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}')).tensors.get("e")?.shape,
    ).toEqual([0]);
  });
  it("checks in a fixed order, one code per failure", () => {
    expect(code(() => parseSafetensors(new Uint8Array(7)))).toBe("ST_TRUNCATED");
    expect(code(() => parseSafetensors(file("{}", new Uint8Array(0), 200_000_000)))).toBe("ST_HEADER_TOO_LARGE");
    expect(code(() => parseSafetensors(file("{}", new Uint8Array(0), 99)))).toBe("ST_TRUNCATED");
    expect(code(() => parseSafetensors(file(" {}")))).toBe("ST_HEADER_START");
    expect(code(() => parseSafetensors(file("{,}")))).toBe("ST_HEADER_JSON");
    expect(code(() => parseSafetensors(file("{" + "[".repeat(1000) + "]".repeat(1000) + "}")))).toBe("ST_HEADER_JSON");
    expect(code(() => parseSafetensors(file('{"a":1,"a":2}')))).toBe("ST_DUPLICATE_KEY");
    expect(code(() => parseSafetensors(file('{"__metadata__":{"a":null}}')))).toBe("ST_METADATA");
    expect(code(() => parseSafetensors(file('{"t":{"dtype":"F32","shape":[1]}}')))).toBe("ST_TENSOR_ENTRY");
    expect(
      code(() => parseSafetensors(file('{"t":{"dtype":"Q4","shape":[1],"data_offsets":[0,4]}}', new Uint8Array(4)))),
    ).toBe("ST_DTYPE");
    expect(
      code(() => parseSafetensors(file('{"t":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}', new Uint8Array(4)))),
    ).toBe("ST_SHAPE");
    expect(
      code(() =>
        parseSafetensors(
          file('{"t":{"dtype":"F64","shape":[9007199254740991,2],"data_offsets":[0,4]}}', new Uint8Array(4)),
        ),
      ),
    ).toBe("ST_SIZE_OVERFLOW");
    expect(
      code(() => parseSafetensors(file('{"t":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}', new Uint8Array(4)))),
    ).toBe("ST_OFFSETS");
    expect(
      code(() => parseSafetensors(file('{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,8]}}', new Uint8Array(8)))),
    ).toBe("ST_SIZE_MISMATCH");
    expect(
      code(() =>
        parseSafetensors(file('{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', new Uint8Array(4 + 1))),
      ),
    ).toBe("ST_COVERAGE");
  });
  it("reads a header without the data bytes (header-only reading of big files)", () => {
    const bytes = writeSafetensors({ tensors: [{ name: "w", dtype: "F32", shape: [100], data: new Uint8Array(400) }] });
    const h = parseSafetensorsHeader({ bytes: bytes.subarray(0, bytes.length - 400), fileSize: bytes.length });
    expect(h.tensors.get("w")?.dataOffsets).toEqual([0, 400]);
  });
  it("fuzz: arbitrary bytes only ever give a typed error (property)", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (b) => {
        const c = code(() => parseSafetensors(b));
        expect(typeof c).toBe("string");
      }),
      { numRuns: 2000 },
    );
  });
  it("fuzz: mutated valid files only ever give a typed error or a valid parse (property)", () => {
    const valid = writeSafetensors({
      tensors: [
        { name: "a", dtype: "F32", shape: [2, 3], data: new Uint8Array(24) },
        { name: "b", dtype: "BF16", shape: [5], data: new Uint8Array(10) },
      ],
      metadata: { format: "pt" },
    });
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(valid.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }),
        fc.nat(valid.length),
        (muts, cut) => {
          const b = valid.slice(0, Math.max(cut, 8));
          for (const [i, v] of muts) if (i < b.length) b[i] = v;
          expect(typeof code(() => parseSafetensors(b))).toBe("string");
        },
      ),
      { numRuns: 3000 },
    );
  });
});

describe("one writer, three tensor orders", () => {
  const t = (name: string, dtype: "F32" | "F16" | "I64" | "BOOL", n: number) => ({
    name,
    dtype,
    shape: [n],
    data: new Uint8Array(n * { F32: 4, F16: 2, I64: 8, BOOL: 1 }[dtype]).fill(name.length),
  });
  // U+FFFF sorts after U+10000 in UTF-16 code units, before it in code points (Python, UTF-8 bytes)
  const tensors = [
    t("b", "F16", 2),
    t("\u{10000}", "F32", 1),
    t("\uffff", "F32", 1),
    t("a", "I64", 1),
    t("z", "BOOL", 3),
  ];
  const order = (bytes: Uint8Array): string[] => {
    const f = parseSafetensors(bytes);
    return [...f.tensors.entries()].sort((x, y) => x[1].dataOffsets[0] - y[1].dataOffsets[0]).map(([n]) => n);
  };
  it("name (canonical), given, and torch (dtype descending in the Rust enum, then code points)", () => {
    expect(order(writeSafetensors({ tensors }))).toEqual(["a", "b", "z", "\u{10000}", "\uffff"]);
    expect(order(writeSafetensors({ tensors, order: "given" }))).toEqual(tensors.map((x) => x.name));
    expect(order(writeSafetensors({ tensors, metadata: {}, order: "torch" }))).toEqual([
      "a",
      "\uffff",
      "\u{10000}",
      "b",
      "z",
    ]);
  });
  it("layoutSafetensors gives the header, offsets and size writeSafetensors fills", () => {
    for (const o of ["name", "given", "torch"] as const) {
      const bytes = writeSafetensors({ tensors, metadata: { format: "pt" }, order: o });
      const layout = layoutSafetensors({ tensors, metadata: { format: "pt" }, order: o });
      expect(layout.size).toBe(bytes.length);
      expect(bytes.subarray(0, layout.header.length)).toEqual(layout.header);
      for (const x of tensors) {
        const at = layout.offsets.get(x.name)!;
        expect(bytes.subarray(at, at + x.data.length)).toEqual(x.data);
      }
    }
  });
});

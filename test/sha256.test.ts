import { createHash } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { NODE_SHA256 } from "../src/node/index.js";
import { PURE_SHA256, Sha256, sha256Hex, sha256Implementation } from "../src/index.js";

const reference = (b: Uint8Array): string => createHash("sha256").update(b).digest("hex");

describe("SHA-256", () => {
  it("the pure and node:crypto implementations agree with each other and with known vectors", () => {
    expect(PURE_SHA256.hex(new Uint8Array(0))).toBe("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    expect(PURE_SHA256.hex(new TextEncoder().encode("abc"))).toBe(
      "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (b) => {
        expect(PURE_SHA256.hex(b)).toBe(reference(b));
        expect(NODE_SHA256.hex(b)).toBe(reference(b));
      }),
      { numRuns: 200 },
    );
  });
  it("incremental updates of any split give the one-shot digest", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(), (b, at) => {
        const k = at % (b.length + 1);
        expect(new Sha256().update(b.subarray(0, k)).update(b.subarray(k)).hex()).toBe(reference(b));
      }),
      { numRuns: 200 },
    );
  });
  it("loading the Node edge puts node:crypto behind sha256Hex", () => {
    expect(sha256Implementation().name).toBe("node:crypto");
    expect(sha256Hex(new Uint8Array([1, 2, 3]))).toBe(reference(new Uint8Array([1, 2, 3])));
  });
});

import { mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import setup from "./setup/temp-dir-check.js";

describe("the temp-dir check of every test run", () => {
  it("points the temp dir at a private folder and fails when something is left there", () => {
    const before = tmpdir();
    const teardown = setup();
    const dir = tmpdir();
    expect(dir).not.toBe(before);
    expect(dir).toMatch(/vera-test-run-/);
    mkdirSync(join(dir, "vera-left-behind-x"));
    const status = process.exitCode;
    try {
      expect(() => teardown()).toThrow(/vera-left-behind-x/);
      expect(process.exitCode).toBe(1);
    } finally {
      process.exitCode = status;
    }
    expect(tmpdir()).toBe(before);
  });
  it("passes when the tests removed what they made", () => {
    const teardown = setup();
    mkdirSync(join(tmpdir(), "vera-x"));
    rmSync(join(tmpdir(), "vera-x"), { recursive: true }); // removed by the test that made it
    expect(() => teardown()).not.toThrow();
  });
});

import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { expect, it } from "vitest";

it("npm run fuzz: 3000 generated inputs, none ends in anything but a typed error", () => {
  const r = spawnSync(process.execPath, [join(__dirname, "fuzz.mjs"), "--runs", "3000", "--seed", "7"], {
    encoding: "utf8",
  });
  expect(r.stderr).toBe("");
  expect(r.stdout).toMatch(/fuzz: 3000 inputs/);
  expect(r.stdout).toMatch(/fuzz: 0 ended in anything but a typed error/);
  expect(r.status).toBe(0);
}, 60_000);

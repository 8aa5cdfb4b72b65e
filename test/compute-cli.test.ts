import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { describe, expect, it } from "vitest";

const cli = "dist/cli/index.js"; // built by `npm test` (tsup) before vitest runs

describe("vera backends", { timeout: 120_000 }, () => {
  it("lists every backend with availability and a reason, as JSON", (ctx) => {
    if (!existsSync(cli)) {
      if (process.env.CI === "true") throw new Error(`${cli} is missing: npm test builds it first`);
      console.warn(`skipping: ${cli} not built (run npx tsup)`);
      return ctx.skip();
    }
    const r = spawnSync(process.execPath, [cli, "backends", "--json"], { encoding: "utf8", timeout: 120_000 });
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout) as {
      ok: boolean;
      backends: Array<{ name: string; available: boolean; reason?: string; device?: string }>;
    };
    expect(out.backends.map((b) => b.name)).toEqual([
      "ort-cuda",
      "webgpu",
      "ort-webgpu",
      "ort-cpu",
      "wasm",
      "reference",
    ]);
    for (const b of out.backends) expect(b.available ? b.device : b.reason).toBeTruthy();
    expect(out.backends.find((b) => b.name === "reference")?.available).toBe(true);
  });
});

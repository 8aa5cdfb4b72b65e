import { build } from "esbuild";
import { describe, expect, it } from "vitest";
import { bundleForBrowser } from "./bundle-helpers.js";

// verakit/hub (push, fetch into memory, whoami, model cards) must bundle for browsers; the cache,
// token file and environment live in verakit/hub/node.
describe("browser bundle of the Hub client", () => {
  // @huggingface/hub ships a browser build (its package.json "browser" field maps dist/index.mjs to
  // dist/browser/index.mjs). Bundlers that apply that field (webpack, Vite) pick it themselves; esbuild
  // resolves "exports" first and needs the alias given here.
  it("src/hub/index.ts bundles for the browser without Node built-ins (with @huggingface/hub's browser build)", async () => {
    const r = await bundleForBrowser("src/hub/index.ts", {
      splitting: true,
      outdir: "out",
      alias: { "@huggingface/hub": "./node_modules/@huggingface/hub/dist/browser/index.mjs" },
    });
    const inputs = Object.keys(r.metafile!.inputs);
    expect(inputs.some((i) => i.includes("@huggingface/hub"))).toBe(true);
    expect(
      inputs.filter((i) => i.startsWith("node:") || i.includes("src/hub/node/") || i.includes("src/node/")),
    ).toEqual([]);
    for (const f of r.outputFiles!)
      expect(f.text).not.toMatch(
        /\bfrom\s+["']node:|import\(["']node:|require\(["']node:|require\(["'](fs|path|os|crypto)["']\)/,
      );
  });
  it("src/hub/node/index.ts is the Node edge (it does use node:fs)", async () => {
    const r = await build({
      entryPoints: ["src/hub/node/index.ts"],
      bundle: true,
      platform: "node",
      format: "esm",
      write: false,
      logLevel: "silent",
      metafile: true,
      packages: "external",
    });
    expect(r.outputFiles![0]!.text).toMatch(/from\s+["']node:fs["']/);
  });
});

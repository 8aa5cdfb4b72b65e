import { bundleForBrowser } from "./bundle-helpers.js";
import { describe, expect, it } from "vitest";

// The pure core must bundle for browsers with no Node built-ins (package.json "exports" subpaths).
const browserEntries = [
  "src/index.ts",
  "src/safetensors/index.ts",
  "src/format/index.ts",
  "src/projections/index.ts",
  "src/peft/index.ts",
  "src/onnx/index.ts",
  "src/compute/index.ts",
];

describe("browser bundles of the core", () => {
  for (const entry of browserEntries) {
    it(`${entry} bundles for the browser without Node built-ins`, async () => {
      const r = await bundleForBrowser(entry);
      const inputs = Object.keys(r.metafile!.inputs);
      expect(
        inputs.filter((i) => i.startsWith("node:") || /(^|\/)node_modules\/(onnxruntime-node|webgpu)\//.test(i)),
      ).toEqual([]);
      const text = r.outputFiles![0]!.text;
      expect(text).not.toMatch(
        /\bfrom\s+["']node:|require\(["']node:|require\(["'](fs|path|os|crypto|worker_threads)["']\)/,
      );
    });
  }
});

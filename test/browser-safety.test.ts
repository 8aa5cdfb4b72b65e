import { bundleForBrowser } from "./bundle-helpers.js";
import { describe, expect, it } from "vitest";
import { browserEntries as browserEntryNames, entries } from "../tsup.config.js";

// The browser entries (tsup.config.ts) must bundle for browsers with no Node built-ins; hub/index has its own test
// (test/hub-browser-safety.test.ts) with @huggingface/hub's browser build.
const browserEntries = browserEntryNames
  .filter((name) => name !== "hub/index")
  .map((name) => entries[name as keyof typeof entries]);

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

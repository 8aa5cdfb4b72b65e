import { join } from "node:path";
import { defineConfig } from "vitest/config";

const root = join(import.meta.dirname, "..", "..");

/** Tests that drive the built page (web/dist) in headless Chromium; run by `npm run test:browser`. */
export default defineConfig({
  // The page's modules import verakit's public entries; in Node they resolve to the same sources the build uses.
  resolve: {
    alias: [
      { find: /^verakit$/, replacement: join(root, "src", "index.ts") },
      // verakit/merge is the merge core (tsup.config.ts entries)
      { find: /^verakit\/merge$/, replacement: join(root, "src", "merge", "core", "index.ts") },
      { find: /^verakit\/(.*)$/, replacement: join(root, "src", "$1", "index.ts") },
    ],
  },
  test: {
    include: ["test/browser/**/*.browser.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    fileParallelism: false,
  },
});

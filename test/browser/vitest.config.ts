import { defineConfig } from "vitest/config";

/** Tests that drive the built page (web/dist) in headless Chromium; run by `npm run test:browser`. */
export default defineConfig({
  test: {
    include: ["test/browser/**/*.browser.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    fileParallelism: false,
  },
});

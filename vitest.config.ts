import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    // a private temp dir per run; the run fails if a test leaves anything in it
    globalSetup: ["test/setup/temp-dir-check.ts"],
  },
});

import { readFileSync } from "node:fs";
import { defineConfig } from "tsup";

const pkg = JSON.parse(readFileSync("package.json", "utf8")) as { version: string };

/**
 * Subpath entries. The browser entries ({@link browserEntries}: index, safetensors, format, projections, peft,
 * onnx, serve, gguf, compute, merge, hub) import no Node built-ins, so browser bundles of those stay clean; serve/node,
 * merge/node, node, hub/node and compute/node/merge-worker are for Node. test/layers.test.ts checks this list against the layer table, and
 * test/browser-safety.test.ts (test/hub-browser-safety.test.ts for hub) bundles each browser entry for a browser.
 */
export const entries = {
  index: "src/index.ts",
  "safetensors/index": "src/safetensors/index.ts",
  "format/index": "src/format/index.ts",
  "projections/index": "src/projections/index.ts",
  "peft/index": "src/peft/index.ts",
  "onnx/index": "src/onnx/index.ts",
  "serve/index": "src/serve/index.ts",
  "serve/node/index": "src/serve/node/index.ts",
  "gguf/index": "src/gguf/index.ts",
  "compute/index": "src/compute/index.ts",
  "merge/index": "src/merge/core/index.ts",
  "merge/node/index": "src/merge/index.ts",
  "node/index": "src/node/index.ts",
  "hub/index": "src/hub/index.ts",
  "hub/node/index": "src/hub/node/index.ts",
  /** The merge worker thread's script (createWorkerBackend locates it next to the running build). */
  "compute/node/merge-worker": "src/compute/node/merge-worker.ts",
};

/** The entries that run in a browser (the others need Node). */
export const browserEntries: ReadonlyArray<string> = [
  "index",
  "safetensors/index",
  "format/index",
  "projections/index",
  "peft/index",
  "onnx/index",
  "serve/index",
  "gguf/index",
  "compute/index",
  "merge/index",
  "hub/index",
];

/** The `vera` executable (ESM only). */
export const cliEntry = { "cli/index": "src/cli/index.ts" };

export default defineConfig([
  {
    entry: entries,
    format: ["esm", "cjs"],
    dts: true,
    sourcemap: true,
    clean: true,
    target: "node20",
    splitting: true,
    treeshake: true,
    external: ["onnxruntime-node", "webgpu"],
  },
  {
    entry: cliEntry,
    format: ["esm"],
    target: "node20",
    sourcemap: true,
    splitting: false,
    external: ["onnxruntime-node", "webgpu", "@huggingface/hub"],
    banner: { js: "#!/usr/bin/env node" },
    define: { __VERAKIT_VERSION__: JSON.stringify(pkg.version) },
  },
]);

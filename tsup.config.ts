import { readFileSync } from "node:fs";
import { defineConfig } from "tsup";

const pkg = JSON.parse(readFileSync("package.json", "utf8")) as { version: string };

/**
 * Subpath entries. The pure core (index, safetensors, format, projections, peft, onnx, gguf, compute)
 * imports no Node built-ins, so browser bundles of those stay clean; node/, merge/, hub/ and cli/
 * are the edges. A test (test/browser-safety.test.ts) checks the built core for Node imports.
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
  "merge/index": "src/merge/index.ts",
  "node/index": "src/node/index.ts",
  "hub/index": "src/hub/index.ts",
  "hub/node/index": "src/hub/node/index.ts",
};

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
    entry: { "cli/index": "src/cli/index.ts" },
    format: ["esm"],
    target: "node20",
    sourcemap: true,
    splitting: false,
    external: ["onnxruntime-node", "webgpu", "@huggingface/hub"],
    banner: { js: "#!/usr/bin/env node" },
    define: { __VERAKIT_VERSION__: JSON.stringify(pkg.version) },
  },
]);

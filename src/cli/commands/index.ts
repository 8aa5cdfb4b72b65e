import type { Command } from "../command.js";

/** Every command, loaded lazily so `vera inspect` does not load onnxruntime or the Hub client. One line per command. */
export const commands: Record<string, () => Promise<{ default: Command }>> = {
  inspect: () => import("./inspect.js"),
  validate: () => import("./validate.js"),
  projections: () => import("./projections.js"),
  create: () => import("./create.js"),
  push: () => import("./push.js"),
  pull: () => import("./pull.js"),
  whoami: () => import("./whoami.js"),
  "import-peft": () => import("./import-peft.js"),
  "export-peft": () => import("./export-peft.js"),
  "expand-lora": () => import("./expand-lora.js"),
  "export-onnx-adapter": () => import("./export-onnx-adapter.js"),
  "export-gguf-lora": () => import("./export-gguf-lora.js"),
  merge: () => import("./merge.js"),
  recover: () => import("./recover.js"),
  graft: () => import("./graft.js"),
  demo: () => import("./demo.js"),
  backends: () => import("./backends.js"),
};

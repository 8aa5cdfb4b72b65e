import type { Command } from "../command.js";

/** Every command, loaded lazily so `vera inspect` does not load onnxruntime or the Hub client. One line per command. */
export const commands: Record<string, () => Promise<{ default: Command }>> = {
  inspect: () => import("./inspect.js"),
  validate: () => import("./validate.js"),
  projections: () => import("./projections.js"),
  create: () => import("./create.js"),
};

import { loadAdapterFromPath } from "../node/load-adapter.js";
import { readBaseShapes } from "../node/read-base-shapes.js";

/** Options of commands that read an adapter given as a verakit file or a PEFT folder. */
export const adapterInputOptions = {
  base: { type: "string" },
  adapter: { type: "string" },
} as const;

/** Load the adapter at `path` (verakit file or PEFT folder), with `--base` and `--adapter` from the command line. */
export function loadAdapterFromArgs(
  path: string,
  values: Record<string, unknown>,
): ReturnType<typeof loadAdapterFromPath> {
  return loadAdapterFromPath({
    path,
    ...(values["base"] !== undefined ? { readBase: () => readBaseShapes({ path: String(values["base"]) }) } : {}),
    ...(values["adapter"] !== undefined ? { adapterName: String(values["adapter"]) } : {}),
  });
}

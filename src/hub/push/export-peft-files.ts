/**
 * Internal: a verakit adapter as PEFT files, for `withPeft` pushes. src/peft is loaded lazily so a plain
 * verakit push does not load the converter.
 */
import type { VeraAdapter } from "../../format/types.js";

/** The files of a PEFT adapter folder. */
export interface PeftFiles {
  config: Uint8Array;
  weights: Uint8Array;
  warnings: string[];
}

/** Convert an adapter to PEFT's adapter_config.json + adapter_model.safetensors (exportPeft's defaults). */
export async function exportPeftFiles(adapter: VeraAdapter): Promise<PeftFiles> {
  const { exportPeft } = await import("../../peft/export-peft.js");
  const r = exportPeft({ adapter });
  return { config: new TextEncoder().encode(r.configJson), weights: r.safetensors, warnings: r.report.warnings };
}

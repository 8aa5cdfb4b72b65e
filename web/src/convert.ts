import { writeVera, type VeraAdapter } from "verakit/format";
import { expandToLoraStream, exportPeft, type ExpandToLoraReport, type ExportPeftReport } from "verakit/peft";
import { zipSync, type Zippable } from "fflate";

/** A file the page offers for download. */
export interface OutputFile {
  name: string;
  /** The bytes, in pieces (a streamed expansion is never joined into one array). */
  parts: Uint8Array[];
}

/** Files of an output folder, zipped: entries stored in order, fixed timestamps (the same input gives the same zip). */
export function zipFolder(folder: string, files: Array<{ name: string; bytes: Uint8Array }>): OutputFile {
  const entries: Zippable = {};
  for (const f of files) entries[f.name] = [f.bytes, { level: 6, mtime: new Date(1980, 0, 1) }];
  return { name: `${folder}.zip`, parts: [zipSync(entries)] };
}

function join(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** A base name for outputs: the input's name without its extensions. */
export function stem(label: string): string {
  return (
    label
      .split("/")
      .pop()!
      .replace(/\.vera\.safetensors$|\.safetensors$/, "") || "adapter"
  );
}

/** `vera import-peft`: the verakit file of an adapter (canonical bytes). */
export function toVeraFile(adapter: VeraAdapter, label: string): OutputFile {
  return { name: `${stem(label)}.vera.safetensors`, parts: [writeVera({ adapter })] };
}

/** `vera export-peft [--save-projection | --no-save-projection]`: a PEFT folder, zipped. */
export function toPeftZip(
  adapter: VeraAdapter,
  label: string,
  saveProjection: boolean | undefined,
): { output: OutputFile; report: ExportPeftReport } {
  const res = exportPeft({ adapter, ...(saveProjection !== undefined ? { saveProjection } : {}) });
  const output = zipFolder(`${stem(label)}-peft`, [
    { name: "adapter_config.json", bytes: new TextEncoder().encode(res.configJson) },
    { name: "adapter_model.safetensors", bytes: res.safetensors },
  ]);
  return { output, report: res.report };
}

/** `vera expand-lora [--rank K]`: a PEFT LoRA folder, zipped; tensors are produced one at a time. */
export function toLoraZip(
  adapter: VeraAdapter,
  label: string,
  rank: number | undefined,
): { output: OutputFile; report: ExpandToLoraReport } {
  const stream = expandToLoraStream({ adapter, ...(rank !== undefined ? { rank } : {}) });
  const parts: Uint8Array[] = [stream.header];
  for (let i = 0; i < stream.tensors.length; i++) {
    const t = new Uint8Array(stream.tensors[i]!.byteLength);
    stream.fill(i, t);
    parts.push(t);
  }
  const output = zipFolder(`${stem(label)}-lora`, [
    { name: "adapter_config.json", bytes: new TextEncoder().encode(stream.configJson) },
    { name: "adapter_model.safetensors", bytes: join(parts) },
  ]);
  return { output, report: stream.report() };
}

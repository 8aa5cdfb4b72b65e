/** Access to the committed PEFT fixtures (fixtures/peft, made by fixtures/peft/generate.py with real PEFT). */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseSafetensors, type SafetensorsFile } from "../src/safetensors/parse.js";

export const PEFT_DIR = join(__dirname, "../fixtures/peft");

export interface AdapterFixture {
  name: string;
  base: string;
  r: number;
  seed: string;
  save_projection: boolean;
  dtype: string;
  files: string[];
  second?: { adapter: string; r: number };
}

export interface Manifest {
  versions: Record<string, string>;
  adapters: Record<string, AdapterFixture>;
  bases: Record<string, { kind: string; files: string[]; onnx?: string }>;
  configs: Record<string, string>;
}

export const manifest = JSON.parse(readFileSync(join(PEFT_DIR, "MANIFEST.json"), "utf8")) as Manifest;

/** Every adapter folder in the fixtures, named adapters (sub-folders) included. */
export function adapterFolders(): Array<{
  fixture: AdapterFixture;
  dir: string;
  adapterName: string;
  refPrefix: string;
}> {
  const out = [];
  for (const fx of Object.values(manifest.adapters)) {
    const dir = join(PEFT_DIR, "adapters", fx.name);
    out.push({ fixture: fx, dir, adapterName: "default", refPrefix: "" });
    if (fx.second)
      out.push({
        fixture: fx,
        dir: join(dir, fx.second.adapter),
        adapterName: fx.second.adapter,
        refPrefix: `${fx.second.adapter}/`,
      });
  }
  return out;
}

export function readBytes(path: string): Uint8Array {
  const b = readFileSync(path);
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

export function readAdapter(dir: string): { configText: string; weights: SafetensorsFile; bytes: Uint8Array } {
  const bytes = readBytes(join(dir, "adapter_model.safetensors"));
  return {
    configText: readFileSync(join(dir, "adapter_config.json"), "utf8"),
    weights: parseSafetensors(bytes),
    bytes,
  };
}

export function baseDir(fx: AdapterFixture): string {
  return join(PEFT_DIR, "bases", fx.base);
}

export function readJson(path: string): unknown {
  return JSON.parse(readFileSync(path, "utf8"));
}

import { ErrorCode, VeraError } from "verakit";
import { checkExternalLocation, tensorByteLength, type OnnxModel, type OnnxTensor } from "verakit/onnx";
import type { InputFile } from "../input-files.js";

/** An external data file of the model, and what the merge changes in it. */
export interface DataFile {
  /** The location as the model writes it. */
  location: string;
  /** Path relative to the model's folder. */
  rel: string;
  blob: Blob;
  /** Merged weights: offset and bytes (a Blob: the browser may keep it out of the JavaScript heap, on disk). */
  patches: Array<{ offset: number; bytes: Blob }>;
  /** Bytes appended (untied copies): offset and bytes, past the end. */
  appended: Array<{ offset: number; bytes: Blob }>;
  /** Byte ranges of every tensor stored in it. */
  ranges: Array<{ start: number; end: number; tensor: string }>;
}

/** Where a model's external data is: files by location (as written) and by path (distinct files). */
export interface DataFiles {
  byLocation: Map<string, DataFile>;
  byRel: Map<string, DataFile>;
}

/** Every tensor of the model (initializers of all graphs and Constant-node tensors). */
export function allTensors(model: OnnxModel): OnnxTensor[] {
  const out: OnnxTensor[] = [];
  for (const g of model.graphs) {
    out.push(...g.initializers);
    for (const n of g.nodes) for (const a of n.attributes) if (a.t) out.push(a.t);
  }
  return out;
}

/** The folder part of a `/`-separated path, with its trailing `/` (empty at the top). */
export function dirOf(path: string): string {
  const i = path.lastIndexOf("/");
  return i < 0 ? "" : path.slice(0, i + 1);
}

/**
 * Find every external data file the model names among the files given with it. Locations are hostile
 * input: `checkExternalLocation` refuses absolute paths and `..` (IO_UNSAFE_PATH); a file not given is
 * IO_NOT_FOUND.
 */
export function locateDataFiles(params: {
  model: OnnxModel;
  modelPath: string;
  files: readonly InputFile[];
}): DataFiles {
  const base = dirOf(params.modelPath);
  const byLocation = new Map<string, DataFile>();
  const byRel = new Map<string, DataFile>();
  for (const t of allTensors(params.model)) {
    const s = t.storage;
    if (s.kind !== "external") continue;
    let f = byLocation.get(s.location);
    if (!f) {
      const rel = checkExternalLocation({ location: s.location, tensor: t.name }).join("/");
      f = byRel.get(rel);
      if (!f) {
        const given = params.files.find((x) => x.path === base + rel);
        if (!given)
          throw new VeraError(
            ErrorCode.IO_NOT_FOUND,
            `initializer ${JSON.stringify(t.name)}: external data file ${JSON.stringify(s.location)} not found next to the model (${base + rel}): give it together with the model`,
            { path: t.name, expected: base + rel, received: "not given" },
          );
        f = { location: s.location, rel, blob: given.file, patches: [], appended: [], ranges: [] };
        byRel.set(rel, f);
      }
      byLocation.set(s.location, f);
    }
    f.ranges.push({ start: s.offset, end: s.offset + (s.length ?? tensorByteLength(t) ?? 0), tensor: t.name });
  }
  return { byLocation, byRel };
}

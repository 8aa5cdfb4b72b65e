/**
 * A merged model as a list of files, each a list of segments: byte ranges of the input files and new bytes (the
 * merged weights, the rewritten head file). Built from the data-file plan, so a caller (a page building Blobs from
 * slices, a test comparing bytes) never needs the whole model in memory.
 */
import type { ContainerWeight, MergedTarget } from "./container.js";
import type { DataFilePlan } from "./plan-data-files.js";

/** A part of an output file: `length` bytes of an input file from `offset`, or new bytes. */
export type MergedSegment =
  | { kind: "input"; path: string; offset: number; length: number }
  | { kind: "bytes"; bytes: Uint8Array };

/** One output file of a merge. */
export interface MergedModelFile {
  /** `/`-separated path relative to the output folder (the input's own relative path). */
  path: string;
  /** Size in bytes (the sum of the segments' lengths). */
  size: number;
  /** The file's bytes, back to back. */
  segments: MergedSegment[];
}

/** Bytes of a segment. */
export function segmentLength(s: MergedSegment): number {
  return s.kind === "input" ? s.length : s.bytes.byteLength;
}

/** Parameters of {@link mergedDataFiles}. */
export interface MergedDataFilesParams<W extends ContainerWeight> {
  plan: DataFilePlan<W>;
  /** Each data weight's merged values, by weight. */
  values: ReadonlyMap<W, Uint8Array>;
}

/**
 * Every data file of the plan as segments: the input's bytes around the merged weights (patched at their offsets),
 * then the appended copies (at their aligned offsets past the end, the gaps zero-filled), as the Node merge writes
 * its copies.
 */
export function mergedDataFiles<W extends ContainerWeight>(params: MergedDataFilesParams<W>): MergedModelFile[] {
  const { plan } = params;
  const patches = new Map<string, Array<{ offset: number; bytes: Uint8Array }>>();
  for (const [w, bytes] of params.values) {
    const t: MergedTarget | undefined = plan.targets.get(w);
    if (t?.kind !== "data") continue;
    const list = patches.get(t.file) ?? [];
    list.push({ offset: t.offset, bytes });
    patches.set(t.file, list);
  }
  return plan.files.map(({ file, outputSize }) => {
    const segments: MergedSegment[] = [];
    let pos = 0;
    for (const p of (patches.get(file.key) ?? []).sort((a, b) => a.offset - b.offset)) {
      const inputEnd = Math.min(p.offset, file.size);
      if (inputEnd > pos) segments.push({ kind: "input", path: file.path, offset: pos, length: inputEnd - pos });
      const zeros = p.offset - Math.max(pos, file.size);
      if (zeros > 0) segments.push({ kind: "bytes", bytes: new Uint8Array(zeros) });
      segments.push({ kind: "bytes", bytes: p.bytes });
      pos = p.offset + p.bytes.byteLength;
    }
    if (file.size > pos) segments.push({ kind: "input", path: file.path, offset: pos, length: file.size - pos });
    const size = segments.reduce((n, s) => n + segmentLength(s), 0);
    if (size !== outputSize)
      throw new Error(`internal: ${file.label} assembled to ${size} bytes, planned ${outputSize}`);
    return { path: file.parts.join("/"), size, segments };
  });
}

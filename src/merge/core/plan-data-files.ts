/**
 * The data-file plan: which byte ranges of which data files a merge changes, checked against
 * every other tensor of the file, and the order weights are merged in (inline first, then each
 * data file front to back, so writes follow the file copies). Pure: knows no container format.
 */
import { VeraError } from "../../errors.js";
import type { ContainerDataFile, ContainerWeight, MergedTarget } from "./container.js";
import { MergeErrorCode } from "../error-codes.js";

/** Parameters of {@link planDataFiles}. */
export interface PlanDataFilesParams<W extends ContainerWeight> {
  /** Every data file of the model. */
  files: readonly ContainerDataFile[];
  /** The weights to merge. */
  weights: readonly W[];
  /**
   * Alignment of ranges appended to a data file (weights with `append`).
   * @default 64
   */
  appendAlignment?: number;
}

/** A data file and the merged weights it receives. */
export interface DataFilePlanEntry<W extends ContainerWeight> {
  file: ContainerDataFile;
  /** Merged weights written into this file, by offset. */
  merged: W[];
  /** Size of the output copy (larger than the input's when weights are appended). */
  outputSize: number;
}

/** What {@link planDataFiles} decides. */
export interface DataFilePlan<W extends ContainerWeight> {
  /** One entry per data file, in the container's order. */
  files: DataFilePlanEntry<W>[];
  /** The order weights are merged in: inline weights, then by data file path and offset. */
  order: W[];
  /** Where each weight's merged bytes go. */
  targets: Map<W, MergedTarget>;
  /** Bytes added at the end of data files (appended weights and their alignment padding). */
  appendedBytes: number;
  /** Bytes of merged weights. */
  mergedBytes: number;
}

/**
 * Check every merged weight's range (inside its file, overlapping no other tensor) and plan where
 * its merged bytes go.
 *
 * @throws VeraError `MERGE_DATA_RANGE` (a range beyond the end of its file), `MERGE_DATA_OVERLAP`
 *   (a merged range that overlaps another tensor's).
 */
export function planDataFiles<W extends ContainerWeight>(params: PlanDataFilesParams<W>): DataFilePlan<W> {
  const align = params.appendAlignment ?? 64;
  const entries = new Map<string, DataFilePlanEntry<W>>();
  for (const file of params.files) entries.set(file.key, { file, merged: [], outputSize: file.size });
  const inline: W[] = [];
  const data: W[] = [];
  const targets = new Map<W, MergedTarget>();
  let mergedBytes = 0;
  for (const w of params.weights) {
    mergedBytes += w.byteLength;
    const s = w.storage;
    if (s.kind === "inline") {
      inline.push(w);
      targets.set(w, { kind: "inline" });
      continue;
    }
    const entry = entries.get(s.file);
    if (!entry) throw new Error(`internal: weight ${w.name} names an unknown data file ${s.file}`);
    checkRange(entry.file, w, s.offset);
    entry.merged.push(w);
    data.push(w);
  }
  const offsetOf = (w: W): number => (w.storage as { offset: number }).offset;
  const fileOf = (w: W): DataFilePlanEntry<W> => entries.get((w.storage as { file: string }).file)!;
  data.sort((a, b) => {
    const fa = fileOf(a).file.path;
    const fb = fileOf(b).file.path;
    return fa < fb ? -1 : fa > fb ? 1 : offsetOf(a) - offsetOf(b);
  });
  let appendedBytes = 0;
  for (const w of data) {
    const entry = fileOf(w);
    let offset = offsetOf(w);
    if (w.append) {
      offset = Math.ceil(entry.outputSize / align) * align;
      appendedBytes += offset + w.byteLength - entry.outputSize;
      entry.outputSize = offset + w.byteLength;
    }
    targets.set(w, { kind: "data", file: entry.file.key, offset });
  }
  for (const entry of entries.values()) entry.merged.sort((a, b) => offsetOf(a) - offsetOf(b));
  return { files: [...entries.values()], order: [...inline, ...data], targets, appendedBytes, mergedBytes };
}

/** A merged weight's range must lie inside its file and overlap no other tensor. */
function checkRange(file: ContainerDataFile, w: ContainerWeight, offset: number): void {
  const end = offset + w.byteLength;
  if (end > file.size)
    throw new VeraError(
      MergeErrorCode.MERGE_DATA_RANGE,
      `weight ${JSON.stringify(w.name)}: bytes [${offset}, ${end}) lie beyond the end of ${JSON.stringify(file.label)} (${file.size} bytes)`,
      { path: w.name, expected: `<= ${file.size}`, received: end },
    );
  for (const r of file.tensors)
    if (r.tensor !== w.name && r.start < end && offset < r.end && r.end > r.start)
      throw new VeraError(
        MergeErrorCode.MERGE_DATA_OVERLAP,
        `weight ${JSON.stringify(w.name)}: its data overlaps that of ${JSON.stringify(r.tensor)} in ${JSON.stringify(file.label)}; patching it would change both`,
        { path: w.name },
      );
}

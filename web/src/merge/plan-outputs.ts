import { VeraError } from "verakit";
import type { PlannedWeight } from "verakit/onnx";
import type { DataFile, DataFiles } from "./locate-data-files.js";

/** The codes `vera merge` uses for these failures (the values of `MergeErrorCode` in `verakit/merge`). */
export const MERGE_CODES = {
  MERGE_ABORTED: "MERGE_ABORTED",
  MERGE_DATA_OVERLAP: "MERGE_DATA_OVERLAP",
  MERGE_DATA_RANGE: "MERGE_DATA_RANGE",
} as const;

/** One merged module, as in `vera merge --json`. */
export interface BlobMergeModule {
  module: string;
  initializer: string;
  matched: string;
  matchedBy: string;
  dtype: string;
  layout: string;
  storage: string;
  inFeatures: number;
  outFeatures: number;
  untiedFrom?: string;
  maxAbsDelta?: number;
}

/**
 * Check each planned weight against its data file (inside it: MERGE_DATA_RANGE; sharing no bytes with
 * another tensor: MERGE_DATA_OVERLAP) and describe it for the report, as `vera merge` does.
 */
export function describePlannedWeights(params: {
  weights: readonly PlannedWeight[];
  data: DataFiles;
  /** Receives a warning per weight whose recorded checksum the merge invalidates. */
  warnings: string[];
}): { modules: BlobMergeModule[]; bytesMerged: number } {
  const { byLocation } = params.data;
  const warnings = params.warnings;
  const modules: BlobMergeModule[] = [];
  let bytesMerged = 0;
  for (const w of params.weights) {
    bytesMerged += w.byteLength;
    const s = w.tensor.storage;
    if (s.kind === "external") {
      const f = byLocation.get(s.location)!;
      const size = f.blob.size;
      if (s.offset + w.byteLength > size)
        throw new VeraError(
          MERGE_CODES.MERGE_DATA_RANGE,
          `weight ${JSON.stringify(w.initializer)}: bytes [${s.offset}, ${s.offset + w.byteLength}) lie beyond the end of ${JSON.stringify(s.location)} (${size} bytes)`,
          { path: w.initializer, expected: `<= ${size}`, received: s.offset + w.byteLength },
        );
      for (const r of f.ranges)
        if (r.tensor !== w.initializer && r.start < s.offset + w.byteLength && s.offset < r.end && r.end > r.start)
          throw new VeraError(
            MERGE_CODES.MERGE_DATA_OVERLAP,
            `weight ${JSON.stringify(w.initializer)}: its external data overlaps that of ${JSON.stringify(r.tensor)} in ${JSON.stringify(s.location)}; patching it would change both`,
            { path: w.initializer },
          );
      if (s.checksum !== undefined)
        warnings.push(
          `weight ${JSON.stringify(w.initializer)} records a checksum of its external data, which no longer matches the merged bytes`,
        );
    }
    for (const m of w.modules)
      modules.push({
        module: m.module,
        initializer: w.untie?.name ?? w.initializer,
        ...(w.untie ? { untiedFrom: w.initializer } : {}),
        matched: m.matched,
        matchedBy: m.matchedBy,
        dtype: w.dtype,
        layout: w.layout,
        storage: s.kind === "raw" ? "raw_data" : s.kind === "external" ? `external:${s.location}@${s.offset}` : s.kind,
        inFeatures: m.inFeatures,
        outFeatures: m.outFeatures,
      });
  }
  modules.sort((a, b) => (a.module < b.module ? -1 : a.module > b.module ? 1 : 0));

  return { modules, bytesMerged };
}

/**
 * The order weights are merged in (the CLI's: inline weights, then external ones by file and offset) and
 * where untied copies of external weights go: appended to their data file, 64-byte aligned.
 */
export function mergeOrder(params: { weights: readonly PlannedWeight[]; data: DataFiles }): {
  order: PlannedWeight[];
  appendAt: Map<PlannedWeight, number>;
} {
  const { byLocation } = params.data;
  const inline = params.weights.filter((w) => w.tensor.storage.kind !== "external");
  const external = params.weights
    .filter((w) => w.tensor.storage.kind === "external")
    .sort((a, b) => {
      const sa = a.tensor.storage as { location: string; offset: number };
      const sb = b.tensor.storage as { location: string; offset: number };
      const fa = byLocation.get(sa.location)!.rel;
      const fb = byLocation.get(sb.location)!.rel;
      return fa < fb ? -1 : fa > fb ? 1 : sa.offset - sb.offset;
    });
  const appendAt = new Map<PlannedWeight, number>();
  const grown = new Map<DataFile, number>();
  for (const w of external) {
    if (!w.untie) continue;
    const f = byLocation.get((w.tensor.storage as { location: string }).location)!;
    const at = Math.ceil((grown.get(f) ?? f.blob.size) / 64) * 64;
    appendAt.set(w, at);
    grown.set(f, at + w.byteLength);
  }
  return { order: [...inline, ...external], appendAt };
}

/** Internal: what both ends of a merge (into new files, in place) do alike with a weight's stored bytes and its result. */
import type { ContainerWeight, MergeContainer } from "./core/container.js";
import type { DataReader } from "./data-reader.js";

export { recordMaxAbsDelta } from "./core/merge-report.js";

/** A weight's stored bytes, as a fresh buffer: from the head file (inline) or its data file. */
export async function readStoredWeight<W extends ContainerWeight>(params: {
  container: MergeContainer<W>;
  reader: DataReader;
  /** Data file key -> path. */
  pathOf: ReadonlyMap<string, string>;
  weight: W;
}): Promise<Uint8Array> {
  const { weight: w } = params;
  const s = w.storage;
  return s.kind === "inline"
    ? params.container.readInline(w)
    : await params.reader.read(params.pathOf.get(s.file)!, s.offset, w.byteLength);
}

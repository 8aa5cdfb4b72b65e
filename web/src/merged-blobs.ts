import type { MergedModelFile } from "verakit/merge";
import type { InputFile } from "./input-files.js";

/** One output file of the page's merge: its path relative to the output folder and its contents. */
export interface MergedFile {
  path: string;
  blob: Blob;
}

const normalise = (path: string): string =>
  path
    .split("/")
    .filter((s) => s !== "" && s !== ".")
    .join("/");

/**
 * The merged files as Blobs: each segment of the library's output is a slice of the input Blob it names or the new
 * bytes, so no input file is ever copied into memory.
 */
export function mergedBlobs(files: readonly MergedModelFile[], inputs: readonly InputFile[]): MergedFile[] {
  const byPath = new Map(inputs.map((f) => [normalise(f.path), f.file]));
  return files.map((f) => ({
    path: f.path,
    blob: new Blob(
      f.segments.map((s) =>
        s.kind === "bytes"
          ? (s.bytes as BlobPart)
          : byPath.get(normalise(s.path))!.slice(s.offset, s.offset + s.length),
      ),
    ),
  }));
}

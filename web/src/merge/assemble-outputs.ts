import { applyEdits, type ByteEdit } from "verakit/onnx";
import type { DataFile } from "./locate-data-files.js";

/** One output file: its path relative to the output folder and its contents. */
export interface MergedFile {
  path: string;
  blob: Blob;
}

/**
 * The merged files as Blobs: the model with its byte edits applied, and each data file as slices of the
 * input around the merged weights (then the appended untied copies, 64-byte aligned, zero-filled gaps),
 * so no data file is ever copied into memory.
 */
export function assembleOutputs(params: {
  bytes: Uint8Array;
  edits: ByteEdit[];
  modelName: string;
  dataFiles: Iterable<DataFile>;
}): MergedFile[] {
  const edited = applyEdits({ bytes: params.bytes, edits: params.edits });
  const files: MergedFile[] = [{ path: params.modelName, blob: new Blob(edited.chunks as BlobPart[]) }];
  for (const f of params.dataFiles) {
    const parts: BlobPart[] = [];
    let pos = 0;
    for (const p of [...f.patches].sort((a, b) => a.offset - b.offset)) {
      parts.push(f.blob.slice(pos, p.offset), p.bytes);
      pos = p.offset + p.bytes.size;
    }
    parts.push(f.blob.slice(pos));
    let end = f.blob.size;
    for (const p of [...f.appended].sort((a, b) => a.offset - b.offset)) {
      if (p.offset > end) parts.push(new Uint8Array(p.offset - end));
      parts.push(p.bytes);
      end = p.offset + p.bytes.size;
    }
    files.push({ path: f.rel, blob: new Blob(parts) });
  }
  return files;
}

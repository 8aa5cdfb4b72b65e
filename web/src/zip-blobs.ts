import { Zip, ZipPassThrough } from "fflate";

/** Largest total a zip without ZIP64 records can hold (fflate writes none). */
export const ZIP_MAX_BYTES = 0xffffffff - 1024 * 1024;

/**
 * Zip files (stored, not compressed) by streaming each Blob through: the output is a Blob built from
 * the zip's pieces, so no file is held whole in the JavaScript heap. Fixed timestamps: the same files
 * give the same zip.
 */
export async function zipBlobs(files: Array<{ path: string; blob: Blob }>): Promise<Blob> {
  const out: BlobPart[] = [];
  let pending: Uint8Array[] = [];
  let failure: unknown;
  const flush = (): void => {
    if (pending.length) out.push(new Blob(pending as BlobPart[]));
    pending = [];
  };
  const zip = new Zip((err, chunk) => {
    if (err) failure = err;
    else pending.push(chunk);
  });
  for (const f of files) {
    const entry = new ZipPassThrough(f.path);
    entry.mtime = new Date(1980, 0, 1);
    zip.add(entry);
    const reader = f.blob.stream().getReader();
    for (;;) {
      const r = await reader.read();
      if (r.done) break;
      entry.push(r.value);
      if (pending.length > 64) flush();
    }
    entry.push(new Uint8Array(0), true);
    flush();
  }
  zip.end();
  flush();
  if (failure) throw failure;
  return new Blob(out, { type: "application/zip" });
}

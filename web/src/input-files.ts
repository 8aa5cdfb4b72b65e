/**
 * Files the user gave the page (a drop, a file picker or a folder picker), each with its path
 * relative to what was chosen. Paths are only used to find files by name; they are never opened.
 */

/** One chosen file: its relative path (`/`-separated) and the File/Blob itself. */
export interface InputFile {
  path: string;
  file: Blob;
}

/** The files of a folder picker (`webkitdirectory`) or a plain multi-file picker. */
export function filesFromList(list: FileList | readonly File[]): InputFile[] {
  const out: InputFile[] = [];
  for (const f of Array.from(list)) {
    const rel = (f as File & { webkitRelativePath?: string }).webkitRelativePath;
    out.push({ path: rel && rel.length > 0 ? rel : f.name, file: f });
  }
  return out;
}

interface EntryLike {
  isFile: boolean;
  isDirectory: boolean;
  name: string;
  file?(ok: (f: File) => void, fail: (e: unknown) => void): void;
  createReader?(): { readEntries(ok: (e: EntryLike[]) => void, fail: (e: unknown) => void): void };
}

async function walk(entry: EntryLike, prefix: string, out: InputFile[]): Promise<void> {
  const path = prefix ? `${prefix}/${entry.name}` : entry.name;
  if (entry.isFile && entry.file) {
    const file = await new Promise<File>((ok, fail) => entry.file!(ok, fail));
    out.push({ path, file });
    return;
  }
  if (!entry.isDirectory || !entry.createReader) return;
  const reader = entry.createReader();
  // readEntries returns the entries in batches; an empty batch ends the listing.
  for (;;) {
    const batch = await new Promise<EntryLike[]>((ok, fail) => reader.readEntries(ok, fail));
    if (batch.length === 0) break;
    for (const e of batch) await walk(e, path, out);
  }
}

/** The files of a drop: folders are walked (directory drop), plain files taken as they are. */
export async function filesFromDrop(dt: DataTransfer): Promise<InputFile[]> {
  const out: InputFile[] = [];
  const entries: EntryLike[] = [];
  const loose: File[] = [];
  for (const item of Array.from(dt.items)) {
    if (item.kind !== "file") continue;
    const entry = (item as DataTransferItem & { webkitGetAsEntry?(): EntryLike | null }).webkitGetAsEntry?.();
    if (entry) entries.push(entry);
    else {
      const f = item.getAsFile();
      if (f) loose.push(f);
    }
  }
  for (const e of entries) await walk(e, "", out);
  if (entries.length === 0 && loose.length === 0) loose.push(...Array.from(dt.files));
  out.push(...filesFromList(loose));
  return out;
}

/**
 * Drop the folder name that every path shares (a dropped or picked folder `adapter/` gives
 * `adapter/adapter_config.json`): paths become relative to the chosen folder. Returns that name.
 */
export function stripCommonFolder(files: InputFile[]): { root: string | undefined; files: InputFile[] } {
  const first = files[0]?.path.split("/")[0];
  if (!first || !files.every((f) => f.path.startsWith(`${first}/`))) return { root: undefined, files };
  return { root: first, files: files.map((f) => ({ path: f.path.slice(first.length + 1), file: f.file })) };
}

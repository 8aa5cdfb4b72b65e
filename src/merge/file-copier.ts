/**
 * How the merge copies data files: behind an interface, so the early-write logic of the data
 * writer can be exercised with a copier whose pace a test decides.
 */
import { constants, promises as fsp } from "node:fs";

/** Copies whole files. */
export interface FileCopier {
  /**
   * True when a running copy writes its destination front to back and never writes below the
   * destination's current size again: a merged range the copy has passed may then be written
   * before the copy ends (each such write is checked after the copy).
   */
  readonly sequential: boolean;
  /** Copy `source` to `dest` (created or truncated). */
  copy(source: string, dest: string): Promise<void>;
  /** How far a running copy has got: the bytes of `dest` written so far (0 when it does not exist yet). */
  progress(dest: string): Promise<number>;
}

/** Parameters of {@link kernelCopier}. */
export interface KernelCopierParams {
  /**
   * Whether the platform's copy is sequential (see {@link FileCopier.sequential}).
   * @default true on Linux (libuv truncates, then copy_file_range/sendfile from offset 0 up), false elsewhere
   */
  sequential?: boolean;
}

/**
 * The platform's file copy (`fs.copyFile`): a reflink clone where the file system has them (Btrfs, XFS, APFS,
 * ...: the copy shares the source's blocks until the merged ranges are written), else copy_file_range /
 * sendfile, CopyFileEx, ...
 */
export function kernelCopier(params: KernelCopierParams = {}): FileCopier {
  return {
    sequential: params.sequential ?? process.platform === "linux",
    copy: (source, dest) => fsp.copyFile(source, dest, constants.COPYFILE_FICLONE),
    progress: (dest) =>
      fsp.stat(dest).then(
        (s) => s.size,
        () => 0,
      ),
  };
}

import type { ComputeBackend } from "../compute/backend.js";
import type { VeraAdapter } from "../format/types.js";
import type { FileCopier } from "./file-copier.js";

/**
 * Parameters every merge takes, whatever the container ({@link MergeOnnxParams}, {@link MergeCheckpointParams},
 * {@link MergeGgufParams} add the model, the output and what is particular to their format).
 */
export interface MergeCommonParams {
  /** The adapter: a verakit file path, a PEFT adapter folder path, or an adapter object. */
  adapter: string | VeraAdapter;
  /** Only locate the weights and return the plan; write nothing. @default false */
  dryRun?: boolean;
  /** The merge kernel. @default the reference backend (pure TypeScript) */
  backend?: ComputeBackend;
  /** Cancels the merge: temporary files are removed, nothing is written. @default none */
  signal?: AbortSignal;
  /** fsync every output file before renaming it into place (safe against power loss, slower). @default true */
  durable?: boolean;
  /**
   * Most bytes of merged tensors held in memory while their data file is still being copied; beyond it, merged
   * tensors are appended to a scratch file beside the output and patched in once the copy is done (so computing
   * never waits for the copy).
   * @default 268435456 (256 MiB)
   */
  memoryBudget?: number;
  /** PEFT sub-adapter name, when `adapter` is a folder holding several. @default the folder's adapter */
  adapterName?: string;
  /** How data files are copied. @default the platform's file copy (`kernelCopier`) */
  copier?: FileCopier;
}

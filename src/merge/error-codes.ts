/**
 * Stable error codes of the merge pipeline (`mergeOnnx`, `vera merge`). The string values never
 * change once released. Weight location problems use the `ONNX_*` codes, path problems
 * `IO_UNSAFE_PATH`, overflow the compute backends' `MERGE_OVERFLOW`.
 */
export const MergeErrorCode = {
  /** An output file would replace one of the inputs (the model or one of its external data files) without `--in-place`. */
  MERGE_OUTPUT_CONFLICT: "MERGE_OUTPUT_CONFLICT",
  /** The merge was cancelled (SIGINT, AbortSignal); nothing was written. */
  MERGE_ABORTED: "MERGE_ABORTED",
  /** Two tensors' external data ranges overlap, so patching one would change the other. */
  MERGE_DATA_OVERLAP: "MERGE_DATA_OVERLAP",
  /** A tensor's external data range lies beyond the end of its file. */
  MERGE_DATA_RANGE: "MERGE_DATA_RANGE",
  /**
   * A merged tensor written while its data file was still being copied did not survive the copy (the
   * platform's file copy did not write sequentially). Nothing is committed; rerun with `--memory-budget`
   * large enough to hold the merged tensors, or report the platform.
   */
  MERGE_COPY_RACE: "MERGE_COPY_RACE",
  /**
   * A sharded checkpoint's `model.safetensors.index.json` disagrees with its shards: a missing
   * shard, a tensor the index places in a shard that does not hold it, a tensor a shard holds that
   * the index does not place there, or one tensor name in two shards.
   */
  MERGE_CHECKPOINT_INDEX: "MERGE_CHECKPOINT_INDEX",
  /** A path given to merge is not a model the merge knows (an `.onnx`, a `.safetensors`, a checkpoint folder). */
  MERGE_CONTAINER_UNKNOWN: "MERGE_CONTAINER_UNKNOWN",
  /** An adapter module has no `<module>.weight` in the checkpoint (or several tensors match it). */
  MERGE_WEIGHT_NOT_FOUND: "MERGE_WEIGHT_NOT_FOUND",
  /**
   * A tensor the adapter carries besides its VeRA vectors (a `modules_to_save` module's parameter, a
   * trainable bias, an unknown extra tensor) cannot be placed in the base model: no such tensor, a shape
   * that differs, a quantized tensor, a tied tensor whose change would reach another module. Refused
   * before anything is written; the message names every such tensor.
   */
  MERGE_CARRIED_TENSOR: "MERGE_CARRIED_TENSOR",
  /** A checkpoint weight's shape disagrees with the adapter module's (in, out) features. */
  MERGE_WEIGHT_SHAPE: "MERGE_WEIGHT_SHAPE",
  /** A checkpoint weight's dtype cannot be merged (only F32, F16 and BF16 can). */
  MERGE_WEIGHT_DTYPE: "MERGE_WEIGHT_DTYPE",
  /**
   * An in-place merge of the model was interrupted (crash, power loss, kill): its undo journal
   * (`.<model>.vera-undo`) is still beside it and its files may hold partly merged weights. Run
   * `vera recover MODEL` (`recoverMerge`) to put the original bytes back.
   */
  MERGE_INTERRUPTED: "MERGE_INTERRUPTED",
  /**
   * Another process is merging the model in place, recovering it, or (for an in-place merge) reading
   * it for a merge into new files: its lock file (`.<model>.vera-lock`, or `.<model>.vera-read-*`)
   * names a running process. Nothing was done; try again once it has finished.
   */
  MERGE_BUSY: "MERGE_BUSY",
  /** An undo journal is damaged (a digest, a range, a field, a record count); nothing was restored. */
  MERGE_JOURNAL_CORRUPT: "MERGE_JOURNAL_CORRUPT",
} as const;

/** One of {@link MergeErrorCode}'s values. */
export type MergeErrorCodeValue = (typeof MergeErrorCode)[keyof typeof MergeErrorCode];

/**
 * What a model container (an ONNX model with external data, a safetensors checkpoint, a GGUF
 * file) must provide to the merge pipeline. The stages that copy, compute, write and commit know
 * only this interface, never a container's format.
 */
import type { WeightDtype, WeightLayout } from "../../dtypes.js";
import type { CarriedPlacement } from "./carried-values.js";

/** One tensor's bytes inside a data file, [start, end). */
export interface ContainerTensorRange {
  /** Tensor name, for messages. */
  tensor: string;
  start: number;
  end: number;
}

/**
 * A file the output holds a copy of (external data, a checkpoint shard), with merged weights
 * patched into it at the same offsets. Every byte that is not a merged weight is copied as is.
 */
export interface ContainerDataFile {
  /** Stable identity of the file inside the container (weights name it). */
  key: string;
  /** Path components relative to the model's folder: the copy goes under the output folder at the same place. */
  parts: string[];
  /** The input file's real path (already checked to lie inside the model's folder). */
  path: string;
  /** Size in bytes. */
  size: number;
  /** How the container names the file, for messages (e.g. the ONNX external data `location`). */
  label: string;
  /** Every tensor stored in the file (merged or not): merged ranges must not overlap any other. */
  tensors: ContainerTensorRange[];
}

/** One adapter module merged into a weight (a fused weight holds several, by output rows). */
export interface ContainerWeightModule {
  /** The adapter's module path. */
  module: string;
  inFeatures: number;
  outFeatures: number;
  /** Block of output features [outStart, outEnd) of the weight this module owns. */
  outStart: number;
  outEnd: number;
}

/** Where a weight's stored bytes are. */
export type ContainerWeightStorage =
  /** In a data file, at a byte offset. */
  | { kind: "data"; file: string; offset: number }
  /** Inside the container's head file (read with {@link MergeContainer.readInline}). */
  | { kind: "inline" };

/** A weight to merge, as located by the container. */
export interface ContainerWeight {
  /** Tensor name in the container. */
  name: string;
  dtype: WeightDtype;
  layout: WeightLayout;
  /** Input features of the whole weight. */
  inFeatures: number;
  /** Output features of the whole weight. */
  outFeatures: number;
  /** Bytes of the stored values. */
  byteLength: number;
  storage: ContainerWeightStorage;
  /**
   * The merged values go to a NEW range appended to the weight's data file (64-byte aligned)
   * instead of over the original (a weight with several users that gets its own merged copy).
   * @default false
   */
  append?: boolean;
  /** Modules merged into this weight, by outStart (none for a carried tensor). */
  modules: ContainerWeightModule[];
  /**
   * Set for a tensor the adapter carries (a modules_to_save parameter, a trainable bias): its stored
   * bytes are replaced by `values` (the container's `prepare` puts them in), nothing is merged into it.
   */
  carried?: { values: Uint8Array; placement: CarriedPlacement };
}

/** Where a merged weight's bytes go in the output: a data file and offset, or the head file. */
export type MergedTarget = { kind: "data"; file: string; offset: number } | { kind: "inline" };

/** A located model, ready to merge. */
export interface MergeContainer<W extends ContainerWeight = ContainerWeight> {
  /** Container kind, for reports (`onnx`, `safetensors`, ...). */
  readonly kind: string;
  /** The weights to merge. */
  readonly weights: readonly W[];
  /** Bytes of the input's head file (0 when the container has none). */
  readonly headSize: number;
  /** Every data file of the model, with the tensors each one stores. */
  readonly dataFiles: readonly ContainerDataFile[];
  /** The stored bytes of an inline weight, as a fresh buffer the merge may modify. */
  readInline(weight: W): Uint8Array;
  /**
   * Called with a weight's stored bytes before the merge, to put them in the order the adapter's
   * rows have (GGUF's permuted q/k rows); `merged` then stores them back. @default none
   */
  prepare?(weight: W, values: Uint8Array): void;
  /**
   * Called once per weight, in merge order, with its merged values and where they went (data
   * weights are written by the pipeline; inline ones are the container's to place in its head).
   */
  merged(weight: W, values: Uint8Array, target: MergedTarget): void;
  /**
   * Whether the head file (the `.onnx`, ...) changes in a merge done in place; a merge to a new
   * folder always writes it.
   */
  headChanged(): boolean;
  /**
   * The head file's bytes once every weight is merged, as chunks written back to back; null for a
   * container that has no head file besides its data files.
   */
  head(): Uint8Array[] | null;
}

/** What the pure merge's container openers share: its parameters, the located model, the adapter it applies. */
import type { ComputeBackend } from "../../compute/backend.js";
import type { VeraAdapter } from "../../format/types.js";
import type { WeightMapping } from "../../locate/weight-mapping.js";
import { carriedTensorTargets, type CarriedTensorTarget } from "../../peft/carried-tensors.js";
import type { FileAccess } from "../../peft/load/file-access.js";
import { loadAdapter, type AdapterBase } from "../../peft/load/load-adapter.js";
import type { AdapterSource } from "../../peft/load/read-adapter-source.js";
import type { ContainerWeight, MergeContainer, MergedTarget } from "./container.js";
import type { MergeEvent, MergeReport, MergeReportCarried, MergeReportModule } from "./merge-report.js";
import type { MergeRun } from "./merge-run.js";

/** The adapter of a merge: an adapter object, or where one lies (loaded by `loadAdapter` against the model). */
export type MergeAdapterInput = VeraAdapter | { source: AdapterSource; adapterName?: string };

/** Parameters of {@link mergeModelFiles}. */
export interface MergeModelFilesParams {
  /** The files the model lies in. */
  files: FileAccess;
  /**
   * The model's path in `files`: an ONNX model (its external data files beside it, by the locations it names), a
   * GGUF file (one file, not a part of a split one), or a safetensors checkpoint (a `.safetensors` file, or a
   * transformers folder: its other files are copied as they are).
   */
  model: string;
  /** The adapter; a PEFT folder is imported against the model's own shapes, as `vera merge` does. */
  adapter: MergeAdapterInput;
  /** The merge kernel (the same backend as `vera merge --backend` gives the same bytes). */
  backend: ComputeBackend;
  /**
   * Explicit module -> tensor entries (`parseWeightMapping`: the format every container shares; for GGUF the
   * llama.cpp tensor names), as `vera merge --mapping`. @default none
   */
  mapping?: WeightMapping;
  /** Leave out adapter modules with no weight in this model (listed in the report). @default false */
  skipMissing?: boolean;
  /** Give a shared (tied) weight its own merged copy instead of refusing (ONNX). @default false */
  untie?: boolean;
  /** Cancels the merge (`MERGE_ABORTED`); nothing is returned. @default none */
  signal?: AbortSignal;
  /** Receives the progress events (`planned`, `progress` after each weight, `done`). @default none */
  onProgress?: (e: MergeEvent) => void;
}

/** A located model: its container and what the report says of it. */
export interface OpenedModel<W extends ContainerWeight> {
  container: MergeContainer<W>;
  adapter: VeraAdapter;
  adapterSource: MergeReport["adapterSource"];
  /** The head file's name in the output, and its path in the input. */
  head?: { name: string; path: string };
  reportModules: (targets: ReadonlyMap<W, MergedTarget>) => MergeReportModule[];
  skipped: string[];
  carried: MergeReportCarried[];
  warnings: string[];
}

/** Reads a model of one container through the params' files, loads the adapter against it and locates its weights. */
export type ContainerOpener<W extends ContainerWeight> = (
  params: MergeModelFilesParams,
  run: MergeRun,
) => Promise<OpenedModel<W>>;

/** The adapter a merge applies, where it came from, the tensors it carries, and the loader's warnings. */
export interface MergeAdapterLoaded {
  adapter: VeraAdapter;
  source: MergeReport["adapterSource"];
  carried: CarriedTensorTarget[];
  warnings: string[];
}

/** A located container, as the openers return it: its report rows, its remarks. */
type LocatedContainer<W extends ContainerWeight> = MergeContainer<W> & {
  reportCarried(): MergeReportCarried[];
  readonly skipped?: string[];
  readonly warnings?: readonly string[];
};

/** The opened model of a located container and its adapter. */
export function openedModel<W extends ContainerWeight>(params: {
  container: LocatedContainer<W>;
  loaded: MergeAdapterLoaded;
  reportModules: OpenedModel<W>["reportModules"];
  head?: { name: string; path: string };
}): OpenedModel<W> {
  const { container, loaded } = params;
  return {
    container,
    adapter: loaded.adapter,
    adapterSource: loaded.source,
    ...(params.head ? { head: params.head } : {}),
    reportModules: params.reportModules,
    skipped: container.skipped ?? [],
    carried: container.reportCarried(),
    warnings: [...loaded.warnings, ...(container.warnings ?? [])],
  };
}

/** The adapter object, or the one at a source loaded against the model's shapes (`loadAdapter`). */
export async function loadMergeAdapter(input: MergeAdapterInput, base: AdapterBase): Promise<MergeAdapterLoaded> {
  if (!("source" in input))
    return { adapter: input, source: "object", carried: carriedTensorTargets({ adapter: input }), warnings: [] };
  const loaded = await loadAdapter({
    source: input.source,
    base,
    ...(input.adapterName !== undefined ? { adapterName: input.adapterName } : {}),
  });
  return { adapter: loaded.adapter, source: loaded.format, carried: loaded.carried, warnings: loaded.warnings };
}

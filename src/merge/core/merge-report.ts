/** The report and progress events of a merge (any container). */

/** One module in the merge report. */
export interface MergeReportModule {
  /** Adapter module path. */
  module: string;
  /** Tensor receiving the delta (the ONNX initializer, the checkpoint tensor). */
  initializer: string;
  /** The model-side path that matched. */
  matched: string;
  /** `renamed`: a checkpoint tensor found under the name transformers loads it as. */
  matchedBy: "exact" | "suffix" | "mapping" | "renamed";
  /** How the weight's path was found in the model. */
  source: string;
  layout: "in_out" | "out_in";
  dtype: "F32" | "F16" | "BF16";
  /** Where the weight is stored: `raw_data`, `float_data`, `int32_data` or `external:<location>@<offset>` for ONNX. */
  storage: string;
  inFeatures: number;
  outFeatures: number;
  /** Output-feature block inside the weight. */
  outRange: [number, number];
  /** Set when the weight was shared and got its own merged copy: the original tensor's name (`initializer` is the copy). */
  untiedFrom?: string;
  /** max |delta| (float32), once merged. */
  maxAbsDelta?: number;
}

/** One base-model tensor a carried adapter tensor replaced (a modules_to_save parameter, a trainable bias). */
export interface MergeReportCarried {
  /** The adapter's tensor (its PEFT key). */
  tensor: string;
  kind: "modules_to_save" | "bias";
  /** The base parameter it replaces (transformers name). */
  param: string;
  /** The model's tensor that now holds it (for ONNX, a new initializer when the original had other users). */
  target: string;
  /** Set when the model's tensor had other users: the original's name (`target` is the copy). */
  untiedFrom?: string;
  /** Set when the model held no tensor for it (an exporter dropped a zero bias): `target` is a new one, added. */
  added?: true;
  /** How the model's tensor was found. */
  matchedBy: string;
  dtype: "F32" | "F16" | "BF16";
  /** Stored transposed against the adapter's layout. */
  transposed: boolean;
}

/** Busy time per phase, milliseconds (phases overlap: sums may exceed the total). */
export interface MergeTimings {
  readModel: number;
  plan: number;
  projections: number;
  read: number;
  compute: number;
  write: number;
  copy: number;
  /** Time the compute stage waited for the copy of a data file to pass a merged weight (the copy was the slower stage). */
  waitCopy: number;
  commit: number;
  total: number;
}

/** What a merge did. */
export interface MergeReport {
  model: string;
  /** The merged model's path (the input's with `inPlace`), null for a dry run. */
  output: string | null;
  inPlace: boolean;
  dryRun: boolean;
  /** Backend name (null for a dry run). */
  backend: string | null;
  adapterSource: "vera" | "peft" | "object";
  modules: MergeReportModule[];
  /** Base-model tensors replaced by tensors the adapter carries (modules_to_save, trainable biases). */
  carried: MergeReportCarried[];
  /** Adapter modules left out (not in this model; only with `skipMissing`). */
  skipped: string[];
  /** Weights patched. */
  weights: number;
  /** Bytes of merged weights. */
  bytesMerged: number;
  /** Bytes written (copies included). */
  bytesWritten: number;
  /** Bytes of merged tensors that waited in a scratch file for their data file's copy (memory budget exceeded). */
  spilledBytes: number;
  /** Bytes of merged tensors written into an output data file while its copy was still running (Linux). */
  earlyWrittenBytes: number;
  /** Files written, final paths. */
  files: string[];
  timings: MergeTimings;
  warnings: string[];
}

/** Progress events of a merge. */
export type MergeEvent =
  | { type: "planned"; report: MergeReport; tensors: number; bytesTotal: number }
  | { type: "progress"; tensorsDone: number; tensors: number; bytesDone: number; bytesTotal: number; current?: string }
  | { type: "committing" }
  | { type: "done"; report: MergeReport };

/** Zeroed timings. */
export function emptyTimings(): MergeTimings {
  return {
    readModel: 0,
    plan: 0,
    projections: 0,
    read: 0,
    compute: 0,
    write: 0,
    copy: 0,
    waitCopy: 0,
    commit: 0,
    total: 0,
  };
}

/** What {@link plannedReport} fills in: what planning found. */
export type PlannedReportParams = Pick<
  MergeReport,
  | "model"
  | "inPlace"
  | "dryRun"
  | "adapterSource"
  | "modules"
  | "carried"
  | "skipped"
  | "weights"
  | "bytesMerged"
  | "timings"
  | "warnings"
>;

/** The report of a planned merge (nothing written yet: the writing stage completes it). */
export function plannedReport(params: PlannedReportParams): MergeReport {
  return {
    model: params.model,
    output: null,
    inPlace: params.inPlace,
    dryRun: params.dryRun,
    backend: null,
    adapterSource: params.adapterSource,
    modules: params.modules,
    carried: params.carried,
    skipped: params.skipped,
    weights: params.weights,
    bytesMerged: params.bytesMerged,
    bytesWritten: 0,
    spilledBytes: 0,
    earlyWrittenBytes: 0,
    files: [],
    timings: params.timings,
    warnings: params.warnings,
  };
}

/** Record each module's max |delta| in the report's module table. */
export function recordMaxAbsDelta(report: MergeReport, maxAbsDelta: ReadonlyMap<string, number>): void {
  for (const row of report.modules) {
    const d = maxAbsDelta.get(row.module);
    if (d !== undefined) row.maxAbsDelta = d;
  }
}

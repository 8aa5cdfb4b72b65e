/**
 * The ONNX model as a merge container: weights located by the ONNX planner, external data files
 * resolved inside the model's folder (by the caller's resolver: on disk, or among given files), inline
 * weights and untied copies written back into the `.onnx` bytes by length-preserving edits. The only
 * merge stage that knows ONNX; it reads no file itself.
 */
import { ErrorCode, VeraError } from "../../errors.js";
import type { VeraModule } from "../../format/types.js";
import { applyEdits, type ByteEdit } from "../../onnx/apply-edits.js";
import { inlineValueEdits, readInlineValues } from "../../onnx/inline-values.js";
import { listLinearWeights, type LinearWeight } from "../../onnx/list-linear-weights.js";
import type { PlannedWeight } from "../../onnx/plan-onnx-merge.js";
import { onnxWeightLocator } from "../../onnx/onnx-weight-locator.js";
import { readOnnxModel } from "../../onnx/read-onnx-model.js";
import { tensorByteLength, type OnnxModel, type OnnxTensor } from "../../onnx/types.js";
import { untieEdits } from "../../onnx/untie-edits.js";
import { addBiasEdits } from "../../onnx/add-bias.js";
import type { WeightMapping } from "../../locate/weight-mapping.js";
import type { ContainerDataFile, ContainerWeight, MergeContainer, MergedTarget } from "./container.js";
import type { MergeReportCarried, MergeReportModule } from "./merge-report.js";
import { carriedReportRows } from "./carried-report.js";
import { placeOnnxCarried, type OnnxCarried } from "./onnx-carried.js";
import type { CarriedTensorTarget } from "../../peft/carried-tensors.js";
import { allTensors } from "../../onnx/all-tensors.js";

/** A parsed ONNX model file. */
export interface OnnxSource {
  /** Path of the `.onnx` file (absolute on disk). */
  path: string;
  /** Its folder (external data locations are relative to it). */
  dir: string;
  bytes: Uint8Array;
  model: OnnxModel;
  /** Its Linear weights (the shape source for a PEFT adapter). */
  linear: LinearWeight[];
}

/** Parse an ONNX model file's bytes and list its Linear weights. */
export function parseOnnxSource(params: { path: string; dir: string; bytes: Uint8Array }): OnnxSource {
  const model = readOnnxModel({ bytes: params.bytes });
  return { ...params, model, linear: listLinearWeights({ model }) };
}

/** An external data file, found from its location (hostile input) and checked to lie inside the model's folder. */
export interface ResolvedDataFile {
  /** The location as written in the model. */
  location: string;
  /** Path components of the location (relative to the model folder). */
  parts: string[];
  /** The file's path, as the caller reads it (on disk: its real path). */
  path: string;
  /** File size in bytes. */
  size: number;
}

/**
 * Find the data file an external-data location names, refusing one outside the model's folder (`IO_UNSAFE_PATH`)
 * or missing (`IO_NOT_FOUND`): `resolveExternalDataPath` on disk, {@link fileAccessDataResolver} among given files.
 */
export type ResolveDataFile = (params: { dir: string; location: string; tensor: string }) => Promise<ResolvedDataFile>;

/** A weight of an ONNX container: the planner's weight behind it. */
export interface OnnxContainerWeight extends ContainerWeight {
  planned: PlannedWeight;
}

/** An ONNX model ready to merge. */
export interface OnnxContainer extends MergeContainer<OnnxContainerWeight> {
  /** Adapter modules with no weight in this model (only with `skipMissing`). */
  readonly skipped: string[];
  /** Planner remarks (shared weights, checksums that will no longer match). */
  readonly warnings: string[];
  /**
   * The report's rows (by module path), given where each weight's merged bytes go (an untied
   * copy's storage is where it goes; without targets, as for a dry run, where its original is).
   */
  reportModules(targets?: ReadonlyMap<OnnxContainerWeight, MergedTarget>): MergeReportModule[];
  /** The report's rows of replaced tensors. */
  reportCarried(): MergeReportCarried[];
}

/** Parameters of {@link onnxContainer}. */
export interface OnnxContainerParams {
  source: OnnxSource;
  /** How external data locations are resolved. */
  resolveData: ResolveDataFile;
  /** The adapter's modules. */
  modules: VeraModule[];
  mapping?: WeightMapping;
  skipMissing: boolean;
  untie: boolean;
  /** Tensors the adapter carries that replace the model's (`carriedTensorTargets`). @default none */
  carried?: readonly CarriedTensorTarget[];
}

function storageLabel(t: OnnxTensor): string {
  const s = t.storage;
  if (s.kind === "raw") return "raw_data";
  if (s.kind === "external") return `external:${s.location}@${s.offset}`;
  return s.kind;
}

/**
 * Every external data file the model names, resolved inside its folder (each one is read or copied, so
 * each one is checked), with the tensors it stores; and the file of each location.
 */
async function externalDataFiles(
  source: OnnxSource,
  resolveData: ResolveDataFile,
): Promise<{ files: Map<string, ContainerDataFile>; byLocation: Map<string, ContainerDataFile> }> {
  const files = new Map<string, ContainerDataFile>();
  const byLocation = new Map<string, ContainerDataFile>();
  for (const t of allTensors(source.model)) {
    const s = t.storage;
    if (s.kind !== "external") continue;
    let f = byLocation.get(s.location);
    if (!f) {
      const r = await resolveData({ dir: source.dir, location: s.location, tensor: t.name });
      const key = r.parts.join("/");
      f = files.get(key);
      if (!f) {
        const alias = [...files.values()].find((x) => x.path === r.path);
        if (alias)
          throw new VeraError(
            ErrorCode.IO_UNSAFE_PATH,
            `external data locations ${JSON.stringify(alias.label)} and ${JSON.stringify(s.location)} name the same file through a symlink; refusing to merge (the copies would disagree)`,
            { path: t.name, received: r.path },
          );
        f = { key, parts: r.parts, path: r.path, size: r.size, label: r.location, tensors: [] };
        files.set(key, f);
      }
      byLocation.set(s.location, f);
    }
    const len = s.length ?? tensorByteLength(t) ?? 0;
    f.tensors.push({ tensor: t.name, start: s.offset, end: s.offset + len });
  }

  return { files, byLocation };
}

/**
 * Locate the adapter's weights in the model and resolve every external data file it names (each
 * one is read or copied, so each one is checked).
 *
 * @throws VeraError `ONNX_*` (locating weights), `IO_UNSAFE_PATH` (a location outside the model's
 *   folder, or two locations naming one file through a symlink), `IO_NOT_FOUND`.
 */
export async function onnxContainer(params: OnnxContainerParams): Promise<OnnxContainer> {
  const { source } = params;
  const { model, bytes } = source;
  const locator = onnxWeightLocator({
    model,
    weights: source.linear,
    untie: params.untie,
    ...(params.mapping ? { mapping: params.mapping } : {}),
  });
  const plan = locator.plan({ modules: params.modules, skipMissing: params.skipMissing });
  const warnings = [...plan.warnings];

  const { files, byLocation } = await externalDataFiles(source, params.resolveData);

  const { placed: carried, added } = placeOnnxCarried({
    locator,
    planned: plan.weights,
    carried: params.carried ?? [],
    label: source.path,
  });
  const toWeight = (p: PlannedWeight, c?: OnnxCarried): OnnxContainerWeight => {
    const s = p.tensor.storage;
    if (s.kind === "external" && s.checksum !== undefined)
      warnings.push(
        `weight ${JSON.stringify(p.initializer)} records a checksum of its external data, which no longer matches the merged bytes`,
      );
    return {
      name: p.initializer,
      dtype: p.dtype,
      layout: p.layout,
      inFeatures: p.inFeatures,
      outFeatures: p.outFeatures,
      byteLength: p.byteLength,
      storage:
        s.kind === "external"
          ? { kind: "data", file: byLocation.get(s.location)!.key, offset: s.offset }
          : { kind: "inline" },
      ...(p.untie && s.kind === "external" ? { append: true } : {}),
      modules: p.modules.map((m) => ({
        module: m.module,
        inFeatures: m.inFeatures,
        outFeatures: m.outFeatures,
        outStart: m.outStart,
        outEnd: m.outEnd,
      })),
      planned: p,
      ...(c ? { carried: { values: c.values, placement: c.placement } } : {}),
    };
  };
  const weights: OnnxContainerWeight[] = [
    ...plan.weights.map((p) => toWeight(p)),
    ...carried.map((c) => toWeight(c.planned, c)),
  ];

  const edits: ByteEdit[] = added.flatMap((a) =>
    addBiasEdits({ model, bias: a.bias, name: a.name, matmulOut: a.matmulOut, values: a.values }),
  );
  return {
    kind: "onnx",
    weights,
    headSize: bytes.length,
    dataFiles: [...files.values()],
    skipped: plan.skipped,
    warnings,
    readInline: (w) => readInlineValues(bytes, w.planned.tensor, w.dtype),
    prepare: (w, values) => {
      if (w.carried) values.set(w.carried.values);
    },
    merged(w, values, target) {
      const p = w.planned;
      const s = p.tensor.storage;
      if (target.kind === "inline")
        edits.push(
          ...(p.untie
            ? untieEdits({ model, weight: p, data: { values } })
            : inlineValueEdits(p.tensor, p.dtype, values)),
        );
      else if (p.untie && s.kind === "external")
        edits.push(
          ...untieEdits({
            model,
            weight: p,
            data: { location: s.location, offset: target.offset, length: p.byteLength },
          }),
        );
    },
    headChanged: () => added.length > 0 || weights.some((w) => w.storage.kind === "inline" || w.planned.untie),
    head: () => applyEdits({ bytes, edits }).chunks,
    reportCarried: () => carriedReportRows(weights, (w) => w.planned.untie?.name, added),
    reportModules(targets) {
      const rows: MergeReportModule[] = [];
      for (const w of weights) {
        const p = w.planned;
        const s = p.tensor.storage;
        const target = targets?.get(w);
        let storage = storageLabel(p.tensor);
        if (p.untie && targets)
          storage =
            s.kind === "external" && target?.kind === "data" ? `external:${s.location}@${target.offset}` : "raw_data";
        for (const m of p.modules)
          rows.push({
            module: m.module,
            initializer: p.untie?.name ?? p.initializer,
            ...(p.untie ? { untiedFrom: p.initializer } : {}),
            matched: m.matched,
            matchedBy: m.matchedBy,
            source: p.source,
            layout: p.layout,
            dtype: p.dtype,
            storage,
            inFeatures: m.inFeatures,
            outFeatures: m.outFeatures,
            outRange: [m.outStart, m.outEnd],
          });
      }
      return rows.sort((a, b) => (a.module < b.module ? -1 : a.module > b.module ? 1 : 0));
    },
  };
}

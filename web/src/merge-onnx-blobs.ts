/**
 * Merge a VeRA adapter into an ONNX model held as Blobs (browser Files), with the same result bytes as
 * `vera merge` on the same backend: only the merged weights' bytes change. The `.onnx` itself is read
 * whole (protobuf files are at most 2 GiB; weights usually sit in external data), external data files
 * are only read one weight at a time (Blob slices), and each output data file is a Blob composed of
 * slices of the input and the merged weights, so the model is never held in memory.
 */
import { ErrorCode, VeraError } from "verakit";
import type { ComputeBackend, MergeTask } from "verakit/compute";
import type { VeraAdapter } from "verakit/format";
import {
  applyEdits,
  checkExternalLocation,
  OnnxErrorCode,
  dtypeSize,
  inlineValueEdits,
  listLinearWeights,
  planOnnxMerge,
  readInlineValues,
  readOnnxModel,
  tensorByteLength,
  untieEdits,
  type ByteEdit,
  type LinearWeight,
  type OnnxModel,
  type OnnxTensor,
  type PlannedWeight,
} from "verakit/onnx";
import { projectionsFor, sliceA, sliceB } from "verakit/projections";
import type { InputFile } from "./input-files.js";

/** The codes `vera merge` uses for these failures (the values of `MergeErrorCode` in `verakit/merge`). */
export const MERGE_CODES = {
  MERGE_ABORTED: "MERGE_ABORTED",
  MERGE_DATA_OVERLAP: "MERGE_DATA_OVERLAP",
  MERGE_DATA_RANGE: "MERGE_DATA_RANGE",
} as const;

/** Parameters of {@link mergeOnnxBlobs}. */
export interface MergeOnnxBlobsParams {
  /** The `.onnx` file. */
  model: InputFile;
  /** Every file given with it (external data files are found by the locations inside the model, relative to its folder). */
  files: readonly InputFile[];
  /** The adapter, or a function that builds it from the model's Linear weights (a PEFT folder needs their shapes). */
  adapter: VeraAdapter | ((weights: readonly LinearWeight[]) => Promise<{ adapter: VeraAdapter; warnings: string[] }>);
  backend: ComputeBackend;
  /** Leave out adapter modules with no weight in this model. @default false */
  skipMissing?: boolean;
  /** Give a shared (tied) weight its own merged copy instead of refusing. @default false */
  untie?: boolean;
  /** Cancels the merge (MERGE_ABORTED); nothing is produced. */
  signal?: AbortSignal;
  /** Progress after each weight. */
  onProgress?: (p: {
    tensorsDone: number;
    tensors: number;
    bytesDone: number;
    bytesTotal: number;
    current: string;
  }) => void;
}

/** One output file: its path relative to the output folder and its contents. */
export interface MergedFile {
  path: string;
  blob: Blob;
}

/** One merged module, as in `vera merge --json`. */
export interface BlobMergeModule {
  module: string;
  initializer: string;
  matched: string;
  matchedBy: string;
  dtype: string;
  layout: string;
  storage: string;
  inFeatures: number;
  outFeatures: number;
  untiedFrom?: string;
  maxAbsDelta?: number;
}

/** What {@link mergeOnnxBlobs} produced. */
export interface MergeOnnxBlobsResult {
  /** The merged `.onnx` first, then every data file (all of them: copies of the unchanged ones too). */
  files: MergedFile[];
  report: {
    backend: string;
    modules: BlobMergeModule[];
    skipped: string[];
    weights: number;
    bytesMerged: number;
    warnings: string[];
    ms: { total: number; compute: number; read: number };
  };
}

function aborted(): VeraError {
  return new VeraError(MERGE_CODES.MERGE_ABORTED, "merge cancelled; no output was written and the input is unchanged");
}

function allTensors(model: OnnxModel): OnnxTensor[] {
  const out: OnnxTensor[] = [];
  for (const g of model.graphs) {
    out.push(...g.initializers);
    for (const n of g.nodes) for (const a of n.attributes) if (a.t) out.push(a.t);
  }
  return out;
}

function dirOf(path: string): string {
  const i = path.lastIndexOf("/");
  return i < 0 ? "" : path.slice(0, i + 1);
}

interface DataFile {
  location: string;
  /** Path relative to the model's folder. */
  rel: string;
  blob: Blob;
  /** Merged weights: offset and bytes (a Blob: the browser may keep it out of the JavaScript heap, on disk). */
  patches: Array<{ offset: number; bytes: Blob }>;
  /** Bytes appended (untied copies): offset and bytes, past the end. */
  appended: Array<{ offset: number; bytes: Blob }>;
}

/**
 * Merge an adapter into an ONNX model given as Blobs. Same plan, same kernel input and same byte
 * edits as `vera merge`, so with the same backend the output files are identical to the CLI's.
 *
 * @throws VeraError: `ONNX_*`, `IO_UNSAFE_PATH`, `IO_NOT_FOUND` (a data file not given), `MERGE_DATA_*`,
 *   `MERGE_OVERFLOW`, `MERGE_ABORTED`, and the adapter's own codes.
 */
export async function mergeOnnxBlobs(params: MergeOnnxBlobsParams): Promise<MergeOnnxBlobsResult> {
  const t0 = performance.now();
  const check = (): void => {
    if (params.signal?.aborted) throw aborted();
  };
  // A protobuf file is at most 2 GiB - 1 (larger models keep their weights in external data files).
  if (params.model.file.size > 2147483647)
    throw new VeraError(
      OnnxErrorCode.ONNX_TOO_LARGE,
      `${params.model.path} is ${params.model.file.size} bytes, beyond protobuf's 2 GiB limit: not an ONNX model file`,
      { path: params.model.path, expected: "<= 2147483647 bytes", received: params.model.file.size },
    );
  const bytes = new Uint8Array(await params.model.file.arrayBuffer());
  const model = readOnnxModel({ bytes });
  check();
  const linear = listLinearWeights({ model });
  const warnings: string[] = [];
  let adapter: VeraAdapter;
  if (typeof params.adapter === "function") {
    const loaded = await params.adapter(linear);
    adapter = loaded.adapter;
    warnings.push(...loaded.warnings);
  } else adapter = params.adapter;
  const plan = planOnnxMerge({
    model,
    modules: adapter.modules,
    weights: linear,
    skipMissing: params.skipMissing ?? false,
    untie: params.untie ?? false,
  });
  warnings.push(...plan.warnings);

  // External data files, found by their locations relative to the model's folder.
  const base = dirOf(params.model.path);
  const byLocation = new Map<string, DataFile>();
  const byRel = new Map<string, DataFile>();
  const ranges = new Map<DataFile, Array<{ start: number; end: number; tensor: string }>>();
  for (const t of allTensors(model)) {
    const s = t.storage;
    if (s.kind !== "external") continue;
    let f = byLocation.get(s.location);
    if (!f) {
      const rel = checkExternalLocation({ location: s.location, tensor: t.name }).join("/");
      f = byRel.get(rel);
      if (!f) {
        const given = params.files.find((x) => x.path === base + rel);
        if (!given)
          throw new VeraError(
            ErrorCode.IO_NOT_FOUND,
            `initializer ${JSON.stringify(t.name)}: external data file ${JSON.stringify(s.location)} not found next to the model (${base + rel}): give it together with the model`,
            { path: t.name, expected: base + rel, received: "not given" },
          );
        f = { location: s.location, rel, blob: given.file, patches: [], appended: [] };
        byRel.set(rel, f);
      }
      byLocation.set(s.location, f);
    }
    const len = s.length ?? tensorByteLength(t) ?? 0;
    const list = ranges.get(f) ?? [];
    list.push({ start: s.offset, end: s.offset + len, tensor: t.name });
    ranges.set(f, list);
  }

  const modules: BlobMergeModule[] = [];
  let bytesMerged = 0;
  for (const w of plan.weights) {
    bytesMerged += w.byteLength;
    const s = w.tensor.storage;
    if (s.kind === "external") {
      const f = byLocation.get(s.location)!;
      const size = f.blob.size;
      if (s.offset + w.byteLength > size)
        throw new VeraError(
          MERGE_CODES.MERGE_DATA_RANGE,
          `weight ${JSON.stringify(w.initializer)}: bytes [${s.offset}, ${s.offset + w.byteLength}) lie beyond the end of ${JSON.stringify(s.location)} (${size} bytes)`,
          { path: w.initializer, expected: `<= ${size}`, received: s.offset + w.byteLength },
        );
      for (const r of ranges.get(f)!)
        if (r.tensor !== w.initializer && r.start < s.offset + w.byteLength && s.offset < r.end && r.end > r.start)
          throw new VeraError(
            MERGE_CODES.MERGE_DATA_OVERLAP,
            `weight ${JSON.stringify(w.initializer)}: its external data overlaps that of ${JSON.stringify(r.tensor)} in ${JSON.stringify(s.location)}; patching it would change both`,
            { path: w.initializer },
          );
      if (s.checksum !== undefined)
        warnings.push(
          `weight ${JSON.stringify(w.initializer)} records a checksum of its external data, which no longer matches the merged bytes`,
        );
    }
    for (const m of w.modules)
      modules.push({
        module: m.module,
        initializer: w.untie?.name ?? w.initializer,
        ...(w.untie ? { untiedFrom: w.initializer } : {}),
        matched: m.matched,
        matchedBy: m.matchedBy,
        dtype: w.dtype,
        layout: w.layout,
        storage: s.kind === "raw" ? "raw_data" : s.kind === "external" ? `external:${s.location}@${s.offset}` : s.kind,
        inFeatures: m.inFeatures,
        outFeatures: m.outFeatures,
      });
  }
  modules.sort((a, b) => (a.module < b.module ? -1 : a.module > b.module ? 1 : 0));

  // The same order as the CLI: inline weights, then external ones by file and offset.
  const inline = plan.weights.filter((w) => w.tensor.storage.kind !== "external");
  const external = plan.weights
    .filter((w) => w.tensor.storage.kind === "external")
    .sort((a, b) => {
      const sa = a.tensor.storage as { location: string; offset: number };
      const sb = b.tensor.storage as { location: string; offset: number };
      const fa = byLocation.get(sa.location)!.rel;
      const fb = byLocation.get(sb.location)!.rel;
      return fa < fb ? -1 : fa > fb ? 1 : sa.offset - sb.offset;
    });
  const order = [...inline, ...external];
  const fileOf = (w: PlannedWeight): DataFile => byLocation.get((w.tensor.storage as { location: string }).location)!;
  // Untied copies of external weights are appended to their data file, 64-byte aligned (as the CLI does).
  const appendAt = new Map<PlannedWeight, number>();
  const grown = new Map<DataFile, number>();
  for (const w of external) {
    if (!w.untie) continue;
    const f = fileOf(w);
    const at = Math.ceil((grown.get(f) ?? f.blob.size) / 64) * 64;
    appendAt.set(w, at);
    grown.set(f, at + w.byteLength);
  }

  const proj = projectionsFor(adapter);
  const aSlices = new Map<number, Float32Array>();
  const bSlices = new Map<number, Float32Array>();
  const sliceFor = (inF: number, outF: number): { a: Float32Array; b: Float32Array } => {
    let a = aSlices.get(inF);
    if (!a) aSlices.set(inF, (a = sliceA(proj.A, { rank: adapter.rank, maxIn: adapter.maxIn, inFeatures: inF })));
    let b = bSlices.get(outF);
    if (!b) bSlices.set(outF, (b = sliceB(proj.B, { rank: adapter.rank, outFeatures: outF })));
    return { a, b };
  };
  const byName = new Map(adapter.modules.map((m) => [m.name, m]));
  const edits: ByteEdit[] = [];
  let readMs = 0;
  let computeMs = 0;
  let bytesDone = 0;
  for (let i = 0; i < order.length; i++) {
    check();
    const w = order[i]!;
    const tr = performance.now();
    const s = w.tensor.storage;
    const values =
      s.kind === "external"
        ? new Uint8Array(
            await fileOf(w)
              .blob.slice(s.offset, s.offset + w.byteLength)
              .arrayBuffer(),
          )
        : readInlineValues(bytes, w.tensor, w.dtype);
    readMs += performance.now() - tr;
    check();
    const tc = performance.now();
    const { tasks, finish } = buildTasks(w, values, byName, adapter.rank, sliceFor);
    const results = await params.backend.merge(tasks);
    finish();
    computeMs += performance.now() - tc;
    for (const r of results) {
      const row = modules.find((m) => m.module === r.name);
      if (row) row.maxAbsDelta = r.maxAbsDelta;
    }
    if (s.kind !== "external") {
      edits.push(
        ...(w.untie ? untieEdits({ model, weight: w, data: { values } }) : inlineValueEdits(w.tensor, w.dtype, values)),
      );
    } else {
      const f = fileOf(w);
      const at = appendAt.get(w);
      if (w.untie) {
        const offset = at!;
        edits.push(...untieEdits({ model, weight: w, data: { location: s.location, offset, length: w.byteLength } }));
        f.appended.push({ offset, bytes: new Blob([values as BlobPart]) });
        for (const row of modules)
          if (row.initializer === w.untie.name) row.storage = `external:${s.location}@${offset}`;
      } else f.patches.push({ offset: s.offset, bytes: new Blob([values as BlobPart]) });
    }
    bytesDone += w.byteLength;
    params.onProgress?.({
      tensorsDone: i + 1,
      tensors: order.length,
      bytesDone,
      bytesTotal: bytesMerged,
      current: w.modules.map((m) => m.module).join(", "),
    });
  }
  check();
  const edited = applyEdits({ bytes, edits });
  const files: MergedFile[] = [
    { path: params.model.path.slice(base.length), blob: new Blob(edited.chunks as BlobPart[]) },
  ];
  for (const f of byRel.values()) {
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
  return {
    files,
    report: {
      backend: params.backend.name,
      modules,
      skipped: plan.skipped,
      weights: plan.weights.length,
      bytesMerged,
      warnings,
      ms: { total: performance.now() - t0, compute: computeMs, read: readMs },
    },
  };
}

/**
 * Merge tasks for one weight (as the CLI builds them): whole weights and row blocks of (out, in)
 * weights are merged in place; a column block of an (in, out) weight (fused qkv) is gathered into a
 * buffer and scattered back by `finish`.
 */
function buildTasks(
  w: PlannedWeight,
  values: Uint8Array,
  byName: Map<string, VeraAdapter["modules"][number]>,
  rank: number,
  sliceFor: (inF: number, outF: number) => { a: Float32Array; b: Float32Array },
): { tasks: MergeTask[]; finish: () => void } {
  const size = dtypeSize(w.dtype);
  const tasks: MergeTask[] = [];
  const scatters: Array<() => void> = [];
  for (const m of w.modules) {
    const mod = byName.get(m.module)!;
    const { a, b } = sliceFor(m.inFeatures, m.outFeatures);
    let weight: Uint8Array;
    if (m.outStart === 0 && m.outEnd === w.outFeatures) weight = values;
    else if (w.layout === "out_in")
      weight = values.subarray(m.outStart * w.inFeatures * size, m.outEnd * w.inFeatures * size);
    else {
      const cols = m.outEnd - m.outStart;
      const tmp = new Uint8Array(w.inFeatures * cols * size);
      for (let j = 0; j < w.inFeatures; j++) {
        const src = (j * w.outFeatures + m.outStart) * size;
        tmp.set(values.subarray(src, src + cols * size), j * cols * size);
      }
      weight = tmp;
      scatters.push(() => {
        for (let j = 0; j < w.inFeatures; j++)
          values.set(tmp.subarray(j * cols * size, (j + 1) * cols * size), (j * w.outFeatures + m.outStart) * size);
      });
    }
    tasks.push({
      name: m.module,
      dtype: w.dtype,
      layout: w.layout,
      outFeatures: m.outFeatures,
      inFeatures: m.inFeatures,
      rank,
      weight,
      a,
      b,
      lambdaD: mod.lambdaD,
      lambdaB: mod.lambdaB,
    });
  }
  return { tasks, finish: () => scatters.forEach((s) => s()) };
}

import { promises as fsp } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import { basename, dirname, join, resolve, sep } from "node:path";
import type { ComputeBackend, MergeTask } from "../compute/backend.js";
import { createReferenceBackend } from "../compute/reference-backend.js";
import { ErrorCode, VeraError } from "../errors.js";
import type { VeraAdapter } from "../format/types.js";
import { resolveExternalDataPath, type ExternalDataFile } from "../node/external-data-path.js";
import { readFileBytes } from "../node/files.js";
import { readRange, writeRange } from "../node/ranged-io.js";
import { applyEdits, type ByteEdit } from "../onnx/apply-edits.js";
import { dtypeSize, inlineValueEdits, readInlineValues } from "../onnx/inline-values.js";
import { listLinearWeights } from "../onnx/list-linear-weights.js";
import { planOnnxMerge, type OnnxMergePlan, type PlannedWeight } from "../onnx/plan-onnx-merge.js";
import { readOnnxModel } from "../onnx/read-onnx-model.js";
import { untieEdits } from "../onnx/untie-edits.js";
import { tensorByteLength, type OnnxModel, type OnnxTensor } from "../onnx/types.js";
import { parseWeightMapping, type WeightMapping } from "../onnx/weight-mapping.js";
import { projectionsFor } from "../projections/for-adapter.js";
import { sliceA, sliceB } from "../projections/generate.js";
import { MergeErrorCode } from "./error-codes.js";
import { loadMergeAdapter } from "./load-merge-adapter.js";
import { OutputTransaction } from "./output-transaction.js";

/** Parameters of {@link mergeOnnx} and {@link mergeOnnxIter}. */
export interface MergeOnnxParams {
  /** Path of the base `.onnx` model (its external data files are found from the locations inside it). */
  model: string;
  /** The adapter: a verakit file path, a PEFT adapter folder path, or an adapter object. */
  adapter: string | VeraAdapter;
  /** Path of the merged `.onnx` to write (its data files go beside it, under the same relative names). Required unless `inPlace` or `dryRun`. */
  output?: string;
  /**
   * Replace the input model's files with the merged ones (each changed file is written to a temporary
   * copy beside it and renamed over the original at the end).
   * @default false
   */
  inPlace?: boolean;
  /**
   * Only locate the weights and return the plan; write nothing.
   * @default false
   */
  dryRun?: boolean;
  /**
   * Explicit module -> initializer entries (object or path of a JSON mapping file, see `parseWeightMapping`).
   * @default none: weights are located automatically
   */
  mapping?: string | WeightMapping;
  /**
   * The merge kernel.
   * @default the reference backend (pure TypeScript)
   */
  backend?: ComputeBackend;
  /** Cancels the merge: temporary files are removed, nothing is written. @default none */
  signal?: AbortSignal;
  /**
   * fsync every output file before renaming it into place (safe against power loss, slower).
   * @default true
   */
  durable?: boolean;
  /**
   * Most bytes of merged tensors held in memory while their data file is still being copied; beyond
   * it, merged tensors are appended to a scratch file beside the output and patched in once the copy
   * is done (so computing never waits for the copy).
   * @default 268435456 (256 MiB)
   */
  memoryBudget?: number;
  /** PEFT sub-adapter name, when `adapter` is a folder holding several. @default the folder's adapter */
  adapterName?: string;
  /**
   * Leave out adapter modules that have no weight in this model (listed in the report) instead of
   * refusing: for models exported as several files (encoder_model.onnx, decoder_model.onnx, ...).
   * @default false
   */
  skipMissing?: boolean;
  /**
   * Give a weight used by several nodes (tied embeddings) its own merged copy for the adapted node
   * instead of refusing: the model then gains one initializer per untied weight (its data appended
   * to the same external data file, or inline), and that node's input is renamed to it.
   * @default false
   */
  untie?: boolean;
}

/** One module in the merge report. */
export interface MergeReportModule {
  /** Adapter module path. */
  module: string;
  /** Initializer receiving the delta. */
  initializer: string;
  /** The model-side path that matched. */
  matched: string;
  matchedBy: "exact" | "suffix" | "mapping";
  /** How the weight's path was found in the model. */
  source: string;
  layout: "in_out" | "out_in";
  dtype: "F32" | "F16" | "BF16";
  /** `raw_data`, `float_data`, `int32_data` or `external:<location>@<offset>`. */
  storage: string;
  inFeatures: number;
  outFeatures: number;
  /** Output-feature block inside the weight. */
  outRange: [number, number];
  /** Set when the weight was shared and got its own merged copy: the original initializer's name (`initializer` is the copy). */
  untiedFrom?: string;
  /** max |delta| (float32), once merged. */
  maxAbsDelta?: number;
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
  /** Adapter modules left out (not in this model; only with `skipMissing`). */
  skipped: string[];
  /** Initializers patched. */
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

/** Progress events of {@link mergeOnnxIter}. */
export type MergeEvent =
  | { type: "planned"; report: MergeReport; tensors: number; bytesTotal: number }
  | { type: "progress"; tensorsDone: number; tensors: number; bytesDone: number; bytesTotal: number; current?: string }
  | { type: "committing" }
  | { type: "done"; report: MergeReport };

function now(): number {
  return performance.now();
}

function aborted(): VeraError {
  return new VeraError(
    MergeErrorCode.MERGE_ABORTED,
    "merge cancelled; no output was written and the input is unchanged",
  );
}

function storageLabel(t: OnnxTensor): string {
  const s = t.storage;
  if (s.kind === "raw") return "raw_data";
  if (s.kind === "external") return `external:${s.location}@${s.offset}`;
  return s.kind;
}

function inside(dir: string, p: string): boolean {
  return p === dir || p.startsWith(dir.endsWith(sep) ? dir : dir + sep);
}

async function realpathOrSelf(p: string): Promise<string> {
  try {
    return await fsp.realpath(p);
  } catch {
    return p;
  }
}

/** Every tensor of the model (initializers of all graphs and Constant-node tensors). */
function allTensors(model: OnnxModel): OnnxTensor[] {
  const out: OnnxTensor[] = [];
  for (const g of model.graphs) {
    out.push(...g.initializers);
    for (const n of g.nodes) for (const a of n.attributes) if (a.t) out.push(a.t);
  }
  return out;
}

interface DataFile extends ExternalDataFile {
  /** Where the output copy goes (final path). */
  dest: string;
  /** Merged weights stored in this file. */
  merged: PlannedWeight[];
  /** Whether the file is (re)written. */
  write: boolean;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** A small async queue turning callbacks into an async iterator. */
class EventQueue<T> {
  private items: T[] = [];
  private waiting: ((v: IteratorResult<T>) => void) | undefined;
  private done = false;
  push(v: T): void {
    if (this.done) return;
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = undefined;
      w({ value: v, done: false });
    } else this.items.push(v);
  }
  close(): void {
    this.done = true;
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = undefined;
      w({ value: undefined as never, done: true });
    }
  }
  next(): Promise<IteratorResult<T>> {
    const v = this.items.shift();
    if (v !== undefined) return Promise.resolve({ value: v, done: false });
    if (this.done) return Promise.resolve({ value: undefined as never, done: true });
    return new Promise((r) => (this.waiting = r));
  }
}

/**
 * Merge a VeRA adapter into an ONNX model, as an async generator of progress events whose return
 * value is the report. Only the merged weights' bytes change: raw_data/float_data and external
 * data are patched in place (same length); int32_data (fp16 bit patterns) is re-encoded with its
 * enclosing length prefixes. External data is streamed tensor by tensor; other data files are
 * copied by the kernel. Outputs are written as temporary files and renamed at the end; on any
 * error or cancellation they are removed and the input is untouched.
 *
 * @throws VeraError: `ONNX_*` (locating weights), `IO_UNSAFE_PATH` (external data outside the model
 *   folder), `MERGE_OUTPUT_CONFLICT`, `MERGE_DATA_*`, `MERGE_OVERFLOW`, `MERGE_ABORTED`, `IO_*`.
 */
export async function* mergeOnnxIter(params: MergeOnnxParams): AsyncGenerator<MergeEvent, MergeReport, void> {
  const inner = new AbortController();
  const onOuter = (): void => inner.abort();
  params.signal?.addEventListener("abort", onOuter);
  if (params.signal?.aborted) inner.abort();
  const queue = new EventQueue<MergeEvent>();
  let settled = false;
  let failure: unknown;
  let report: MergeReport | undefined;
  const job = runMerge(params, inner.signal, (e) => queue.push(e)).then(
    (r) => {
      settled = true;
      report = r;
      queue.close();
    },
    (e) => {
      settled = true;
      failure = e;
      queue.close();
    },
  );
  try {
    for (;;) {
      const r = await queue.next();
      if (r.done) break;
      yield r.value;
    }
    await job;
    if (failure !== undefined) throw failure;
    return report!;
  } finally {
    params.signal?.removeEventListener("abort", onOuter);
    if (!settled) {
      inner.abort();
      await job;
    }
  }
}

/** {@link mergeOnnxIter} as a promise; `onProgress` receives the events. */
export async function mergeOnnx(
  params: MergeOnnxParams & { onProgress?: (e: MergeEvent) => void },
): Promise<MergeReport> {
  const it = mergeOnnxIter(params);
  try {
    for (;;) {
      const r = await it.next();
      if (r.done) return r.value;
      params.onProgress?.(r.value);
    }
  } catch (e) {
    await it.return(undefined as never).catch(() => {}); // a throwing onProgress cancels the merge
    throw e;
  }
}

async function runMerge(
  params: MergeOnnxParams,
  signal: AbortSignal,
  emit: (e: MergeEvent) => void,
): Promise<MergeReport> {
  const t0 = now();
  const timings: MergeTimings = {
    readModel: 0,
    plan: 0,
    projections: 0,
    read: 0,
    compute: 0,
    write: 0,
    copy: 0,
    commit: 0,
    total: 0,
  };
  const check = (): void => {
    if (signal.aborted) throw aborted();
  };
  const modelPath = resolve(params.model);
  const modelDir = dirname(modelPath);
  const bytes = await readFileBytes(modelPath);
  const model = readOnnxModel({ bytes });
  timings.readModel = now() - t0;
  check();

  const t1 = now();
  const linear = listLinearWeights({ model });
  let adapter: VeraAdapter;
  let adapterSource: MergeReport["adapterSource"] = "object";
  const warnings: string[] = [];
  if (typeof params.adapter === "string") {
    const loaded = await loadMergeAdapter({
      path: params.adapter,
      weights: linear,
      modelLabel: basename(modelPath),
      ...(params.adapterName !== undefined ? { adapterName: params.adapterName } : {}),
    });
    adapter = loaded.adapter;
    adapterSource = loaded.source;
    warnings.push(...loaded.warnings);
  } else adapter = params.adapter;
  let mapping: WeightMapping | undefined;
  if (typeof params.mapping === "string") {
    const text = new TextDecoder().decode(await readFileBytes(params.mapping));
    mapping = parseWeightMapping({ source: text });
  } else mapping = params.mapping;
  const plan: OnnxMergePlan = planOnnxMerge({
    model,
    modules: adapter.modules,
    weights: linear,
    skipMissing: params.skipMissing ?? false,
    untie: params.untie ?? false,
    ...(mapping ? { mapping } : {}),
  });
  warnings.push(...plan.warnings);

  // External data: every file the model names is resolved and checked (it will be read or copied).
  const files = new Map<string, DataFile>();
  const ranges = new Map<string, Array<{ start: number; end: number; tensor: string }>>();
  const byLocation = new Map<string, DataFile>();
  for (const t of allTensors(model)) {
    const s = t.storage;
    if (s.kind !== "external") continue;
    let f = byLocation.get(s.location);
    if (!f) {
      const r = await resolveExternalDataPath({ modelDir, location: s.location, tensor: t.name });
      const key = r.parts.join("/");
      f = files.get(key);
      if (!f) {
        const alias = [...files.values()].find((x) => x.path === r.path);
        if (alias)
          throw new VeraError(
            ErrorCode.IO_UNSAFE_PATH,
            `external data locations ${JSON.stringify(alias.location)} and ${JSON.stringify(s.location)} name the same file through a symlink; refusing to merge (the copies would disagree)`,
            { path: t.name, received: r.path },
          );
        f = { ...r, dest: "", merged: [], write: false };
        files.set(key, f);
      }
      byLocation.set(s.location, f);
    }
    const len = s.length ?? tensorByteLength(t) ?? 0;
    const list = ranges.get(f.path) ?? [];
    list.push({ start: s.offset, end: s.offset + len, tensor: t.name });
    ranges.set(f.path, list);
  }
  const modules: MergeReportModule[] = [];
  let bytesMerged = 0;
  for (const w of plan.weights) {
    bytesMerged += w.byteLength;
    const s = w.tensor.storage;
    if (s.kind === "external") {
      const f = byLocation.get(s.location)!;
      if (s.offset + w.byteLength > f.size)
        throw new VeraError(
          MergeErrorCode.MERGE_DATA_RANGE,
          `weight ${JSON.stringify(w.initializer)}: bytes [${s.offset}, ${s.offset + w.byteLength}) lie beyond the end of ${JSON.stringify(s.location)} (${f.size} bytes)`,
          { path: w.initializer, expected: `<= ${f.size}`, received: s.offset + w.byteLength },
        );
      const mine = { start: s.offset, end: s.offset + w.byteLength };
      for (const r of ranges.get(f.path)!)
        if (r.tensor !== w.initializer && r.start < mine.end && mine.start < r.end && r.end > r.start)
          throw new VeraError(
            MergeErrorCode.MERGE_DATA_OVERLAP,
            `weight ${JSON.stringify(w.initializer)}: its external data overlaps that of ${JSON.stringify(r.tensor)} in ${JSON.stringify(s.location)}; patching it would change both`,
            { path: w.initializer },
          );
      f.merged.push(w);
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
        source: w.source,
        layout: w.layout,
        dtype: w.dtype,
        storage: storageLabel(w.tensor),
        inFeatures: m.inFeatures,
        outFeatures: m.outFeatures,
        outRange: [m.outStart, m.outEnd],
      });
  }
  modules.sort((a, b) => (a.module < b.module ? -1 : a.module > b.module ? 1 : 0));
  timings.plan = now() - t1;
  const inPlace = params.inPlace ?? false;
  const dryRun = params.dryRun ?? false;
  const uniqueFiles = [...files.values()];
  const report: MergeReport = {
    model: modelPath,
    output: null,
    inPlace,
    dryRun,
    backend: null,
    adapterSource,
    modules,
    skipped: plan.skipped,
    weights: plan.weights.length,
    bytesMerged,
    bytesWritten: 0,
    spilledBytes: 0,
    earlyWrittenBytes: 0,
    files: [],
    timings,
    warnings,
  };
  if (dryRun) {
    timings.total = now() - t0;
    emit({ type: "planned", report, tensors: plan.weights.length, bytesTotal: bytesMerged });
    return report;
  }

  // Outputs.
  if (!inPlace && !params.output)
    throw new VeraError(ErrorCode.ARG_INVALID, "no output given: pass an output path, or ask for an in-place merge", {
      expected: "output path",
    });
  const outPath = inPlace ? modelPath : resolve(params.output!);
  const outDir = dirname(outPath);
  if (!inPlace) {
    await fsp.mkdir(outDir, { recursive: true });
    const realOut = join(await realpathOrSelf(outDir), basename(outPath));
    if (realOut === (await realpathOrSelf(modelPath)))
      throw new VeraError(
        MergeErrorCode.MERGE_OUTPUT_CONFLICT,
        `the output ${outPath} is the input model; use an in-place merge to replace it`,
        { path: outPath },
      );
  }
  const realOutDir = await realpathOrSelf(outDir);
  for (const f of uniqueFiles) {
    if (inPlace) {
      f.dest = f.path;
      f.write = f.merged.length > 0;
      continue;
    }
    f.dest = join(outDir, ...f.parts);
    f.write = true;
    await fsp.mkdir(dirname(f.dest), { recursive: true });
    const realParent = await realpathOrSelf(dirname(f.dest));
    if (!inside(realOutDir, realParent))
      throw new VeraError(
        ErrorCode.IO_UNSAFE_PATH,
        `output data file ${f.dest} would resolve outside the output folder (a symlink to ${realParent})`,
        { path: f.dest },
      );
    const realDest = join(realParent, basename(f.dest));
    if (realDest === f.path)
      throw new VeraError(
        MergeErrorCode.MERGE_OUTPUT_CONFLICT,
        `the merged model's external data ${JSON.stringify(f.location)} would replace the input's (${f.path}): write the output to another folder, or merge in place`,
        { path: f.dest, expected: "an output folder other than the model's", received: outDir },
      );
  }
  const edits: ByteEdit[] = [];
  const inline = plan.weights.filter((w) => w.tensor.storage.kind !== "external");
  const external = plan.weights
    .filter((w) => w.tensor.storage.kind === "external")
    .sort((a, b) => {
      const sa = a.tensor.storage as { location: string; offset: number };
      const sb = b.tensor.storage as { location: string; offset: number };
      const fa = byLocation.get(sa.location)!.path;
      const fb = byLocation.get(sb.location)!.path;
      return fa < fb ? -1 : fa > fb ? 1 : sa.offset - sb.offset;
    });
  const order = [...inline, ...external];
  const copyFiles = uniqueFiles.filter((f) => f.write);
  const copyTotal = copyFiles.reduce((s, f) => s + f.size, 0);
  const fileOf = (w: PlannedWeight): DataFile => byLocation.get((w.tensor.storage as { location: string }).location)!;
  const writeOnnx = !inPlace || inline.length > 0 || plan.weights.some((w) => w.untie);
  // Untied copies of external weights are appended to their data file (64-byte aligned).
  const appendAt = new Map<PlannedWeight, number>();
  const grown = new Map<DataFile, number>();
  for (const w of external) {
    if (!w.untie) continue;
    const f = fileOf(w);
    const at = Math.ceil((grown.get(f) ?? f.size) / 64) * 64;
    appendAt.set(w, at);
    grown.set(f, at + w.byteLength);
  }
  const appended = [...grown.entries()].reduce((n, [f, end]) => n + end - f.size, 0);
  for (const w of plan.weights) {
    if (!w.untie) continue;
    const s = w.tensor.storage;
    const label = s.kind === "external" ? `external:${s.location}@${appendAt.get(w)}` : "raw_data";
    for (const row of modules) if (row.initializer === w.untie.name) row.storage = label;
  }
  const bytesTotal = bytesMerged + copyTotal + (writeOnnx ? bytes.length : 0);

  const backend = params.backend ?? createReferenceBackend();
  report.backend = backend.name;
  report.output = outPath;

  // Projections and their slices (one array per distinct in/out size, shared by all tasks).
  const tp = now();
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
  timings.projections = now() - tp;
  emit({ type: "planned", report, tensors: order.length, bytesTotal });

  const tx = new OutputTransaction();
  const durable = params.durable ?? true;
  const budget = params.memoryBudget ?? 256 * 1024 * 1024;
  const handles = new Map<string, Promise<FileHandle>>();
  const sources = new Map<string, Promise<FileHandle>>();
  let copyDone = 0;
  let mergedDone = 0;
  let tensorsDone = 0;
  let current: string | undefined;
  let copying: { temp: string; file: DataFile } | undefined;
  const progress = async (): Promise<void> => {
    let partial = 0;
    if (copying)
      partial = await fsp.stat(copying.temp).then(
        (s) => s.size,
        () => 0,
      );
    emit({
      type: "progress",
      tensorsDone,
      tensors: order.length,
      bytesDone: copyDone + partial + mergedDone,
      bytesTotal,
      ...(current ? { current } : {}),
    });
  };
  const ticker = setInterval(() => void progress().catch(() => {}), 250);
  (ticker as { unref?: () => void }).unref?.();
  // Copies run one file at a time, in the background (kernel copy), while tensors are computed.
  const copied = new Map<DataFile, Promise<void>>();
  const copiedDone = new Set<DataFile>();
  let chain: Promise<void> = Promise.resolve();
  for (const f of copyFiles) {
    const temp = tx.tempFor(f.dest);
    const p = chain.then(async () => {
      if (tx.isClosed || signal.aborted) throw aborted();
      const tc = now();
      copying = { temp, file: f };
      await fsp.copyFile(f.path, temp);
      copying = undefined;
      timings.copy += now() - tc;
      copyDone += f.size;
      copiedDone.add(f);
      if (tx.isClosed) {
        await OutputTransaction.discard(temp);
        throw aborted();
      }
    });
    p.catch(() => {});
    copied.set(f, p);
    chain = p;
  }

  // On Linux the kernel copy (libuv: truncate, then copy_file_range/sendfile from offset 0 up) never
  // writes below the destination's current size again, so a merged tensor can be written as soon as
  // the copy has passed its range instead of after the whole file. Elsewhere, writes wait for the copy.
  // Each early write is checked after the copy (its first and last bytes are read back).
  const sequentialCopy = process.platform === "linux";
  const early: Array<{ f: DataFile; offset: number; length: number; head: Uint8Array; tail: Uint8Array }> = [];
  const copyPassed = async (f: DataFile, end: number): Promise<boolean> => {
    if (copiedDone.has(f)) return true;
    if (!sequentialCopy || copying?.file !== f) return false;
    return (
      (await fsp.stat(copying.temp).then(
        (st) => st.size,
        () => 0,
      )) >= end
    );
  };
  const waitCopyPast = async (f: DataFile, end: number): Promise<boolean> => {
    const whole = copied.get(f)!;
    let settled = false;
    whole.then(
      () => void (settled = true),
      () => void (settled = true),
    );
    for (;;) {
      if (settled) {
        await whole;
        return false;
      }
      if (sequentialCopy && (await copyPassed(f, end))) return !copiedDone.has(f);
      await Promise.race([whole.catch(() => {}), new Promise((r) => setTimeout(r, sequentialCopy ? 20 : 1000))]);
    }
  };
  const writeMerged = async (
    f: DataFile,
    offset: number,
    values: Uint8Array,
    beforeCopyEnd: boolean,
  ): Promise<void> => {
    const tw = now();
    await writeRange(await handleFor(f), offset, values);
    if (beforeCopyEnd) {
      const k = Math.min(64, values.byteLength);
      early.push({
        f,
        offset,
        length: values.byteLength,
        head: values.slice(0, k),
        tail: values.slice(values.byteLength - k),
      });
    }
    timings.write += now() - tw;
  };
  const pending: Array<Promise<void>> = [];
  let held = 0;
  // Merged tensors that arrive while their file is still being copied and do not fit the
  // budget go to a scratch file; they are patched in after the copies (see below).
  const spilled: Array<{ f: DataFile; offset: number; at: number; length: number }> = [];
  let spill: { path: string; fh: Promise<FileHandle>; size: number } | undefined;
  const handleFor = (f: DataFile): Promise<FileHandle> => {
    let fh = handles.get(f.dest);
    if (!fh) {
      fh = fsp.open(tx.tempFor(f.dest), "r+");
      handles.set(f.dest, fh);
    }
    return fh;
  };

  try {
    const read = async (w: PlannedWeight): Promise<Uint8Array> => {
      const tr = now();
      let v: Uint8Array;
      if (w.tensor.storage.kind !== "external") v = readInlineValues(bytes, w.tensor, w.dtype);
      else {
        const f = fileOf(w);
        let fh = sources.get(f.path);
        if (!fh) {
          fh = fsp.open(f.path, "r");
          sources.set(f.path, fh);
        }
        v = await readRange(await fh, w.tensor.storage.offset, w.byteLength);
      }
      timings.read += now() - tr;
      return v;
    };

    let next = order.length > 0 ? read(order[0]!) : undefined;
    next?.catch(() => {});
    for (let i = 0; i < order.length; i++) {
      const w = order[i]!;
      current = w.modules.map((m) => m.module).join(", ");
      const values = await next!;
      check();
      if (i + 1 < order.length) {
        next = read(order[i + 1]!);
        next.catch(() => {});
      }
      const tc = now();
      const { tasks, finish } = buildTasks(w, values, byName, adapter.rank, sliceFor);
      const results = await backend.merge(tasks);
      finish();
      timings.compute += now() - tc;
      for (const r of results) {
        const row = modules.find((m) => m.module === r.name);
        if (row) row.maxAbsDelta = r.maxAbsDelta;
      }
      check();
      if (w.tensor.storage.kind !== "external") {
        edits.push(
          ...(w.untie
            ? untieEdits({ model, weight: w, data: { values } })
            : inlineValueEdits(w.tensor, w.dtype, values)),
        );
      } else {
        const f = fileOf(w);
        const offset = appendAt.get(w) ?? w.tensor.storage.offset;
        if (w.untie)
          edits.push(
            ...untieEdits({
              model,
              weight: w,
              data: { location: w.tensor.storage.location, offset, length: w.byteLength },
            }),
          );
        const end = offset + w.byteLength;
        if (copiedDone.has(f) || (await copyPassed(f, end))) {
          await writeMerged(f, offset, values, !copiedDone.has(f));
        } else if (held + w.byteLength <= budget) {
          held += w.byteLength;
          const done = waitCopyPast(f, end).then(async (beforeCopyEnd) => {
            await writeMerged(f, offset, values, beforeCopyEnd);
            held -= w.byteLength;
          });
          done.catch(() => {});
          pending.push(done);
        } else {
          const tw = now();
          spill ??= (() => {
            const path = tx.scratchFor(join(dirname(f.dest), ".vera-merge-spill"));
            return { path, fh: fsp.open(path, "w+"), size: 0 };
          })();
          const at = spill.size;
          spill.size += w.byteLength;
          await writeRange(await spill.fh, at, values);
          spilled.push({ f, offset, at, length: w.byteLength });
          timings.write += now() - tw;
        }
      }
      mergedDone += w.byteLength;
      tensorsDone++;
      await progress();
    }
    current = undefined;
    for (const p of pending) await p;
    await chain;
    check();
    for (const e of early) {
      const fh = await handleFor(e.f);
      const head = await readRange(fh, e.offset, e.head.byteLength);
      const tail = await readRange(fh, e.offset + e.length - e.tail.byteLength, e.tail.byteLength);
      if (!equalBytes(head, e.head) || !equalBytes(tail, e.tail))
        throw new VeraError(
          MergeErrorCode.MERGE_COPY_RACE,
          `a merged tensor at offset ${e.offset} of ${e.f.dest} was overwritten by the file copy; nothing was written`,
          {
            path: e.f.dest,
          },
        );
    }
    if (spill) {
      // Patch the spilled tensors into the copies, in bounded chunks.
      const tw = now();
      const sfh = await spill.fh;
      const buf = new Uint8Array(Math.min(16 * 1024 * 1024, Math.max(...spilled.map((x) => x.length))));
      for (const x of spilled) {
        const fh = await handleFor(x.f);
        for (let done = 0; done < x.length; ) {
          const n = Math.min(buf.length, x.length - done);
          const chunk = await readRange(sfh, x.at + done, n, buf.subarray(0, n));
          await writeRange(fh, x.offset + done, chunk);
          done += n;
        }
        check();
      }
      await sfh.close();
      timings.write += now() - tw;
    }
    for (const p of handles.values()) {
      const fh = await p;
      if (durable) await fh.sync();
      await fh.close();
    }
    handles.clear();
    if (durable) {
      // Copied files without merged tensors were never opened for writing: sync them too.
      for (const f of copyFiles) {
        if (f.merged.length > 0) continue;
        const fh = await fsp.open(tx.tempFor(f.dest), "r+");
        await fh.sync();
        await fh.close();
      }
    }
    if (writeOnnx) {
      const tw = now();
      const edited = applyEdits({ bytes, edits });
      const temp = tx.tempFor(outPath);
      const fh = await fsp.open(temp, "w");
      try {
        let pos = 0;
        for (const c of edited.chunks) {
          await writeRange(fh, pos, c);
          pos += c.length;
        }
        if (durable) await fh.sync();
      } finally {
        await fh.close();
      }
      timings.write += now() - tw;
    }
    check();
    emit({ type: "committing" });
    const tcm = now();
    await tx.commit([outPath]);
    timings.commit = now() - tcm;
  } catch (e) {
    await tx.rollback();
    // the exit hook keeps covering the temporary paths until background copies have settled
    void chain.then(
      () => tx.release(),
      () => tx.release(),
    );
    throw e;
  } finally {
    clearInterval(ticker);
    for (const p of [...handles.values(), ...sources.values(), ...(spill ? [spill.fh] : [])])
      await p.then((fh) => fh.close()).catch(() => {});
    // A kernel copy still running after a failure is not waited for: its temporary file is already
    // unlinked (rollback), and copies not yet started see the closed transaction and do nothing.
  }
  report.files = [...(writeOnnx ? [outPath] : []), ...copyFiles.map((f) => f.dest)];
  report.bytesWritten = copyTotal + appended + (writeOnnx ? bytes.length : 0);
  report.spilledBytes = spilled.reduce((n, x) => n + x.length, 0);
  report.earlyWrittenBytes = early.reduce((n, x) => n + x.length, 0);
  timings.total = now() - t0;
  emit({ type: "done", report });
  return report;
}

/**
 * Merge tasks for one weight. Whole weights and row blocks of (out, in) weights are merged in
 * place; a column block of an (in, out) weight (fused qkv) is gathered into a buffer and
 * scattered back by `finish`.
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
    const whole = m.outStart === 0 && m.outEnd === w.outFeatures;
    if (whole) weight = values;
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

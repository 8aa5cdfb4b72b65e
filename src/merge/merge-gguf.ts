/**
 * Merging into GGUF model files: the GGUF container ({@link ggufContainer}) put through the shared
 * stages (data-file plan, compute, copy and write, commit).
 */
import { basename, resolve } from "node:path";
import { parseGgufNameMapping, type GgufNameMapping } from "../gguf/tensor-names.js";
import { ggufAdapterBase } from "./core/gguf-adapter-base.js";
import { readJsonFileBytes } from "../node/files.js";
import { drain, eventStream } from "../util/event-stream.js";
import { carriedTensorTargets } from "../peft/carried-tensors.js";
import type { MergeCommonParams } from "./merge-params.js";
import { ggufContainer } from "./core/gguf-container.js";
import { ggufSplitOutput } from "./gguf-split-output.js";
import { mergeAdapter } from "./merge-adapter.js";
import { startMergeRun, type MergeRun } from "./core/merge-run.js";
import type { MergeEvent, MergeReport } from "./core/merge-report.js";
import { planAndWrite } from "./plan-and-write.js";
import { readGgufModel } from "./read-gguf-model.js";

/** Parameters of {@link mergeGguf} and {@link mergeGgufIter}. */
export interface MergeGgufParams extends MergeCommonParams {
  /**
   * The base model: a GGUF v3 file (F32, F16 or BF16 weights where the adapter goes), or any part of a
   * split GGUF (`<name>-00001-of-0000N.gguf`, ...: the other parts are found beside it).
   */
  model: string;
  /**
   * The merged GGUF file. For a split GGUF: a folder (existing, or a new path not ending in `.gguf`) where
   * the parts keep their names, or `<prefix>-00001-of-0000N.gguf` (the same N) naming part k
   * `<prefix>-0000k-of-0000N.gguf`. Required unless `inPlace` or `dryRun`.
   */
  output?: string;
  /**
   * Write the merged weights into the input file itself (each changed part of a split GGUF), behind an undo
   * journal beside the (first) part. @default false
   */
  inPlace?: boolean;
  /**
   * A mapping file (JSON: module path -> llama.cpp tensor name, `{bid}` for the block number), for
   * architectures without a built-in table, or the mapping itself. @default none
   */
  mapping?: string | GgufNameMapping;
}

/**
 * Merge a VeRA adapter into a GGUF model file, as an async generator of progress events whose
 * return value is the report. Only the adapted weights' bytes change (llama-family attn_q / attn_k
 * get the delta in llama.cpp's permuted row order): the header, metadata, tensor table, alignment
 * and every other tensor are copied byte for byte. Memory holds a few merged tensors at a time.
 * The output is written as a temporary file and renamed at the end; on any error or cancellation
 * nothing is written. A split GGUF (llama.cpp's gguf-split parts) is merged part by part: the
 * metadata is the first part's, weights are found in any part, every part is written (a part
 * without merged weights is copied as it is; in place, only the changed parts are rewritten).
 *
 * @throws VeraError `GGUF_SPLIT` (a missing part, parts whose split.no / split.count /
 *   split.tensors.count disagree), `GGUF_*` (a broken or truncated file or part, a tensor in two
 *   parts, an unknown architecture without mapping, quantized or tied weights, shapes),
 *   `ARG_INVALID` (an output that is neither form for a split GGUF), `MERGE_WEIGHT_NOT_FOUND`,
 *   `MERGE_OUTPUT_CONFLICT`, `MERGE_ABORTED`, `IO_*`.
 */
export async function* mergeGgufIter(params: MergeGgufParams): AsyncGenerator<MergeEvent, MergeReport, void> {
  return yield* eventStream<MergeEvent, MergeReport>({
    run: (signal, emit) => runMerge(params, startMergeRun({ signal, emit })),
    ...(params.signal ? { signal: params.signal } : {}),
  });
}

/** {@link mergeGgufIter} as a promise; `onProgress` receives the events (a throwing `onProgress` cancels the merge). */
export async function mergeGguf(
  params: MergeGgufParams & { onProgress?: (e: MergeEvent) => void },
): Promise<MergeReport> {
  return drain(mergeGgufIter(params), params.onProgress);
}

/** The mapping of a GGUF merge: as given, or read from a file (`parseGgufNameMapping`: the shared format too). */
async function mappingOf(m: MergeGgufParams["mapping"]): Promise<GgufNameMapping | undefined> {
  if (m === undefined || typeof m !== "string") return m;
  return parseGgufNameMapping(new TextDecoder().decode(await readJsonFileBytes(m, "mapping")), m);
}

async function runMerge(params: MergeGgufParams, run: MergeRun): Promise<MergeReport> {
  const { timings, check } = run;
  const t0 = run.started;
  const model = await readGgufModel({ model: params.model });
  const { file, path: real } = model.parts[0]!;
  const mapping = await mappingOf(params.mapping);
  timings.readModel = performance.now() - t0;
  check();
  const t1 = performance.now();
  const base = ggufAdapterBase({
    file,
    label: real,
    ...(model.split ? { parts: model.parts.map((p) => p.file) } : {}),
    ...(mapping ? { mapping } : {}),
  });
  const loaded = await mergeAdapter({
    adapter: params.adapter,
    base,
    ...(params.adapterName !== undefined ? { adapterName: params.adapterName } : {}),
  });
  const inPlace = params.inPlace ?? false;
  const dryRun = params.dryRun ?? false;
  const names = model.parts.map((p) => p.name);
  const split =
    model.split && params.output !== undefined && !inPlace
      ? await ggufSplitOutput({ output: params.output, names })
      : undefined;
  const output = split?.output ?? (params.output === undefined ? undefined : resolve(params.output));
  const container = ggufContainer({
    file,
    path: real,
    modules: loaded.adapter.modules,
    carried: carriedTensorTargets({ adapter: loaded.adapter }),
    ...(mapping ? { mapping } : {}),
    ...(model.split
      ? {
          parts: model.parts.map((p, i) => ({
            file: p.file,
            path: p.path,
            name: p.name,
            outputName: split?.names[i] ?? p.name,
          })),
        }
      : output !== undefined
        ? { outputName: basename(output) }
        : {}),
  });
  return planAndWrite({
    container,
    loaded,
    options: params,
    model: real,
    input: real,
    ...(output !== undefined ? { output } : {}),
    inPlace,
    dryRun,
    reportModules: () => container.reportModules(),
    skipped: [],
    carried: container.reportCarried(),
    warnings: loaded.warnings,
    run,
    planStarted: t1,
  });
}

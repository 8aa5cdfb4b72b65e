/**
 * Merging into GGUF model files: the GGUF container ({@link ggufContainer}) put through the shared
 * stages (data-file plan, compute, copy and write, commit).
 */
import { promises as fsp } from "node:fs";
import { basename, resolve } from "node:path";
import { ErrorCode, VeraError } from "../errors.js";
import { baseShapesFromGguf } from "../gguf/base-shapes-from-gguf.js";
import { loraBaseFromGguf } from "../gguf/lora-base.js";
import { ggufScalar, readGguf } from "../gguf/read-gguf.js";
import { GgufErrorCode } from "../gguf/error-codes.js";
import { isKnownGgufArchitecture, parseGgufNameMapping, type GgufNameMapping } from "../gguf/tensor-names.js";
import type { GgufFile } from "../gguf/types.js";
import { readFileBytes } from "../node/files.js";
import { readRange } from "../node/ranged-io.js";
import { MergeErrorCode } from "./error-codes.js";
import { eventStream } from "./event-stream.js";
import type { MergeCommonParams } from "./merge-params.js";
import { ggufContainer } from "./gguf-container.js";
import { loadAdapterFile } from "./load-adapter-file.js";
import { drainMerge, mergeAborted } from "./merge-aborted.js";
import { emptyTimings, type MergeEvent, type MergeReport } from "./merge-report.js";
import { planAndWrite } from "./plan-and-write.js";

/** Parameters of {@link mergeGguf} and {@link mergeGgufIter}. */
export interface MergeGgufParams extends MergeCommonParams {
  /** The base model: a single-file GGUF v3 (F32, F16 or BF16 weights where the adapter goes). */
  model: string;
  /** The merged GGUF file. Required unless `inPlace` or `dryRun`. */
  output?: string;
  /** Replace the input file (a temporary copy renamed over it). @default false */
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
 * nothing is written. Split GGUF files (`-00001-of-0000N.gguf`) are refused.
 *
 * @throws VeraError `MERGE_CONTAINER_UNKNOWN` (not a GGUF, a split GGUF), `GGUF_*` (a broken or
 *   truncated file, an unknown architecture without mapping, quantized or tied weights, shapes),
 *   `MERGE_WEIGHT_NOT_FOUND`, `MERGE_OUTPUT_CONFLICT`, `MERGE_ABORTED`, `IO_*`.
 */
export async function* mergeGgufIter(params: MergeGgufParams): AsyncGenerator<MergeEvent, MergeReport, void> {
  return yield* eventStream<MergeEvent, MergeReport>({
    run: (signal, emit) => runMerge(params, signal, emit),
    ...(params.signal ? { signal: params.signal } : {}),
  });
}

/** {@link mergeGgufIter} as a promise; `onProgress` receives the events (a throwing `onProgress` cancels the merge). */
export async function mergeGguf(
  params: MergeGgufParams & { onProgress?: (e: MergeEvent) => void },
): Promise<MergeReport> {
  return drainMerge(mergeGgufIter(params), params.onProgress);
}

/** llama.cpp's gguf-split names its parts `<name>-00001-of-00003.gguf` and records `split.count`. */
function refuseSplit(path: string, file: GgufFile): void {
  const count = ggufScalar(file, "split.count");
  const n = typeof count === "bigint" ? Number(count) : typeof count === "number" ? count : 1;
  if (n > 1 || /-\d{5}-of-\d{5}\.gguf$/i.test(path))
    throw new VeraError(
      MergeErrorCode.MERGE_CONTAINER_UNKNOWN,
      `${path} is one part of a split GGUF (${n > 1 ? `split.count ${n}` : "its name"}); split files are not merged: ` +
        "join them with llama-gguf-split --merge, merge the single file, then split it again",
      { path, expected: "a single-file GGUF", received: n > 1 ? `split.count = ${n}` : basename(path) },
    );
}

/** The header, metadata and tensor table by positioned reads (not node/gguf-file's: that module also sizes adapters from ONNX models). */
async function readHeader(path: string): Promise<GgufFile> {
  let fh: fsp.FileHandle | undefined;
  try {
    fh = await fsp.open(path, "r");
    const handle = fh;
    const size = (await fh.stat()).size;
    return await readGguf({ source: { size, read: (o, n) => readRange(handle, o, n) }, label: path });
  } catch (e) {
    if (e instanceof VeraError) throw e;
    throw new VeraError(ErrorCode.IO_ERROR, `cannot read ${path}: ${(e as Error).message}`, { path, cause: e });
  } finally {
    await fh?.close().catch(() => {});
  }
}

async function readModel(path: string): Promise<{ real: string; file: GgufFile }> {
  let real: string;
  try {
    real = await fsp.realpath(resolve(path));
  } catch (e) {
    throw new VeraError(ErrorCode.IO_NOT_FOUND, `model not found: ${resolve(path)}`, { path, cause: e });
  }
  const file = await readHeader(real);
  refuseSplit(real, file);
  return { real, file };
}

async function mappingOf(m: MergeGgufParams["mapping"]): Promise<GgufNameMapping | undefined> {
  if (m === undefined || typeof m !== "string") return m;
  return parseGgufNameMapping(new TextDecoder().decode(await readFileBytes(m)), m);
}

async function runMerge(
  params: MergeGgufParams,
  signal: AbortSignal,
  emit: (e: MergeEvent) => void,
): Promise<MergeReport> {
  const t0 = performance.now();
  const timings = emptyTimings();
  const check = (): void => {
    if (signal.aborted) throw mergeAborted();
  };
  const { real, file } = await readModel(params.model);
  const mapping = await mappingOf(params.mapping);
  timings.readModel = performance.now() - t0;
  check();
  const t1 = performance.now();
  const base = loraBaseFromGguf(file, real);
  // before the adapter is sized against the model's tensors: without names there is nothing to size it by
  if (!mapping && !isKnownGgufArchitecture(base.architecture))
    throw new VeraError(
      GgufErrorCode.GGUF_UNKNOWN_ARCHITECTURE,
      `${real}: architecture ${JSON.stringify(base.architecture)} has no built-in llama.cpp tensor names; ` +
        "give a mapping file (JSON: module path -> tensor name, {bid} for the block number) with --mapping",
      { path: "general.architecture", expected: "a known architecture or a mapping", received: base.architecture },
    );
  const loaded =
    typeof params.adapter !== "string"
      ? { adapter: params.adapter, source: "object" as const, warnings: [] }
      : await loadAdapterFile({
          path: params.adapter,
          base: (peft) =>
            baseShapesFromGguf({
              base,
              modules: [...peft.tensors.keys()]
                .filter((k) => k.endsWith(".vera_lambda_b"))
                .map((k) => k.replace(/^base_model\.model\./, "").replace(/\.vera_lambda_b$/, "")),
              ...(mapping ? { mapping } : {}),
            }),
          ...(params.adapterName !== undefined ? { adapterName: params.adapterName } : {}),
        });
  const inPlace = params.inPlace ?? false;
  const dryRun = params.dryRun ?? false;
  const output = params.output === undefined ? undefined : resolve(params.output);
  const container = ggufContainer({
    file,
    path: real,
    modules: loaded.adapter.modules,
    ...(mapping ? { mapping } : {}),
    ...(output !== undefined ? { outputName: basename(output) } : {}),
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
    warnings: loaded.warnings,
    timings,
    started: t0,
    planStarted: t1,
    check,
    emit,
  });
}

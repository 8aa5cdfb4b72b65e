/**
 * Runs ONNX models in onnxruntime-web (WebAssembly execution provider, single-threaded) on given input
 * ids. Loaded only when a model is run: onnxruntime-web never weighs on the inspect/validate/convert page.
 */
import * as ort from "onnxruntime-web/wasm";
import { ErrorCode, VeraError } from "verakit";

/** One file of a model: its path relative to the .onnx file's folder, and its bytes. */
export interface ModelFile {
  path: string;
  blob: Blob;
}

/** A plain tensor, as `adapterFeeds` from verakit/serve gives them. */
export interface PlainTensor {
  type: string;
  dims: readonly number[];
  data: ArrayLike<number> | ArrayLike<bigint>;
}

let configured = false;

/**
 * The largest model (with its data) the page runs: the wasm32 heap is 4 GiB at most, and the bytes are held once
 * in JavaScript and once in the heap. Larger models are refused before anything is read.
 */
export const MAX_RUN_BYTES = 2 ** 31 - 2 ** 27;

/** onnxruntime-web's wasm binary is served from the page's own `ort/` folder (copied there by the build). */
function configure(): void {
  if (configured) return;
  // The bundled build carries its JavaScript glue; only the .wasm binary is fetched.
  ort.env.wasm.wasmPaths = { wasm: new URL("./ort/ort-wasm-simd-threaded.wasm", document.baseURI).href };
  ort.env.wasm.numThreads = 1;
  configured = true;
}

/** A session ready to run, and what its graph asks for. */
export interface ModelSession {
  session: ort.InferenceSession;
  inputNames: readonly string[];
  outputNames: readonly string[];
  release(): Promise<void>;
}

/**
 * Open a model: `model` is the .onnx file, `files` every file beside it (its external data), with paths
 * relative to the model's folder, as the model's `location` fields name them.
 */
export async function openModel(params: { model: ModelFile; files: readonly ModelFile[] }): Promise<ModelSession> {
  const total = params.model.blob.size + params.files.reduce((n, f) => n + (f === params.model ? 0 : f.blob.size), 0);
  if (total > MAX_RUN_BYTES)
    throw new VeraError(
      ErrorCode.ARG_INVALID,
      "the model is too large to run in onnxruntime-web's WebAssembly memory (4 GiB, holding the weights and a copy)",
      { path: params.model.path, expected: `at most ${MAX_RUN_BYTES} bytes`, received: `${total} bytes` },
    );
  configure();
  const externalData = await Promise.all(
    params.files
      .filter((f) => f !== params.model && !f.path.endsWith(".onnx"))
      .map(async (f) => ({ path: f.path, data: new Uint8Array(await f.blob.arrayBuffer()) })),
  );
  const session = await ort.InferenceSession.create(new Uint8Array(await params.model.blob.arrayBuffer()), {
    executionProviders: ["wasm"],
    ...(externalData.length > 0 ? { externalData } : {}),
  });
  return {
    session,
    inputNames: session.inputNames,
    outputNames: session.outputNames,
    release: () => session.release(),
  };
}

/** Parse input ids typed by the user: integers separated by spaces or commas. */
export function parseInputIds(text: string): number[] {
  const parts = text.split(/[\s,]+/).filter((s) => s.length > 0);
  const ids = parts.map(Number);
  if (ids.length === 0 || ids.some((x) => !Number.isSafeInteger(x) || x < 0))
    throw new VeraError(
      ErrorCode.ARG_INVALID,
      "input ids must be non-negative integers separated by spaces or commas",
      {
        path: "input ids",
        expected: "e.g. 1 5 9 13",
        received: text,
      },
    );
  return ids;
}

/**
 * Feeds for a causal language model on one sequence: `input_ids` [1, n], and when the graph asks for them
 * `attention_mask` (ones) and `position_ids` (0..n-1), all int64; `extra` adds more (adapter vectors).
 * Any other input the graph declares is refused by name.
 */
export function textFeeds(params: {
  inputNames: readonly string[];
  ids: readonly number[];
  extra?: Record<string, PlainTensor>;
}): Record<string, ort.Tensor> {
  const n = params.ids.length;
  const feeds: Record<string, ort.Tensor> = {};
  for (const name of params.inputNames) {
    const x = params.extra?.[name];
    if (x) feeds[name] = new ort.Tensor(x.type as "float32", x.data as Float32Array, [...x.dims]);
    else if (name === "input_ids")
      feeds[name] = new ort.Tensor(
        "int64",
        BigInt64Array.from(params.ids, (v) => BigInt(v)),
        [1, n],
      );
    else if (name === "attention_mask") feeds[name] = new ort.Tensor("int64", new BigInt64Array(n).fill(1n), [1, n]);
    else if (name === "position_ids")
      feeds[name] = new ort.Tensor(
        "int64",
        BigInt64Array.from({ length: n }, (_, i) => BigInt(i)),
        [1, n],
      );
    else
      throw new VeraError(
        ErrorCode.ARG_INVALID,
        `the model asks for input ${JSON.stringify(name)}, which the page cannot feed`,
        {
          path: name,
          expected: "input_ids, attention_mask, position_ids (or an adapter's vectors)",
          received: name,
        },
      );
  }
  return feeds;
}

/** Run and return the logits: the output named `logits`, else the first output, as float32. */
export async function runLogits(params: {
  model: ModelSession;
  feeds: Record<string, ort.Tensor>;
  /** onnxruntime's run options (active adapters). @default none */
  options?: ort.InferenceSession.RunOptions;
}): Promise<{ name: string; dims: readonly number[]; data: Float32Array }> {
  const names = params.model.outputNames;
  const name = names.includes("logits") ? "logits" : names[0]!;
  const out = params.options
    ? await params.model.session.run(params.feeds, [name], params.options)
    : await params.model.session.run(params.feeds, [name]);
  const t = out[name]!;
  if (t.type !== "float32")
    throw new VeraError(ErrorCode.ARG_INVALID, `output ${JSON.stringify(name)} is not float32`, {
      path: name,
      expected: "float32",
      received: t.type,
    });
  return { name, dims: t.dims, data: t.data as Float32Array };
}

/** max |a - b| over two logits arrays of the same shape. */
export function maxAbsDistance(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length)
    throw new VeraError(ErrorCode.ARG_INVALID, "the two models' logits differ in size", {
      expected: a.length,
      received: b.length,
    });
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/**
 * Run with an onnxruntime adapter file (`.onnx_adapter`) active: onnxruntime-web's `LoraAdapter` feeds its tensors to
 * the inputs of the same names. onnxruntime-web only takes them for inputs that have a default initializer (a graph
 * grafted with `defaults: true`): its session lists only the other inputs and asks a feed for each of them.
 */
export async function runLogitsWithAdapterFile(params: {
  model: ModelSession;
  feeds: Record<string, ort.Tensor>;
  adapterFile: Uint8Array;
}): Promise<{ name: string; dims: readonly number[]; data: Float32Array }> {
  const adapter = await ort.LoraAdapter.create(params.adapterFile);
  try {
    return await runLogits({ model: params.model, feeds: params.feeds, options: { activeLoraAdapters: [adapter] } });
  } finally {
    await adapter.release();
  }
}

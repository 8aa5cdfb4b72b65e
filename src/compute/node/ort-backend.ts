/**
 * Node-only: the onnxruntime-node backends (`ort-cpu`, `ort-webgpu`, `ort-cuda`).
 *
 * The data path is what makes them fast (see bench/RESULTS.md for the numbers that decided it):
 * - the shared projection A is a constant initializer of a session kept per (A, dtype, layout), so
 *   onnxruntime pre-packs it ONCE for every layer with that in_features; lambda_b and lambda_d are
 *   folded into the thin out x r factor inside the graph;
 * - the weight is processed in row blocks (a few MB, cache-resident), merged IN PLACE: the block
 *   of the caller's weight is both the input and the pre-bound output of one graph run, so no
 *   tensor is allocated, copied or returned per layer;
 * - f16 weights cross the boundary as f16 and are cast inside the graph (onnxruntime's Cast
 *   kernels run on every intra-op thread); bf16 has no onnxruntime-node tensor type: the graph
 *   writes the float32 delta block into the WebAssembly kernel's memory and the kernel does
 *   widen + add + round to nearest even + max |delta| in one cache-resident SIMD pass;
 * - a read-only pre-scan (max |W|, for 16-bit weights the largest magnitude bit pattern by the
 *   WebAssembly kernel) proves that no element can overflow before anything is written; only
 *   when it cannot prove that, the merge runs on a copy that is checked element by element
 *   before it replaces the weight.
 */
import type * as OrtNs from "onnxruntime-node";
import { VeraError } from "../../errors.js";
import type { BackendInfo, ComputeBackend, MergeTask, MergeTaskResult } from "../backend.js";
import { ComputeErrorCode } from "../error-codes.js";
import { buildOnnxModel, OnnxType, type NodeSpec, type ValueInfo } from "../onnx-merge-model.js";
import { DTYPE_BYTES, DTYPE_OVERFLOW_THRESHOLD } from "../round-to-dtype.js";
import { validateMergeTasks } from "../validate-tasks.js";
import { loadWasmKernels, type WasmKernels } from "../wasm/kernels.js";
import { deltaBound, findOverflow, overflowError, provablyNoOverflow, riskyPattern } from "../overflow.js";

type Ort = typeof OrtNs;
type Session = OrtNs.InferenceSession;

/** Execution providers the onnxruntime backends can use. */
export type OrtExecutionProvider = "cpu" | "webgpu" | "cuda";

/** Params of {@link createOrtBackend}. */
export interface CreateOrtBackendParams {
  /**
   * The onnxruntime execution provider.
   * @default "cpu"
   */
  executionProvider?: OrtExecutionProvider;
  /**
   * Intra-op threads of the CPU provider.
   * @default the number of available cores
   */
  threads?: number;
  /**
   * Target bytes of float32 output per graph run (row-block size). Blocks of a few MiB stay in the
   * L2/L3 caches and measured fastest on the reference machine (bench/RESULTS.md).
   * @default 4194304
   */
  blockBytes?: number;
  /**
   * Whether onnxruntime's intra-op threads spin while waiting for work (onnxruntime's default is
   * to spin).
   * @default onnxruntime's default
   */
  spinning?: boolean;
  /**
   * Most merge sessions kept open (one per distinct A array, dtype and layout; least recently
   * used ones are released).
   * @default 8
   */
  maxSessions?: number;
  /**
   * The onnxruntime-node module (for tests or a custom build).
   * @default `await import("onnxruntime-node")`
   */
  ort?: unknown;
}

const NAMES: Record<OrtExecutionProvider, string> = { cpu: "ort-cpu", webgpu: "ort-webgpu", cuda: "ort-cuda" };

interface Graph {
  session: Session;
}

/**
 * What a merge graph computes: `f32` / `f16` merge a weight block of that type in place
 * (Y = W + M, max |M|); `delta` only computes the float32 delta block M, which the WebAssembly
 * kernel adds to a bf16 weight block (widening, addition, rounding and max |M| in one pass).
 */
type GraphKind = "f32" | "f16" | "delta";

/** Load onnxruntime-node or explain why it cannot be used. */
async function loadOrt(given?: unknown): Promise<Ort> {
  if (given) return given as Ort;
  try {
    const m = (await import("onnxruntime-node")) as Ort & { default?: Ort };
    return (m.InferenceSession ? m : m.default) as Ort;
  } catch (e) {
    throw new VeraError(
      ComputeErrorCode.COMPUTE_UNAVAILABLE,
      `onnxruntime-node cannot be loaded (${(e as Error).message}); install it with \`npm i onnxruntime-node\` or choose another backend`,
      { expected: "onnxruntime-node installed", received: "not loadable", cause: e },
    );
  }
}

/**
 * onnxruntime-node ships the CUDA provider as a separate download (its install script, skipped
 * by default here); check for the library before asking onnxruntime, which would log an error.
 */
async function requireCudaProvider(): Promise<void> {
  const { createRequire } = await import("node:module");
  const path = await import("node:path");
  const fs = await import("node:fs");
  const here = typeof __filename === "string" ? __filename : import.meta.url;
  let dir: string;
  try {
    dir = path.dirname(createRequire(here).resolve("onnxruntime-node/package.json"));
  } catch {
    return; // let onnxruntime report it
  }
  const lib = process.platform === "win32" ? "onnxruntime_providers_cuda.dll" : "libonnxruntime_providers_cuda.so";
  const file = path.join(dir, "bin", "napi-v6", process.platform, process.arch, lib);
  if (!fs.existsSync(file))
    throw new VeraError(
      ComputeErrorCode.COMPUTE_UNAVAILABLE,
      `onnxruntime's CUDA execution provider is not installed (${lib} is missing); install it with \`npm install onnxruntime-node --onnxruntime-node-install=cuda12\` on a machine with CUDA 12`,
      { expected: file, received: "missing" },
    );
}

const ids = new WeakMap<Float32Array, number>();
let nextId = 1;
function idOf(a: Float32Array): number {
  let id = ids.get(a);
  if (id === undefined) {
    id = nextId++;
    ids.set(a, id);
  }
  return id;
}

const transposed = new WeakMap<Float32Array, Float32Array>();
/** A^T (in x r) for the in_out layout, computed once per A. */
function transposeA(a: Float32Array, r: number, n: number): Float32Array {
  let t = transposed.get(a);
  if (!t || t.length !== a.length) {
    t = new Float32Array(a.length);
    for (let k = 0; k < r; k++) for (let j = 0; j < n; j++) t[j * r + k] = a[k * n + j]!;
    transposed.set(a, t);
  }
  return t;
}

function bytesOf(a: Float32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/**
 * The merge graph for one (A, dtype, layout). Inputs per run (one row block):
 * out_in: W [rows, in], B [rows, r], LB [rows, 1], LD [1, r]; A [r, in] is a constant.
 *   M = MatMul((B * LB) * LD, A)
 * in_out: W [rows, out] (rows of in), AT [rows, r], BP [out, r] (= lambda_b B lambda_d, folded once per task).
 *   M = Gemm(AT, BP, transB = 1)
 * then, for `f32` / `f16`: Y = W + M (W cast to float32 first when it is f16, Y cast back),
 * D = ReduceMax(Abs(M)); for `delta`: M is the output (no W input).
 */
function mergeModel(task: MergeTask, kind: GraphKind): Uint8Array {
  const { rank: r, inFeatures: n, layout } = task;
  const F = OnnxType.FLOAT;
  const wt = kind === "f16" ? OnnxType.FLOAT16 : F;
  const nodes: NodeSpec[] = [];
  const inputs: ValueInfo[] = [];
  const cols = layout === "out_in" ? n : "out";
  if (kind !== "delta") inputs.push({ name: "W", type: wt, shape: ["rows", cols] });
  let initializers;
  if (layout === "out_in") {
    inputs.push(
      { name: "B", type: F, shape: ["rows", r] },
      { name: "LB", type: F, shape: ["rows", 1] },
      { name: "LD", type: F, shape: [1, r] },
    );
    initializers = [{ name: "A", type: F, dims: [r, n], raw: bytesOf(task.a) }];
    nodes.push(
      { op: "Mul", inputs: ["B", "LB"], outputs: ["Bb"] },
      { op: "Mul", inputs: ["Bb", "LD"], outputs: ["Bp"] },
      { op: "MatMul", inputs: ["Bp", "A"], outputs: ["M"] },
    );
  } else {
    inputs.push({ name: "AT", type: F, shape: ["rows", r] }, { name: "BP", type: F, shape: ["out", r] });
    nodes.push({ op: "Gemm", inputs: ["AT", "BP"], outputs: ["M"], attrs: [{ name: "transB", i: 1 }] });
  }
  if (kind === "delta") {
    const outputs: ValueInfo[] = [{ name: "M", type: F, shape: ["rows", cols] }];
    return buildOnnxModel({ nodes, inputs, outputs, ...(initializers ? { initializers } : {}) });
  }
  const f16 = kind === "f16";
  if (f16) nodes.push({ op: "Cast", inputs: ["W"], outputs: ["Wf"], attrs: [{ name: "to", i: F }] });
  nodes.push({ op: "Add", inputs: [f16 ? "Wf" : "W", "M"], outputs: [f16 ? "Yf" : "Y"] });
  if (f16) nodes.push({ op: "Cast", inputs: ["Yf"], outputs: ["Y"], attrs: [{ name: "to", i: OnnxType.FLOAT16 }] });
  nodes.push(
    { op: "Abs", inputs: ["M"], outputs: ["Ma"] },
    { op: "ReduceMax", inputs: ["Ma"], outputs: ["D"], attrs: [{ name: "keepdims", i: 0 }] },
  );
  const outputs: ValueInfo[] = [
    { name: "Y", type: wt, shape: ["rows", cols] },
    { name: "D", type: F, shape: [] },
  ];
  return buildOnnxModel({ nodes, inputs, outputs, ...(initializers ? { initializers } : {}) });
}

/** Pre-scan graph for float32 weights: max and min of a chunk. */
function scanModel(): Uint8Array {
  return buildOnnxModel({
    nodes: [
      { op: "ReduceMax", inputs: ["W"], outputs: ["MX"], attrs: [{ name: "keepdims", i: 0 }] },
      { op: "ReduceMin", inputs: ["W"], outputs: ["MN"], attrs: [{ name: "keepdims", i: 0 }] },
    ],
    inputs: [{ name: "W", type: OnnxType.FLOAT, shape: ["n"] }],
    outputs: [
      { name: "MX", type: OnnxType.FLOAT, shape: [] },
      { name: "MN", type: OnnxType.FLOAT, shape: [] },
    ],
  });
}

/**
 * Create an onnxruntime-node merge backend. Throws `COMPUTE_UNAVAILABLE` when onnxruntime-node is
 * not installed or the execution provider cannot start (the check creates a tiny session).
 * The `a` arrays of the tasks are treated as immutable: a session with a pre-packed copy is kept
 * per `a` object (pass the same object for every layer with the same in_features).
 */
export async function createOrtBackend(params: CreateOrtBackendParams = {}): Promise<ComputeBackend> {
  const ep = params.executionProvider ?? "cpu";
  const ort = await loadOrt(params.ort);
  if (ep === "cuda" && !params.ort) await requireCudaProvider();
  const name = NAMES[ep];
  let threads = params.threads;
  if (threads === undefined) {
    const os = await import("node:os");
    threads = typeof os.availableParallelism === "function" ? os.availableParallelism() : os.cpus().length;
  }
  const blockBytes = Math.max(4096, params.blockBytes ?? 4 << 20);
  const maxSessions = Math.max(1, params.maxSessions ?? 8);
  const options: OrtNs.InferenceSession.SessionOptions = {
    executionProviders: [ep],
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: "sequential",
    graphOptimizationLevel: "all",
    logSeverityLevel: 3,
    ...(params.spinning === undefined
      ? {}
      : { extra: { session: { intra_op: { allow_spinning: params.spinning ? "1" : "0" } } } }),
  };
  const open = async (model: Uint8Array): Promise<Session> => {
    try {
      return await ort.InferenceSession.create(model, options);
    } catch (e) {
      throw new VeraError(
        ComputeErrorCode.COMPUTE_UNAVAILABLE,
        `onnxruntime execution provider "${ep}" cannot run here: ${(e as Error).message}`,
        { expected: `a working ${ep} execution provider`, received: (e as Error).message, cause: e },
      );
    }
  };
  // Probe: fails fast (COMPUTE_UNAVAILABLE) when the provider is missing.
  const scanF32 = await open(scanModel());
  const graphs = new Map<string, Graph>();
  let wasm: WasmKernels | undefined;
  const device =
    ep === "cpu"
      ? `cpu, ${threads} thread${threads === 1 ? "" : "s"} (onnxruntime-node)`
      : `onnxruntime-node ${ep} execution provider${ep === "webgpu" ? " (the adapter is not reported: it may be a software renderer)" : ""}`;
  const info: BackendInfo = { name, device };

  const graphFor = async (task: MergeTask, kind: GraphKind): Promise<Graph> => {
    const key =
      task.layout === "out_in"
        ? `oi:${idOf(task.a)}:${task.rank}:${task.inFeatures}:${kind}`
        : `io:${task.rank}:${kind}`;
    let g = graphs.get(key);
    if (g) {
      graphs.delete(key); // most recently used last
      graphs.set(key, g);
      return g;
    }
    // Keep a few sessions: one per distinct A (in_features) and dtype is what a model needs; a
    // caller that passes a fresh A array per layer still works, it only loses the pre-packing.
    while (graphs.size >= maxSessions) {
      const [oldKey, old] = graphs.entries().next().value as [string, Graph];
      graphs.delete(oldKey);
      await old.session.release();
    }
    g = { session: await open(mergeModel(task, kind)) };
    graphs.set(key, g);
    return g;
  };

  const run = async (s: Session, feeds: Record<string, OrtNs.Tensor>, fetches?: Record<string, OrtNs.Tensor>) => {
    try {
      return fetches ? await s.run(feeds, fetches as never) : await s.run(feeds);
    } catch (e) {
      throw new VeraError(ComputeErrorCode.COMPUTE_FAILED, `${name} failed: ${(e as Error).message}`, { cause: e });
    }
  };

  /** max |W| over a float32 weight, NaN when it holds a NaN. */
  const maxAbsWeight = async (view: Float32Array): Promise<number> => {
    const chunk = 1 << 18; // 1 MiB: the second reduction reads it from L2
    let m = 0;
    for (let o = 0; o < view.length; o += chunk) {
      const part = view.subarray(o, Math.min(view.length, o + chunk));
      const r = await run(scanF32, { W: new ort.Tensor("float32", part, [part.length]) });
      const mx = (r.MX!.data as Float32Array)[0]!;
      const mn = (r.MN!.data as Float32Array)[0]!;
      if (Number.isNaN(mx) || Number.isNaN(mn)) return NaN;
      m = Math.max(m, Math.abs(mx), Math.abs(mn));
    }
    return m;
  };
  /**
   * The largest magnitude bit pattern of a 16-bit weight: max(bits & 0x7fff), by the WebAssembly
   * SIMD kernel over chunks copied into its memory (a memory-bound pass, ~13x faster than the same
   * reduction as an onnxruntime graph, which needs an int32 cast of every element).
   */
  const maxPattern16 = async (w: Uint8Array): Promise<number> => {
    const k = (wasm ??= await loadWasmKernels({ relaxed: false }));
    const chunk = 1 << 19; // bytes: stays in L2
    k.reserve(64 + chunk);
    const view = new Uint8Array(k.memory.buffer, 64, chunk);
    let m = 0;
    for (let o = 0; o < w.byteLength; o += chunk) {
      const part = w.subarray(o, Math.min(w.byteLength, o + chunk));
      view.set(part);
      m = Math.max(m, k.maxBits16(64, part.byteLength >> 1));
    }
    return m;
  };

  /** Merge one task in place on `bytes` (the weight or a copy of it); returns max |delta|. */
  const mergeInto = async (task: MergeTask, bytes: Uint8Array): Promise<number> => {
    const { outFeatures: o, inFeatures: n, rank: r, layout, dtype } = task;
    const kind: GraphKind = dtype === "F32" ? "f32" : dtype === "F16" ? "f16" : "delta";
    const g = await graphFor(task, kind);
    const cols = layout === "out_in" ? n : o;
    const rowsTotal = layout === "out_in" ? o : n;
    const rowsPer = Math.max(1, Math.min(rowsTotal, Math.floor(blockBytes / (4 * cols))));
    const eb = DTYPE_BYTES[dtype];
    const aligned = bytes.byteOffset % eb === 0;
    // f32 / f16: the block of the caller's weight is the graph's input and its pre-bound output
    // (a staging copy only when unaligned). bf16: the graph writes the float32 delta block into
    // the WebAssembly kernel's memory, the kernel adds it to the weight block (copied in and out).
    const stage = kind !== "delta" && !aligned ? new Uint8Array(rowsPer * cols * eb) : undefined;
    const w16At = 64;
    const mAt = w16At + Math.ceil((rowsPer * cols * 2) / 64) * 64;
    let k: WasmKernels | undefined;
    if (kind === "delta") {
      k = wasm ??= await loadWasmKernels({ relaxed: false });
      k.reserve(mAt + rowsPer * cols * 4);
    }
    const ld = layout === "out_in" ? new ort.Tensor("float32", task.lambdaD, [1, r]) : undefined;
    const at = layout === "in_out" ? transposeA(task.a, r, n) : undefined;
    let bp: OrtNs.Tensor | undefined;
    if (layout === "in_out") {
      const folded = new Float32Array(o * r);
      for (let i = 0; i < o; i++) {
        const lbi = task.lambdaB[i]!;
        for (let kk = 0; kk < r; kk++) folded[i * r + kk] = Math.fround(task.b[i * r + kk]! * lbi) * task.lambdaD[kk]!;
      }
      bp = new ort.Tensor("float32", folded, [o, r]);
    }
    let maxDelta = 0;
    for (let r0 = 0; r0 < rowsTotal; r0 += rowsPer) {
      const rows = Math.min(rowsPer, rowsTotal - r0);
      const count = rows * cols;
      const byteStart = r0 * cols * eb;
      const byteEnd = byteStart + count * eb;
      const feeds: Record<string, OrtNs.Tensor> =
        layout === "out_in"
          ? {
              B: new ort.Tensor("float32", task.b.subarray(r0 * r, (r0 + rows) * r), [rows, r]),
              LB: new ort.Tensor("float32", task.lambdaB.subarray(r0, r0 + rows), [rows, 1]),
              LD: ld!,
            }
          : {
              AT: new ort.Tensor("float32", at!.subarray(r0 * r, (r0 + rows) * r), [rows, r]),
              BP: bp!,
            };
      if (kind !== "delta") {
        const src = stage ? stage.subarray(0, count * eb) : bytes.subarray(byteStart, byteEnd);
        if (stage) src.set(bytes.subarray(byteStart, byteEnd));
        const wt =
          kind === "f32"
            ? new ort.Tensor("float32", new Float32Array(src.buffer, src.byteOffset, count), [rows, cols])
            : new ort.Tensor("float16", new Uint16Array(src.buffer, src.byteOffset, count) as never, [rows, cols]);
        feeds.W = wt;
        const res = await run(g.session, feeds, { Y: wt, D: null as never });
        const d = (res.D!.data as Float32Array)[0]!;
        if (d > maxDelta) maxDelta = d;
        if (stage) bytes.set(src, byteStart);
      } else {
        const mem = k!.memory.buffer;
        const w16 = new Uint8Array(mem, w16At, count * 2);
        w16.set(bytes.subarray(byteStart, byteEnd));
        await run(g.session, feeds, { M: new ort.Tensor("float32", new Float32Array(mem, mAt, count), [rows, cols]) });
        k!.bf16Add(w16At, mAt, count, 0);
        const d = new Float32Array(mem, 0, 1)[0]!;
        if (d > maxDelta) maxDelta = d;
        bytes.set(w16, byteStart);
      }
    }
    return maxDelta;
  };

  // Merges share the WebAssembly kernel's staging memory across awaits: one at a time.
  let queue: Promise<unknown> = Promise.resolve();

  const mergeAll = async (tasks: MergeTask[]): Promise<MergeTaskResult[]> => {
    const results: MergeTaskResult[] = [];
    for (const task of tasks) {
      const eb = DTYPE_BYTES[task.dtype];
      const w = task.weight;
      // Overflow pre-scan (read only): cheap bound on |delta| plus max |W|.
      const bound = deltaBound(task);
      let risky: boolean;
      if (task.dtype === "F16" || task.dtype === "BF16") {
        risky = (await maxPattern16(w)) >= riskyPattern(task.dtype, bound);
      } else if (w.byteOffset % eb === 0) {
        const mw = await maxAbsWeight(new Float32Array(w.buffer, w.byteOffset, w.byteLength / 4));
        risky = !(mw + bound < DTYPE_OVERFLOW_THRESHOLD[task.dtype] * (1 - 2 ** -20));
      } else {
        risky = !provablyNoOverflow(task, bound);
      }
      let maxAbsDelta: number;
      if (!risky) {
        maxAbsDelta = await mergeInto(task, w);
      } else {
        const copy = w.slice();
        maxAbsDelta = await mergeInto(task, copy);
        const at = findOverflow(task.dtype, w, copy);
        if (at >= 0) throw overflowError(task, at);
        w.set(copy);
      }
      results.push({ name: task.name, maxAbsDelta });
    }
    return results;
  };

  return {
    name,
    info,
    async merge(tasks: MergeTask[]): Promise<MergeTaskResult[]> {
      validateMergeTasks(tasks);
      const done = queue.then(() => mergeAll(tasks));
      queue = done.catch(() => {});
      return done;
    },
    async dispose(): Promise<void> {
      for (const g of graphs.values()) await g.session.release();
      graphs.clear();
      await scanF32.release();
    },
  };
}

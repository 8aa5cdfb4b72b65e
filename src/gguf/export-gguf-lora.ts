import { VeraError, type ErrorCodeValue } from "../errors.js";
import type { VeraAdapter } from "../format/types.js";
import { expandToLoraStream, type ExpandToLoraReport, type LoraExpansionStream } from "../peft/expand-to-lora.js";
import { refuseCarriedTensors } from "../peft/refuse-carried-tensors.js";
import { encodeTensor, ggmlTypeOf, type GgufFloatOutType } from "./encode-tensor.js";
import { GgufErrorCode } from "./error-codes.js";
import type { GgufLoraBase } from "./lora-base.js";
import { permuteQkRows } from "./permute-qk.js";
import { qkvRowOrder, reorderRows } from "./qkv-row-order.js";
import { ggufTensorName, isKnownGgufArchitecture, qkPermutationHeads, type GgufNameMapping } from "./tensor-names.js";
import { planGguf, type GgufPlan } from "./write-gguf.js";
import { GgufValueType, type GgufValue } from "./types.js";

/** Parameters of {@link exportGgufLora}. */
export interface ExportGgufLoraParams {
  adapter: VeraAdapter;
  /** The base model: from a GGUF file (loraBaseFromGguf) or a config.json (loraBaseFromConfig). */
  base: GgufLoraBase;
  /**
   * LoRA rank. At the VeRA rank r the adapter is exact (lora_B = b * B[:out], lora_A = d * A[:, :in]);
   * below it each module gets its best rank-k approximation and the report gives the error.
   * @default adapter.rank
   */
  rank?: number;
  /**
   * Tensor type of lora_a / lora_b (q8_0 needs row lengths, in_features and the rank, that are multiples of 32).
   * @default "f32"
   */
  type?: GgufFloatOutType;
  /** Module path -> llama.cpp tensor name, for architectures without a built-in table. @default undefined */
  mapping?: GgufNameMapping;
  /** general.name of the adapter file. @default undefined (not written) */
  name?: string;
  /**
   * Drop the tensors the adapter carries besides its VeRA vectors (modules_to_save heads, biases), which a GGUF
   * LoRA cannot hold, instead of refusing (`ADAPTER_CARRIED_TENSORS`); the report lists them in `dropped`.
   * @default false
   */
  dropCarried?: boolean;
}

/** One adapted module in the GGUF LoRA. */
export interface GgufLoraModuleReport {
  module: string;
  /** The base tensor, e.g. `blk.0.attn_q.weight`. */
  tensor: string;
  /** Heads of the q/k row permutation applied to lora_b, when applied. */
  permutedHeads?: number;
  rank: number;
  /** ||delta - lora delta||_F / ||delta||_F (0 when exact). */
  relativeError: number;
}

/** What {@link exportGgufLora} wrote. */
export interface GgufLoraReport {
  architecture: string;
  rank: number;
  /** adapter.lora.alpha (= rank: llama.cpp's scale alpha / r is 1). */
  alpha: number;
  type: GgufFloatOutType;
  exact: boolean;
  totalRelativeError: number;
  modules: GgufLoraModuleReport[];
  /** Carried tensors left out (dropCarried): the model this adapter gives differs from PEFT's where they matter. */
  dropped: string[];
}

/** The streamed form: the planned file and a function producing each tensor's bytes, in plan order. */
export interface GgufLoraStream {
  plan: GgufPlan;
  /** Bytes of tensor `index` of `plan.tensors` (exactly its byteLength). */
  tensorBytes(index: number): Uint8Array;
  /** Complete once every tensor was produced. */
  report(): GgufLoraReport;
}

const FILE_TYPE: Record<GgufFloatOutType, number> = { f32: 0, f16: 1, q8_0: 7, bf16: 32 };

function fail(
  code: ErrorCodeValue,
  message: string,
  extra: { path?: string; expected?: unknown; received?: unknown } = {},
) {
  return new VeraError(code, message, extra);
}

type Module = VeraAdapter["modules"][number];

/** One module to write: its base tensor and the heads of the q/k permutation of its lora_b, when applied. */
interface GgufLoraJob {
  module: Module;
  tensor: string;
  heads?: number;
  /** A fused attn_qkv's rows in llama.cpp's order (qkvRowOrder): lora_b's rows follow it. */
  rowOrder?: Uint32Array;
}

/** Refuse an output type GGUF LoRA cannot take and an architecture without tensor names. */
function checkTarget(params: ExportGgufLoraParams, type: GgufFloatOutType): void {
  const { base } = params;
  if (!Object.hasOwn(FILE_TYPE, type))
    throw fail(GgufErrorCode.GGUF_VALUE_TYPE, `output type must be f32, f16, bf16 or q8_0, found ${String(type)}`, {
      path: "type",
      received: type,
    });
  if (!isKnownGgufArchitecture(base.architecture) && !params.mapping)
    throw fail(
      GgufErrorCode.GGUF_UNKNOWN_ARCHITECTURE,
      `${base.label}: architecture "${base.architecture}" has no built-in llama.cpp tensor names; give a mapping file ` +
        `(JSON: {"model.layers.{bid}.<module>": "blk.{bid}.<tensor>"})`,
      { path: "general.architecture", received: base.architecture },
    );
}

/**
 * The base tensor of module `m` with its permutation heads; a string (what to report) when llama.cpp has no
 * name for it or the base lacks it. Throws on a shared tensor, a shape mismatch or an unusable head count.
 */
function moduleJob(
  m: Module,
  base: GgufLoraBase,
  mapping: GgufNameMapping | undefined,
  seen: Map<string, string>,
): GgufLoraJob | { unnamed: string } | { absent: string } {
  const t = ggufTensorName({ architecture: base.architecture, module: m.name, ...(mapping ? { mapping } : {}) });
  if (t === undefined) return { unnamed: m.name };
  const tensor = `${t}.weight`;
  if (seen.has(tensor))
    throw fail(GgufErrorCode.GGUF_MAPPING, `modules ${seen.get(tensor)} and ${m.name} both map to ${tensor}`, {
      path: m.name,
    });
  seen.set(tensor, m.name);
  if (base.absentTensors?.includes(tensor)) return { absent: `${m.name} (${tensor}: tied to token_embd)` };
  if (base.tensors) {
    const ne = base.tensors.get(tensor);
    if (!ne) return { absent: `${m.name} (${tensor})` };
    if (ne.length !== 2 || ne[0] !== m.inFeatures || ne[1] !== m.outFeatures)
      throw fail(
        GgufErrorCode.GGUF_BASE_MISMATCH,
        `${base.label}: ${tensor} has ggml shape [${ne.join(", ")}], the adapter's ${m.name} needs [${m.inFeatures}, ${m.outFeatures}]`,
        { path: tensor, expected: [m.inFeatures, m.outFeatures], received: ne },
      );
  }
  const heads = qkPermutationHeads({
    architecture: base.architecture,
    tensor: t,
    nHead: base.nHead ?? 0,
    nHeadKv: base.nHeadKv ?? base.nHead ?? 0,
  });
  if (heads !== undefined && (heads < 1 || m.outFeatures % (2 * heads) !== 0))
    throw fail(
      GgufErrorCode.GGUF_BASE_MISMATCH,
      `${base.label}: ${tensor} needs llama.cpp's q/k permutation, but the head count (${heads || "missing"}) does not ` +
        `split its ${m.outFeatures} rows into head pairs`,
      { path: tensor, received: heads },
    );
  const order = qkvRowOrder({
    architecture: base.architecture,
    tensor: t,
    rows: m.outFeatures,
    nHead: base.nHead ?? 0,
    nHeadKv: base.nHeadKv ?? base.nHead ?? 0,
  });
  if (typeof order === "string")
    throw fail(
      GgufErrorCode.GGUF_BASE_MISMATCH,
      `${base.label}: ${tensor} is stored in llama.cpp's q/k/v row order, but ${order}`,
      {
        path: tensor,
        received: { nHead: base.nHead, nHeadKv: base.nHeadKv },
      },
    );
  return {
    module: m,
    tensor,
    ...(heads !== undefined ? { heads } : {}),
    ...(order !== undefined ? { rowOrder: order } : {}),
  };
}

/** Names, presence, shapes and permutation of every module, all before writing. */
function moduleJobs(a: VeraAdapter, base: GgufLoraBase, mapping: GgufNameMapping | undefined): GgufLoraJob[] {
  const unnamed: string[] = [];
  const absent: string[] = [];
  const jobs: GgufLoraJob[] = [];
  const seen = new Map<string, string>();
  for (const m of a.modules) {
    const j = moduleJob(m, base, mapping, seen);
    if ("unnamed" in j) unnamed.push(j.unnamed);
    else if ("absent" in j) absent.push(j.absent);
    else jobs.push(j);
  }
  if (unnamed.length || absent.length)
    throw fail(
      GgufErrorCode.GGUF_MODULE_UNSUPPORTED,
      `llama.cpp cannot adapt ${unnamed.length + absent.length} module(s): ` +
        [
          unnamed.length ? `no ${base.architecture} tensor name for ${unnamed.join(", ")} (give a mapping file)` : "",
          absent.length ? `not a tensor of the base: ${absent.join(", ")}` : "",
        ]
          .filter(Boolean)
          .join("; "),
      { path: (unnamed[0] ?? absent[0])!, received: [...unnamed, ...absent] },
    );
  return jobs;
}

/** Refuse q8_0 rows that are not whole 32-element blocks. */
function checkQuantBlocks(jobs: GgufLoraJob[], type: GgufFloatOutType, k: number): void {
  if (type === "q8_0")
    for (const j of jobs)
      for (const [what, len] of [
        ["lora_a", j.module.inFeatures],
        ["lora_b", k],
      ] as const)
        if (len % 32 !== 0)
          throw fail(
            GgufErrorCode.GGUF_QUANT_BLOCK,
            `q8_0 needs rows of whole 32-element blocks: ${j.tensor}.${what} rows hold ${len} (${
              what === "lora_a" ? "in_features" : "the rank"
            }); use f16, bf16 or f32`,
            { path: `${j.tensor}.${what}`, expected: "multiple of 32", received: len },
          );
}

/** The GGUF metadata of the adapter file. */
function loraMetadata(
  architecture: string,
  name: string | undefined,
  k: number,
  type: GgufFloatOutType,
): [string, GgufValue][] {
  return [
    ["general.architecture", { type: GgufValueType.STRING, value: architecture }],
    ["general.type", { type: GgufValueType.STRING, value: "adapter" }],
    ["adapter.type", { type: GgufValueType.STRING, value: "lora" }],
    ...(name !== undefined
      ? ([["general.name", { type: GgufValueType.STRING, value: name }]] as [string, GgufValue][])
      : []),
    ["adapter.lora.alpha", { type: GgufValueType.FLOAT32, value: k }],
    ["general.quantization_version", { type: GgufValueType.UINT32, value: 2 }],
    ["general.file_type", { type: GgufValueType.UINT32, value: FILE_TYPE[type] }],
  ];
}

/** The `tensorBytes` of the stream: tensor `i` of the plan from the LoRA expansion, permuted and encoded. */
function tensorBytesOf(
  stream: LoraExpansionStream,
  plan: GgufPlan,
  jobs: GgufLoraJob[],
  k: number,
  type: GgufFloatOutType,
): (i: number) => Uint8Array {
  const index = new Map(stream.tensors.map((t, i) => [t.name, i]));
  return (i: number): Uint8Array => {
    const job = jobs[i >> 1];
    if (!job || i < 0 || i >= plan.tensors.length) throw new RangeError(`tensorBytes: no tensor ${i}`);
    const isA = (i & 1) === 0;
    const src = `base_model.model.${job.module.name}.lora_${isA ? "A" : "B"}.weight`;
    const si = index.get(src)!;
    const bytes = new Uint8Array(stream.tensors[si]!.byteLength);
    stream.fill(si, bytes);
    let values: Float32Array = new Float32Array(bytes.buffer, 0, bytes.byteLength / 4);
    if (!isA && job.heads !== undefined)
      values = permuteQkRows({ data: values, rows: job.module.outFeatures, rowLength: k, nHead: job.heads });
    if (!isA && job.rowOrder !== undefined) values = reorderRows(values, job.rowOrder, k, true);
    return encodeTensor(values, isA ? job.module.inFeatures : k, type, plan.tensors[i]!.name);
  };
}

/** The report of the GGUF LoRA from the expansion's report. */
function ggufLoraReport(
  r: ExpandToLoraReport,
  architecture: string,
  jobs: GgufLoraJob[],
  k: number,
  type: GgufFloatOutType,
  dropped: string[],
): GgufLoraReport {
  const byName = new Map(r.modules.map((m) => [m.name, m]));
  return {
    architecture,
    rank: k,
    alpha: k,
    type,
    exact: r.exact,
    totalRelativeError: r.totalRelativeError,
    modules: jobs.map((j) => ({
      module: j.module.name,
      tensor: j.tensor,
      ...(j.heads !== undefined ? { permutedHeads: j.heads } : {}),
      rank: k,
      relativeError: byName.get(j.module.name)?.relativeError ?? NaN,
    })),
    dropped,
  };
}

/**
 * Plan a GGUF v3 LoRA adapter as llama.cpp's convert_lora_to_gguf.py writes it, from a VeRA adapter:
 * general.architecture (the base's), general.type "adapter", adapter.type "lora", adapter.lora.alpha
 * (f32, = rank so the scale is 1), tensors `<base tensor>.lora_a` (ggml [n_in, r]) and `.lora_b`
 * ([r, n_out]), with llama.cpp's q/k row permutation applied to lora_b of llama's attn_q / attn_k.
 * Everything is checked before any byte is produced: architecture known (or a mapping), every module
 * named and present in a GGUF base with its shape, the rank, q8_0 block sizes.
 */
export function exportGgufLoraStream(params: ExportGgufLoraParams): GgufLoraStream {
  const { base } = params;
  const type = params.type ?? "f32";
  checkTarget(params, type);
  const { adapter: a, dropped } = refuseCarriedTensors({
    adapter: params.adapter,
    target: "a llama.cpp GGUF LoRA adapter",
    ...(params.dropCarried !== undefined ? { dropCarried: params.dropCarried } : {}),
  });
  const stream = expandToLoraStream({ adapter: a, ...(params.rank !== undefined ? { rank: params.rank } : {}) });
  const k = params.rank ?? a.rank;
  const jobs = moduleJobs(a, base, params.mapping);
  checkQuantBlocks(jobs, type, k);
  const ggmlType = ggmlTypeOf(type);
  const plan = planGguf({
    metadata: loraMetadata(base.architecture, params.name, k, type),
    tensors: jobs.flatMap((j) => [
      { name: `${j.tensor}.lora_a`, type: ggmlType, ne: [j.module.inFeatures, k] },
      { name: `${j.tensor}.lora_b`, type: ggmlType, ne: [k, j.module.outFeatures] },
    ]),
  });
  const tensorBytes = tensorBytesOf(stream, plan, jobs, k, type);
  const report = (): GgufLoraReport => ggufLoraReport(stream.report(), base.architecture, jobs, k, type, dropped);
  return { plan, tensorBytes, report };
}

/** {@link exportGgufLoraStream} into one in-memory file: the GGUF bytes and the report. */
export function exportGgufLora(params: ExportGgufLoraParams): { bytes: Uint8Array; report: GgufLoraReport } {
  const s = exportGgufLoraStream(params);
  const bytes = new Uint8Array(s.plan.size);
  bytes.set(s.plan.header, 0);
  s.plan.tensors.forEach((t, i) => bytes.set(s.tensorBytes(i), t.position));
  return { bytes, report: s.report() };
}

import { VeraError } from "../errors.js";
import type { VeraAdapter } from "../format/types.js";
import { projectionsFor } from "../projections/for-adapter.js";
import { bytesOf } from "../safetensors/write.js";
import { PeftErrorCode } from "./error-codes.js";
import { targetModulesFor } from "./export-peft.js";
import {
  compareVersions,
  DEFAULT_PEFT_VERSION,
  LORA_CONFIG_FIELDS_0_11,
  MODEL_PREFIX,
  parseConfigText,
  parsePeftVersion,
  peftOrigin,
  layoutTorchSafetensors,
  type PeftVersion,
  type TensorSpec,
} from "./internal.js";
import { bestRankK } from "./low-rank.js";
import { dumpsPy, isPyNumber, pyFloat, pyInt, pyNumberValue, type PyJson, type PyObject } from "./py-json.js";
import { isPveraSamplingTensor } from "./pvera-keys.js";

/** Parameters of {@link expandToLora}. */
export interface ExpandToLoraParams {
  adapter: VeraAdapter;
  /**
   * LoRA rank. Equal to the VeRA rank r (the default) the expansion is exact:
   * lora_A = d[:, None] * A[:, :in], lora_B = b[:, None] * B[:out, :], lora_alpha = r (scaling 1), GEMM-free.
   * Below r each module's delta is replaced by its best rank-k approximation (QR + small SVD, float64).
   * @default adapter.rank
   */
  rank?: number;
  /**
   * Per-module ranks by full module path (written to the config as rank_pattern / alpha_pattern).
   * @default {}
   */
  rankPattern?: Record<string, number>;
  /**
   * Oldest PEFT version that must load the result: fields it would reject are left out of the config.
   * @default "0.21.0"
   */
  peftCompat?: string;
  /**
   * Write the tensors at this larger rank (the config's r and lora_alpha), padding lora_A with zero rows and lora_B with
   * zero columns: the delta is unchanged (exactly), for engines that take a fixed set of ranks. Not with `rankPattern`.
   * @default the rank
   */
  padRank?: number;
}

/** Per-module result of the expansion. */
export interface LoraModuleReport {
  name: string;
  rank: number;
  /** ||delta - lora delta||_F / ||delta||_F (0 when exact; 0 for an all-zero delta). */
  relativeError: number;
}

/** What {@link expandToLora} did. */
export interface ExpandToLoraReport {
  /** The LoRA config's r. */
  rank: number;
  /** True when every module kept the full VeRA rank (exact in float32). */
  exact: boolean;
  modules: LoraModuleReport[];
  /** sqrt(sum of discarded energy / total energy) over all modules. */
  totalRelativeError: number;
  /** Tensors carried over unchanged (modules_to_save, biases). */
  carriedTensors: string[];
  droppedFields: string[];
  warnings: string[];
}

/** Result of {@link expandToLora}: the two files of a PEFT LoRA adapter folder. */
export interface ExpandToLoraResult {
  configJson: string;
  safetensors: Uint8Array;
  report: ExpandToLoraReport;
}

function loraConfig(a: VeraAdapter, rank: number, warnings: string[]): PyObject {
  const origin = peftOrigin(a);
  const vera = origin ? parseConfigText(origin.adapter_config, "adapter.extra.peft.adapter_config") : undefined;
  const t = a.training ?? {};
  const get = (k: string): PyJson | undefined => vera?.get(k);
  const bias = (get("bias") as string | undefined) ?? (typeof t["bias"] === "string" ? (t["bias"] as string) : "none");
  const dropout = get("vera_dropout");
  const taskType = get("task_type") ?? (typeof t["task_type"] === "string" ? (t["task_type"] as string) : null);
  const modulesToSave: PyJson =
    get("modules_to_save") ??
    (Array.isArray(t["modules_to_save"])
      ? (t["modules_to_save"] as string[]).filter((x) => typeof x === "string")
      : null);
  return new Map<string, PyJson>([
    ["alora_invocation_tokens", null],
    ["alpha_pattern", new Map()],
    ["arrow_config", null],
    ["auto_mapping", get("auto_mapping") ?? null],
    [
      "base_model_name_or_path",
      a.baseModel?.id ?? (typeof get("base_model_name_or_path") === "string" ? get("base_model_name_or_path")! : null),
    ],
    ["bias", bias === "vera_only" ? "lora_only" : bias === "all" ? "all" : "none"],
    ["corda_config", null],
    ["ensure_weight_tying", false],
    ["eva_config", null],
    ["exclude_modules", null],
    ["fan_in_fan_out", a.modules.some((m) => m.layout === "conv1d")],
    ["inference_mode", true],
    ["init_lora_weights", true],
    ["kasa_config", null],
    ["layer_replication", null],
    ["layers_pattern", get("layers_pattern") ?? null],
    ["layers_to_transform", get("layers_to_transform") ?? null],
    ["loftq_config", new Map()],
    ["lora_alpha", pyInt(rank)],
    ["lora_bias", false],
    [
      "lora_dropout",
      dropout !== undefined && dropout !== null && isPyNumber(dropout)
        ? pyFloat(pyNumberValue(dropout))
        : pyFloat(typeof t["vera_dropout"] === "number" ? (t["vera_dropout"] as number) : 0),
    ],
    ["lora_ga_config", null],
    ["megatron_config", null],
    ["megatron_core", "megatron.core"],
    ["modules_to_save", modulesToSave],
    ["monteclora_config", null],
    ["peft_type", "LORA"],
    ["peft_version", DEFAULT_PEFT_VERSION],
    ["qalora_group_size", pyInt(16)],
    ["r", pyInt(rank)],
    ["rank_pattern", new Map()],
    ["revision", a.baseModel?.revision ?? (typeof get("revision") === "string" ? get("revision")! : null)],
    ["target_modules", targetModulesFor(a, get("target_modules"), warnings)],
    ["target_parameters", null],
    ["task_type", taskType],
    ["trainable_token_indices", null],
    ["use_bdlora", null],
    ["use_dora", false],
    ["use_qalora", false],
    ["use_rslora", false],
    ["velora_config", null],
  ]);
}

/** ||diag(b) B[:out] diag(d) A[:, :in]||_F^2 in float64 through r x r Gram matrices. */
function deltaEnergy(a: VeraAdapter, m: VeraAdapter["modules"][number], A: Float32Array, B: Float32Array): number {
  const r = a.rank;
  const gl = new Float64Array(r * r);
  for (let i = 0; i < m.outFeatures; i++) {
    const b2 = m.lambdaB[i]! * m.lambdaB[i]!;
    for (let x = 0; x < r; x++) {
      const bx = b2 * B[i * r + x]!;
      for (let y = 0; y < r; y++) gl[x * r + y] += bx * B[i * r + y]!;
    }
  }
  let e = 0;
  for (let x = 0; x < r; x++)
    for (let y = 0; y < r; y++) {
      let s = 0;
      for (let j = 0; j < m.inFeatures; j++) s += A[x * a.maxIn + j]! * A[y * a.maxIn + j]!;
      e += gl[x * r + y]! * m.lambdaD[x]! * m.lambdaD[y]! * s;
    }
  return e;
}

/** One tensor of a streamed LoRA file, in file order. */
export interface LoraStreamTensor {
  name: string;
  byteLength: number;
}

/**
 * A LoRA expansion that is computed tensor by tensor, so a file larger than memory (a Llama-2-7B all-linear
 * r=1024 expansion is ~10 GB) can be written with one tensor in memory at a time.
 */
export interface LoraExpansionStream {
  /** adapter_config.json text. */
  configJson: string;
  /** The start of adapter_model.safetensors: 8-byte length and the JSON header. Tensor bytes follow in `tensors` order. */
  header: Uint8Array;
  /** Total file size in bytes. */
  size: number;
  tensors: LoraStreamTensor[];
  /** Write tensor `index`'s little-endian bytes into `target` (exactly byteLength bytes). Any order; each once. */
  fill(index: number, target: Uint8Array): void;
  /** The report; its errors are complete once every tensor was filled. */
  report(): ExpandToLoraReport;
}

type Module = VeraAdapter["modules"][number];

/** What a tensor of the file is made from: a module's lora_A or lora_B, or a carried tensor's bytes. */
type LoraJob = { kind: "A" | "B"; module: Module } | { kind: "extra"; data: Uint8Array };

/** The checked ranks: the LoRA rank, the rank the tensors are written at, and each module's rank. */
interface LoraRanks {
  rank: number;
  padRank: number;
  ranks: Map<string, number>;
}

/** Check `rank`, `rankPattern` and `padRank` against the adapter and each other. */
function checkedRanks(params: ExpandToLoraParams): LoraRanks {
  const a = params.adapter;
  const rank = params.rank ?? a.rank;
  const checkRank = (k: number, where: string) => {
    if (!Number.isSafeInteger(k) || k < 1 || k > a.rank)
      throw new VeraError(
        PeftErrorCode.PEFT_LORA_RANK,
        `${where}: LoRA rank must be an integer in [1, ${a.rank}] (the VeRA rank), found ${k}`,
        {
          path: where,
          expected: `1..${a.rank}`,
          received: k,
        },
      );
  };
  checkRank(rank, "rank");
  const pattern = params.rankPattern ?? {};
  const names = new Set(a.modules.map((m) => m.name));
  for (const [k, v] of Object.entries(pattern)) {
    if (!names.has(k))
      throw new VeraError(
        PeftErrorCode.PEFT_LORA_RANK,
        `rankPattern names "${k}", which is not a module of the adapter`,
        { path: `rankPattern/${k}`, received: k },
      );
    checkRank(v, `rankPattern/${k}`);
  }
  const padRank = params.padRank ?? rank;
  if (!Number.isSafeInteger(padRank) || padRank < rank)
    throw new VeraError(
      PeftErrorCode.PEFT_LORA_RANK,
      `padRank must be an integer >= the rank ${rank}, found ${padRank}`,
      {
        path: "padRank",
        expected: `>= ${rank}`,
        received: padRank,
      },
    );
  if (padRank !== rank && Object.keys(pattern).length > 0)
    throw new VeraError(PeftErrorCode.PEFT_LORA_RANK, "padRank and rankPattern exclude each other", {
      path: "padRank",
    });
  return { rank, padRank, ranks: new Map(a.modules.map((m) => [m.name, pattern[m.name] ?? rank])) };
}

/** The config's rank_pattern (the modules whose rank differs from r), refused before PEFT 0.7. */
function rankPatternOf(a: VeraAdapter, r: LoraRanks, compat: PeftVersion): PyObject {
  const rankPattern: PyObject = new Map();
  for (const m of a.modules) if (r.ranks.get(m.name)! !== r.rank) rankPattern.set(m.name, pyInt(r.ranks.get(m.name)!));
  if (compareVersions(compat, { major: 0, minor: 7 }) < 0 && rankPattern.size > 0)
    throw new VeraError(
      PeftErrorCode.PEFT_COMPAT,
      `per-module ranks need rank_pattern, which PEFT ${compat.text} does not have (>= 0.7)`,
      { path: "peftCompat", received: compat.text },
    );
  return rankPattern;
}

/** The LoRA config fitted to the compatibility target, and the fields dropped for it. */
function expansionConfig(
  a: VeraAdapter,
  padRank: number,
  rankPattern: PyObject,
  compat: PeftVersion,
  peftCompat: string | undefined,
  warnings: string[],
): { cfg: PyObject; dropped: string[] } {
  const cfg = loraConfig(a, padRank, warnings);
  if (rankPattern.size > 0) {
    cfg.set("rank_pattern", rankPattern);
    cfg.set("alpha_pattern", new Map([...rankPattern].map(([k, v]) => [k, v])));
  }
  const dropped: string[] = [];
  if (compareVersions(compat, { major: 0, minor: 18 }) < 0) {
    cfg.delete("peft_version");
    dropped.push("peft_version");
  } else if (peftCompat !== undefined) cfg.set("peft_version", compat.text);
  if (compareVersions(compat, { major: 0, minor: 14 }) < 0)
    for (const key of [...cfg.keys()])
      if (!LORA_CONFIG_FIELDS_0_11.has(key)) {
        cfg.delete(key);
        dropped.push(key);
      }
  return { cfg, dropped };
}

/** The safetensors layout: the header, the tensors in file order, what each is made from, the carried ones. */
function expansionLayout(
  a: VeraAdapter,
  r: LoraRanks,
): { header: Uint8Array; size: number; tensors: LoraStreamTensor[]; jobs: Map<string, LoraJob>; carried: string[] } {
  const jobs = new Map<string, LoraJob>();
  const specs: TensorSpec[] = [];
  const carried: string[] = [];
  for (const m of a.modules) {
    const k = r.padRank !== r.rank ? r.padRank : r.ranks.get(m.name)!;
    const nA = `${MODEL_PREFIX}${m.name}.lora_A.weight`;
    const nB = `${MODEL_PREFIX}${m.name}.lora_B.weight`;
    specs.push(
      { name: nA, dtype: "F32", shape: [k, m.inFeatures] },
      { name: nB, dtype: "F32", shape: [m.outFeatures, k] },
    );
    jobs.set(nA, { kind: "A", module: m });
    jobs.set(nB, { kind: "B", module: m });
  }
  // PVeRA's sampling-only halves are not part of the function a LoRA holds
  for (const t of (a.extraTensors ?? []).filter((x) => !isPveraSamplingTensor(x.name))) {
    if (jobs.has(t.name))
      throw new VeraError(
        PeftErrorCode.PEFT_TENSOR_UNEXPECTED,
        `extra tensor "${t.name}" collides with a LoRA tensor`,
        { path: t.name },
      );
    specs.push({ name: t.name, dtype: t.dtype, shape: t.shape });
    jobs.set(t.name, { kind: "extra", data: t.data });
    carried.push(t.name);
  }
  const layout = layoutTorchSafetensors(specs, { format: "pt" });
  const order = [...layout.offsets].sort((x, y) => x[1] - y[1]);
  const tensors: LoraStreamTensor[] = order.map(([name], i) => ({
    name,
    byteLength: (i + 1 < order.length ? order[i + 1]![1] : layout.size) - order[i]![1],
  }));
  return { header: layout.header, size: layout.size, tensors, jobs, carried };
}

/** The numbers of an expansion, computed lazily: the projections, pending low-rank factors, errors so far. */
interface ExpansionNumbers {
  adapter: VeraAdapter;
  proj?: { A: Float32Array; B: Float32Array };
  /** Low-rank factors of a module until both its tensors were filled. */
  approx: Map<string, { A: Float64Array; B: Float64Array; kk: number; pending: number }>;
  moduleReports: Map<string, LoraModuleReport>;
  /** Total and discarded energy of the low-rank modules. */
  total: number;
  discarded: number;
}

/** The adapter's projections, generated on first use. */
function projectionsOf(n: ExpansionNumbers): { A: Float32Array; B: Float32Array } {
  return (n.proj ??= projectionsFor(n.adapter));
}

/** The best rank-k factors of module `m`'s delta, computed once for its two tensors. */
function lowRankFactors(n: ExpansionNumbers, m: Module, k: number) {
  const a = n.adapter;
  let e = n.approx.get(m.name);
  if (!e) {
    const { A, B } = projectionsOf(n);
    const r = a.rank;
    const left = new Float64Array(m.outFeatures * r);
    for (let i = 0; i < m.outFeatures; i++) for (let j = 0; j < r; j++) left[i * r + j] = m.lambdaB[i]! * B[i * r + j]!;
    const right = new Float64Array(r * m.inFeatures);
    for (let i = 0; i < r; i++)
      for (let j = 0; j < m.inFeatures; j++) right[i * m.inFeatures + j] = m.lambdaD[i]! * A[i * a.maxIn + j]!;
    const res = bestRankK({ left, right, m: m.outFeatures, r, n: m.inFeatures, k });
    e = { A: res.A, B: res.B, kk: res.A.length / m.inFeatures, pending: 2 };
    n.approx.set(m.name, e);
    n.total += res.totalEnergy;
    n.discarded += res.discardedEnergy;
    n.moduleReports.set(m.name, {
      name: m.name,
      rank: k,
      relativeError: res.totalEnergy > 0 ? Math.sqrt(res.discardedEnergy / res.totalEnergy) : 0,
    });
  }
  return e;
}

/**
 * Write lora_A or lora_B of a module at rank `k` into `out`, whose rows of lora_B are `width` long (the
 * rank, or padRank with `out` zeroed beyond the rank).
 */
function fillModuleTensor(
  n: ExpansionNumbers,
  job: { kind: "A" | "B"; module: Module },
  k: number,
  width: number,
  out: Float32Array,
): void {
  const a = n.adapter;
  const m = job.module;
  const r = a.rank;
  if (k === r) {
    // exact: row scaling only (float32 products of float32 values, rounded once, as torch does)
    const { A, B } = projectionsOf(n);
    if (job.kind === "A") {
      const inF = m.inFeatures;
      for (let i = 0; i < r; i++) {
        const d = m.lambdaD[i]!;
        const src = i * a.maxIn;
        const dst = i * inF;
        for (let j = 0; j < inF; j++) out[dst + j] = d * A[src + j]!;
      }
    } else {
      for (let i = 0; i < m.outFeatures; i++) {
        const b = m.lambdaB[i]!;
        const o = i * r;
        const w = i * width;
        for (let j = 0; j < r; j++) out[w + j] = b * B[o + j]!;
      }
    }
    if (!n.moduleReports.has(m.name)) n.moduleReports.set(m.name, { name: m.name, rank: k, relativeError: 0 });
  } else {
    const e = lowRankFactors(n, m, k);
    out.fill(0);
    if (job.kind === "A") out.set(e.A);
    else for (let i = 0; i < m.outFeatures; i++) for (let c = 0; c < e.kk; c++) out[i * width + c] = e.B[i * e.kk + c]!;
    if (--e.pending === 0) n.approx.delete(m.name);
  }
}

/** The report from the numbers computed so far. */
function expansionReport(
  n: ExpansionNumbers,
  r: LoraRanks,
  carried: string[],
  dropped: string[],
  warnings: string[],
): ExpandToLoraReport {
  const a = n.adapter;
  const modules = a.modules.map(
    (m) => n.moduleReports.get(m.name) ?? { name: m.name, rank: r.ranks.get(m.name)!, relativeError: NaN },
  );
  let tot = n.total;
  if (modules.some((x) => x.rank !== a.rank)) {
    // relative to all modules' energy: add ||delta||_F^2 of the exact ones (trace of (L^T L)(R R^T), O((out + in) r^2))
    const { A, B } = projectionsOf(n);
    for (const m of a.modules) if (r.ranks.get(m.name)! === a.rank) tot += deltaEnergy(a, m, A, B);
  }
  return {
    rank: r.padRank,
    exact: modules.every((x) => x.rank === a.rank),
    modules,
    totalRelativeError: tot > 0 ? Math.sqrt(n.discarded / tot) : 0,
    carriedTensors: carried,
    droppedFields: dropped.sort(),
    warnings,
  };
}

/**
 * The streaming form of {@link expandToLora}: the config, the header and a `fill` per tensor. Validation
 * (ranks, compatibility target) happens here, before any byte is produced.
 */
export function expandToLoraStream(params: ExpandToLoraParams): LoraExpansionStream {
  const a = params.adapter;
  const r = checkedRanks(params);
  const compat = parsePeftVersion(params.peftCompat ?? DEFAULT_PEFT_VERSION);
  const rankPattern = rankPatternOf(a, r, compat);
  const warnings: string[] = [];
  const { cfg, dropped } = expansionConfig(a, r.padRank, rankPattern, compat, params.peftCompat, warnings);
  const { header, size, tensors, jobs, carried } = expansionLayout(a, r);
  const n: ExpansionNumbers = { adapter: a, approx: new Map(), moduleReports: new Map(), total: 0, discarded: 0 };
  const fill = (index: number, target: Uint8Array): void => {
    const t = tensors[index];
    if (!t || target.byteLength !== t.byteLength)
      throw new RangeError(`fill: bad tensor index ${index} or target size`);
    const job = jobs.get(t.name)!;
    if (job.kind === "extra") {
      target.set(job.data);
      return;
    }
    const k = r.ranks.get(job.module.name)!;
    // columns of lora_B (rows of lora_A) in the file: the rank, or padRank with zeros beyond the rank
    const width = r.padRank !== r.rank ? r.padRank : k;
    const aligned = target.byteOffset % 4 === 0;
    const out = aligned
      ? new Float32Array(target.buffer, target.byteOffset, t.byteLength / 4)
      : new Float32Array(t.byteLength / 4);
    if (width !== k) out.fill(0);
    fillModuleTensor(n, job, k, width, out);
    if (!aligned) target.set(bytesOf(out));
  };
  const report = (): ExpandToLoraReport => expansionReport(n, r, carried, dropped, warnings);
  return { configJson: dumpsPy(cfg), header, size, tensors, fill, report };
}

/**
 * Turn a VeRA adapter into an equivalent PEFT LoRA adapter (what vLLM, TGI, llama.cpp, onnxruntime-genai
 * and Olive load). At the full rank it is exact in float32 and needs no matrix product (only row scaling):
 * lora_A = d[:, None] * A[:, :in], lora_B = b[:, None] * B[:out, :], r = lora_alpha = VeRA r, same modules
 * and fan_in_fan_out. With a smaller `rank`, each module gets the best rank-k approximation of its delta and
 * the report gives the relative Frobenius error per module and in total. The whole file is built in memory;
 * use {@link expandToLoraStream} for outputs larger than memory.
 */
export function expandToLora(params: ExpandToLoraParams): ExpandToLoraResult {
  const s = expandToLoraStream(params);
  const bytes = new Uint8Array(s.size);
  bytes.set(s.header, 0);
  let pos = s.header.length;
  s.tensors.forEach((t, i) => {
    s.fill(i, bytes.subarray(pos, pos + t.byteLength));
    pos += t.byteLength;
  });
  return { configJson: s.configJson, safetensors: bytes, report: s.report() };
}

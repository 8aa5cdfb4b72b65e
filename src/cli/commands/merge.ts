import { isVeraError, VeraError } from "../../errors.js";
import { HubErrorCode } from "../../hub/errors.js";
import { findCachedSnapshot } from "../../hub/node/find-cached-snapshot.js";
import { parseRepoRef } from "../../hub/parse-repo-ref.js";
import { createNodeBackend } from "../../compute/node/create-node-backend.js";
import {
  mergeModelIter,
  MergeErrorCode,
  modelContainerOf,
  type MergeEvent,
  type MergeReport,
} from "../../merge/index.js";
import { readFileBytes } from "../../node/files.js";
import { listLinearWeights, readOnnxModel } from "../../onnx/index.js";
import { promises as fsp } from "node:fs";
import { availableParallelism } from "node:os";
import { cliOptions, intOption } from "../options.js";
import { UsageError, type CliContext, type Command } from "../command.js";

const command: Command = {
  name: "merge",
  summary: "Merge a VeRA adapter into an ONNX model, safetensors checkpoint or GGUF model",
  description:
    "Merge a VeRA adapter (verakit file or PEFT folder) into an ONNX model, a safetensors checkpoint (a transformers " +
    "folder, sharded or not, or one .safetensors file; -o names the output folder or file; or a Hub repo id ORG/MODEL[@REVISION] " +
    "already in the local Hugging Face cache (HF_HUB_CACHE, else HF_HOME/hub), read offline) or a GGUF model file (F32/F16/BF16 " +
    "weights): only the adapted weights' bytes change, and the tensors the adapter carries (modules_to_save heads, " +
    "trainable biases) replace the model's (refused by name when one cannot be placed). --mapping FILE.json (one format " +
    'for every container: {"modules": {MODULE: TENSOR | {"initializer": TENSOR, "layout", "outRange"}}}) places modules ' +
    "the automatic matching does not find. " +
    "A split GGUF (llama.cpp's gguf-split parts NAME-00001-of-0000N.gguf, ...) is given by any part, the others beside it; " +
    "-o is then a folder (the parts keep their names) or PREFIX-00001-of-0000N.gguf (the same N: the parts become " +
    "PREFIX-0000k-of-0000N.gguf); every part is written. " +
    "With --dry-run, print which initializer each module goes to (with only MODEL, list the model's Linear weights). " +
    "--in-place rewrites only the adapted weights' byte ranges of the model's own files (an ONNX model whose weights are " +
    "inside the .onnx gets a new .onnx); the original bytes go first to an undo journal beside the model, so a failed or " +
    "cancelled merge puts them back, and after a crash `vera recover MODEL` does. " +
    "--threads sets the CPU backend's threads (default: all cores but one, which the copy of the data files uses; all cores with --in-place).",
  usage:
    "vera merge MODEL.onnx|CHECKPOINT_DIR|MODEL.safetensors|ORG/MODEL[@REV]|MODEL.gguf|MODEL-00001-of-0000N.gguf ADAPTER -o OUT [--backend auto|ort-cpu|ort-cuda|webgpu|ort-webgpu|reference] " +
    "[--threads N] [--dry-run] [--in-place] [--mapping FILE.json] [--untie] [--skip-missing] [--adapter-name NAME] [--memory MiB] [--no-fsync] [--json]",
  options: {
    ...cliOptions({
      strings: ["output", "backend", "threads", "mapping", "adapter-name", "memory"],
      flags: ["dry-run", "in-place", "no-fsync", "skip-missing", "untie"],
    }),
  },
  async run({ values, positionals }, ctx) {
    const [given, adapter, ...rest] = positionals;
    if (!given) throw new UsageError("expected MODEL.onnx");
    if (rest.length > 0) throw new UsageError(`unexpected arguments: ${rest.join(" ")}`);
    const dryRun = values["dry-run"] === true;
    const inPlace = values["in-place"] === true;
    const output = values.output as string | undefined;
    const hubRef = given.endsWith(".onnx") ? undefined : await asHubRef(given);
    if (hubRef && inPlace) throw new UsageError("--in-place cannot change a model in the Hub cache; give -o OUT");
    const model = hubRef ? await cachedModel(given, hubRef, ctx) : given;
    // the container, from the model's content (a folder is a checkpoint, a file by its magic bytes)
    const container = await modelContainerOf(model);
    const onnx = container === "onnx";
    if (!adapter) {
      if (!dryRun) throw new UsageError("expected ADAPTER (a verakit file or a PEFT adapter folder)");
      if (!onnx) throw new UsageError("listing a model's weights (--dry-run without ADAPTER) needs an .onnx model");
      return listWeights(model, ctx);
    }
    const gguf = container === "gguf";
    if (!onnx && values.untie === true) throw new UsageError("--untie applies to ONNX models only");
    if (gguf && values["skip-missing"] === true) throw new UsageError("--skip-missing does not apply to GGUF models");
    if (!dryRun && !inPlace && !output)
      throw new UsageError("give -o OUT.onnx, or --in-place to replace the model's files");
    if (inPlace && output) throw new UsageError("--in-place and -o exclude each other");
    const memoryMiB = intOption(values, "memory");
    // A merge into new files runs a kernel copy of the data files beside the GEMMs: leaving it one core
    // measured faster than giving onnxruntime every core (bench/RESULTS.md). In place, nothing is copied.
    const threads = intOption(values, "threads") ?? (inPlace ? undefined : Math.max(1, availableParallelism() - 1));
    const backend = dryRun
      ? undefined
      : await createNodeBackend({
          name: (values.backend as string | undefined) ?? "auto",
          ...(threads !== undefined ? { threads } : {}),
          // the GEMMs on a worker thread overlap the reads, journal and writes (VERA_MERGE_WORKER=0 keeps them here)
          worker: ctx.env["VERA_MERGE_WORKER"] !== "0",
        });
    const ac = new AbortController();
    let interrupts = 0;
    const onSigint = (): void => {
      interrupts++;
      if (interrupts === 1) {
        ctx.err(
          inPlace
            ? `\nvera: cancelling (Ctrl-C again to quit at once, then run \`vera recover ${model}\`); putting the original bytes back...`
            : "\nvera: cancelling (Ctrl-C again to quit at once); removing temporary files...",
        );
        ac.abort();
      } else process.exit(130); // the merge's exit hook removes temporary files; in place, the undo journal stays
    };
    process.on("SIGINT", onSigint);
    const bar = ctx.isTTY && !ctx.json ? new ProgressBar(ctx) : undefined;
    let report: MergeReport | undefined;
    try {
      const common = {
        model,
        adapter,
        inPlace,
        dryRun,
        signal: ac.signal,
        durable: values["no-fsync"] !== true,
        skipMissing: values["skip-missing"] === true,
        ...(output ? { output } : {}),
        ...(backend ? { backend } : {}),
        ...(values["adapter-name"] ? { adapterName: values["adapter-name"] as string } : {}),
        ...(memoryMiB ? { memoryBudget: memoryMiB * 1024 * 1024 } : {}),
      };
      const it = mergeModelIter({
        ...common,
        container,
        untie: values.untie === true,
        ...(values.mapping ? { mapping: values.mapping as string } : {}),
      });
      for (;;) {
        const r = await it.next();
        if (r.done) {
          report = r.value;
          break;
        }
        bar?.update(r.value);
        if (!ctx.json && !bar && r.value.type === "planned" && !dryRun)
          ctx.err(
            `merging ${r.value.report.modules.length} modules into ${r.value.tensors} weights (${fmtBytes(r.value.bytesTotal)} to process)...`,
          );
      }
    } catch (e) {
      bar?.clear();
      if (isVeraError(e) && e.code === MergeErrorCode.MERGE_ABORTED) {
        if (ctx.json) ctx.out(JSON.stringify({ ok: false, error: e.toJSON() }, null, 2));
        else ctx.err(`vera: ${e.message}`);
        // A kernel copy may still be running in the background (its file is already unlinked):
        // do not wait for it to finish before exiting.
        setTimeout(() => process.exit(130), 100).unref();
        return 130;
      }
      throw e;
    } finally {
      process.off("SIGINT", onSigint);
      await backend?.dispose?.();
    }
    bar?.clear();
    if (ctx.json) {
      ctx.out(JSON.stringify({ ok: true, ...report, backendInfo: backend?.info ?? null }, null, 2));
      return 0;
    }
    printReport(ctx, report, backend?.info?.device);
    printSkipped(ctx, backend?.info?.skipped);
    return 0;
  },
};

/**
 * `ORG/MODEL[@REVISION]` when `arg` is no local path and reads as a Hub repo reference (a local
 * file or folder of that name wins).
 */
async function asHubRef(arg: string): Promise<{ repo: string; revision?: string } | undefined> {
  if (!/^[^./@][^/@]*\/[^/@]+(@.+)?$/.test(arg)) return undefined;
  if (
    await fsp.stat(arg).then(
      () => true,
      () => false,
    )
  )
    return undefined;
  return parseRepoRef({ ref: arg, where: "MODEL" });
}

/** The Hub cache snapshot folder of `ref`; a miss names both places looked at (the path, the cache). */
async function cachedModel(given: string, ref: { repo: string; revision?: string }, ctx: CliContext): Promise<string> {
  try {
    const found = await findCachedSnapshot({
      repo: ref.repo,
      ...(ref.revision !== undefined ? { revision: ref.revision } : {}),
      env: ctx.env,
    });
    return found.snapshotPath;
  } catch (e) {
    if (!isVeraError(e) || e.code !== HubErrorCode.HUB_OFFLINE_MISS) throw e;
    throw new VeraError(e.code, `${given} is no local file or folder, and ${e.message}`, {
      ...(e.path !== undefined ? { path: e.path } : {}),
      expected: e.expected,
      received: e.received,
      cause: e,
    });
  }
}

/** Which backends `auto` (or a fallback) passed over, one short reason each; `vera backends` has the details. */
function printSkipped(ctx: CliContext, skipped: Array<{ name: string; reason: string }> | undefined): void {
  if (!skipped?.length) return;
  const short = (r: string) =>
    r
      .replace(/^WebGPU backend unavailable: /, "")
      .split(/[;(]/)[0]!
      .trim();
  ctx.out(
    `skipped ${skipped.map((s) => `${s.name} (${short(s.reason)})`).join(", ")}; \`vera backends\` says why in full`,
  );
}

async function listWeights(model: string, ctx: CliContext): Promise<number> {
  const ws = listLinearWeights({ model: readOnnxModel({ bytes: await readFileBytes(model) }) });
  if (ctx.json) {
    ctx.out(JSON.stringify({ ok: true, model, weights: ws }, null, 2));
    return 0;
  }
  ctx.out(`${model}: ${ws.length} Linear-like weights`);
  ctx.out(
    table(
      ["module", "initializer", "layout", "in", "out", "dtype", "found by", "note"],
      ws.map((w) => [
        w.module,
        w.initializer,
        w.layout,
        String(w.inFeatures),
        String(w.outFeatures),
        w.dtype ?? "-",
        w.source,
        [
          w.quantized ? `quantized (${w.quantized})` : "",
          w.uses > 1 ? `shared x${w.uses}` : "",
          w.fused ? `fused ${w.fused.parts.join("/")} (or the module itself)` : "",
          w.via.length ? `via ${w.via.join(">")}` : "",
        ]
          .filter(Boolean)
          .join(", "),
      ]),
    ),
  );
  return 0;
}

function printReport(ctx: CliContext, r: MergeReport, device: string | undefined): void {
  const rows = r.modules.map((m) => [
    m.module,
    m.initializer,
    m.layout,
    m.dtype,
    m.storage,
    m.outRange[0] === 0 && m.outRange[1] === m.outFeatures
      ? `${m.inFeatures}x${m.outFeatures}`
      : `${m.inFeatures}x[${m.outRange[0]}:${m.outRange[1]}]`,
    m.matchedBy,
    ...(r.dryRun ? [] : [m.maxAbsDelta === undefined ? "-" : m.maxAbsDelta.toExponential(2)]),
  ]);
  const head = [
    "module",
    "initializer",
    "layout",
    "dtype",
    "storage",
    "in x out",
    "match",
    ...(r.dryRun ? [] : ["max|delta|"]),
  ];
  ctx.out(table(head, rows));
  if (r.carried.length > 0) {
    ctx.out(`${r.dryRun ? "to replace" : "replaced"}: ${r.carried.length} tensor(s) the adapter carries`);
    ctx.out(
      table(
        ["adapter tensor", "kind", "model tensor", "dtype", "found by", "note"],
        r.carried.map((c) => [
          c.tensor,
          c.kind,
          c.target,
          c.dtype,
          c.matchedBy,
          [
            c.transposed ? "transposed" : "",
            c.untiedFrom ? `own copy of ${c.untiedFrom}` : "",
            c.added ? "added (the model had none)" : "",
          ]
            .filter(Boolean)
            .join(", "),
        ]),
      ),
    );
  }
  for (const w of r.warnings) ctx.out(`warning: ${w}`);
  if (r.dryRun) {
    ctx.out(
      `dry run: ${r.modules.length} modules -> ${r.weights - r.carried.filter((c) => !c.added).length} weights, ${r.carried.length} carried tensors (${fmtBytes(r.bytesMerged)}); nothing written`,
    );
    return;
  }
  const t = r.timings;
  const max = r.modules.reduce((m, x) => Math.max(m, x.maxAbsDelta ?? 0), 0);
  ctx.out(
    `merged ${r.modules.length} modules into ${r.weights - r.carried.filter((c) => !c.added).length} weights${r.carried.length ? `, replaced ${r.carried.length} carried tensors` : ""} (${fmtBytes(r.bytesMerged)}), max |delta| ${max.toExponential(2)}, ` +
      `backend ${r.backend}${device ? ` (${device})` : ""}`,
  );
  const [first, ...others] = r.files;
  ctx.out(
    first === undefined
      ? "nothing to write: no weight changed"
      : `wrote ${first}${others.length ? ` and ${others.length} data file(s) (${others.length <= 3 ? others.join(", ") : `${others.slice(0, 2).join(", ")}, ...`})` : ""}, ${fmtBytes(r.bytesWritten)}`,
  );
  ctx.out(
    `time ${fmtMs(t.total)}: read model ${fmtMs(t.readModel)}, plan ${fmtMs(t.plan)}, projections ${fmtMs(t.projections)}, ` +
      `read ${fmtMs(t.read)}, compute ${fmtMs(t.compute)}, write ${fmtMs(t.write)}, copy ${fmtMs(t.copy)}, commit ${fmtMs(t.commit)} (phases overlap)`,
  );
}

function table(head: string[], rows: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]): string =>
    r
      .map((c, i) => c.padEnd(w[i]!))
      .join("  ")
      .trimEnd();
  return [line(head), line(w.map((n) => "-".repeat(n))), ...rows.map(line)].join("\n");
}

function fmtBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const u = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < u.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 ? 2 : 1)} ${u[i]}`;
}

function fmtMs(ms: number): string {
  return ms < 1000 ? `${ms.toFixed(0)} ms` : `${(ms / 1000).toFixed(2)} s`;
}

/** A one-line progress bar on stderr: tensors, bytes, ETA. */
class ProgressBar {
  private start = performance.now();
  private last = "";
  constructor(private readonly ctx: CliContext) {}
  update(e: MergeEvent): void {
    if (e.type === "committing") return this.draw("renaming outputs into place...");
    if (e.type !== "progress") return;
    const frac = e.bytesTotal > 0 ? Math.min(1, e.bytesDone / e.bytesTotal) : 0;
    const width = 24;
    const fill = Math.round(frac * width);
    const elapsed = (performance.now() - this.start) / 1000;
    const eta = frac > 0.01 ? (elapsed / frac) * (1 - frac) : NaN;
    const etaS = Number.isFinite(eta)
      ? `ETA ${Math.floor(eta / 60)}:${String(Math.round(eta % 60)).padStart(2, "0")}`
      : "ETA --:--";
    this.draw(
      `[${"#".repeat(fill)}${".".repeat(width - fill)}] ${(frac * 100).toFixed(0).padStart(3)}%  ${e.tensorsDone}/${e.tensors} tensors  ` +
        `${fmtBytes(e.bytesDone)}/${fmtBytes(e.bytesTotal)}  ${etaS}${e.current ? `  ${e.current}` : ""}`,
    );
  }
  private draw(s: string): void {
    const cols = process.stderr.columns ?? 100;
    const line = s.length > cols - 1 ? s.slice(0, cols - 2) + "…" : s;
    if (line === this.last) return;
    this.last = line;
    process.stderr.write(`\r\x1b[2K${line}`);
  }
  clear(): void {
    if (this.last) process.stderr.write("\r\x1b[2K");
    this.last = "";
  }
}

export default command;

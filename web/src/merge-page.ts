/** The merge part of the page: loaded on first use, so inspecting and converting never download it. */
import { createBackend, createWasmBackend, type ComputeBackend } from "verakit/compute";
import { mergeModelFiles } from "verakit/merge";
import { parseWeightMapping } from "verakit/onnx";
import { pathFileAccess } from "verakit/peft";
import { filesFromList, stripCommonFolder, type InputFile } from "./input-files.js";
import { adapterSourceOf, type LoadedAdapter } from "./load-adapter.js";
import { mergedBlobs, type MergedFile } from "./merged-blobs.js";
import { $, download, el, showError, size } from "./show.js";
import { ZIP_MAX_BYTES, zipBlobs } from "./zip-blobs.js";

/** What the page knows about the adapter input. */
export interface AdapterInput {
  files: InputFile[];
  adapterName: string | undefined;
  loaded: LoadedAdapter | undefined;
}

interface DirHandle {
  getDirectoryHandle(name: string, o: { create: boolean }): Promise<DirHandle>;
  getFileHandle(
    name: string,
    o: { create: boolean },
  ): Promise<{ createWritable(): Promise<WritableStream & { abort(): Promise<void> }> }>;
}

let modelFiles: InputFile[] = [];
let result: MergedFile[] | undefined;
let running: AbortController | undefined;
let resultModel: InputFile | undefined;
let getAdapter: () => AdapterInput;

/** Wire the merge controls; `adapterInput` gives the adapter chosen above on the page. */
export function setupMergePage(params: { adapterInput: () => AdapterInput }): void {
  getAdapter = params.adapterInput;
  $("btn-merge").addEventListener("click", () => void runMerge());
  $("btn-cancel").addEventListener("click", () => running?.abort());
  $("btn-merge-download").addEventListener("click", () => void downloadResult());
  const picker = (window as unknown as { showDirectoryPicker?: (o: object) => Promise<DirHandle> }).showDirectoryPicker;
  const save = $("btn-merge-save") as HTMLButtonElement;
  save.hidden = !picker;
  save.addEventListener("click", () => void saveToFolder(picker!));
  $("btn-run").addEventListener("click", () => void runBaseAndMerged());
  $("btn-graft-run").addEventListener("click", () => void graftAndRunAdapters());
  document.addEventListener("vera-adapter-changed", enable);
  enable();
}

/** The files given as the model: an .onnx and its external data files (or a folder holding them). */
export function setModelFiles(files: InputFile[]): void {
  modelFiles = stripCommonFolder(files).files;
  result = undefined;
  const models = modelFiles.filter((f) => f.path.endsWith(".onnx"));
  const choice = $("model-choice") as HTMLSelectElement;
  choice.replaceChildren(...models.map((m) => el("option", m.path, { value: m.path })));
  const total = modelFiles.reduce((n, f) => n + f.file.size, 0);
  $("model-status").textContent = models.length
    ? `${modelFiles.length} file(s), ${size(total)}: ${modelFiles.map((f) => f.path).join(", ")}`
    : "no .onnx file among the files given";
  enable();
}

function enable(): void {
  const a = getAdapter?.();
  const hasAdapter = !!a && a.files.length > 0;
  ($("btn-merge") as HTMLButtonElement).disabled = !(
    hasAdapter &&
    modelFiles.some((f) => f.path.endsWith(".onnx")) &&
    !running
  );
  ($("btn-merge-download") as HTMLButtonElement).disabled = !result;
  ($("btn-merge-save") as HTMLButtonElement).disabled = !result;
  ($("btn-run") as HTMLButtonElement).disabled = !result || !!running;
  ($("btn-graft-run") as HTMLButtonElement).disabled = !(
    hasAdapter &&
    modelFiles.some((f) => f.path.endsWith(".onnx")) &&
    !serving
  );
}

let serving = false;

/** Graft the chosen model once and run it with each dropped adapter (section 4; its code loads on first use). */
async function graftAndRunAdapters(): Promise<void> {
  const choice = ($("model-choice") as HTMLSelectElement).value;
  const model = modelFiles.find((f) => f.path === choice) ?? modelFiles.find((f) => f.path.endsWith(".onnx"));
  if (!model) return;
  serving = true;
  enable();
  try {
    const { graftAndRun } = await import("./serve-page.js");
    await graftAndRun({
      model,
      beside: besideModel(model, modelFiles),
      adapter: getAdapter(),
      swaps: ["swap-files", "swap-folder"].flatMap((id) => {
        const list = ($(id) as HTMLInputElement).files;
        return list ? filesFromList(list) : [];
      }),
    });
  } finally {
    serving = false;
    enable();
  }
}

async function runMerge(): Promise<void> {
  const issues = $("merge-issues");
  issues.replaceChildren();
  $("merge-report").textContent = "";
  const status = $("merge-status");
  status.removeAttribute("data-state");
  const bar = $("merge-progress") as HTMLProgressElement;
  bar.value = 0;
  result = undefined;
  const choice = ($("model-choice") as HTMLSelectElement).value;
  const model = modelFiles.find((f) => f.path === choice) ?? modelFiles.find((f) => f.path.endsWith(".onnx"))!;
  const input = getAdapter();
  running = new AbortController();
  ($("btn-cancel") as HTMLButtonElement).disabled = false;
  enable();
  let backend: ComputeBackend | undefined;
  try {
    status.textContent = "starting the backend...";
    backend = await startBackend(($("backend") as HTMLSelectElement).value);
    status.textContent = `merging with ${backend.name} (${backend.info?.device ?? ""})...`;
    const mappingFile = ($("mapping-file") as HTMLInputElement).files?.[0];
    const mapping = mappingFile ? parseWeightMapping({ source: await mappingFile.text() }) : undefined;
    // the library's merge (verakit/merge): the same containers, plan and kernels as `vera merge`, the adapter
    // loaded against the model's own shapes, the tensors it carries (heads, biases) placed or refused by name
    const out = await mergeModelFiles({
      files: pathFileAccess(modelFiles),
      model: model.path,
      adapter: {
        source: adapterSourceOf(input.files),
        ...(input.adapterName ? { adapterName: input.adapterName } : {}),
      },
      backend,
      signal: running.signal,
      skipMissing: ($("skip-missing") as HTMLInputElement).checked,
      untie: ($("untie") as HTMLInputElement).checked,
      ...(mapping ? { mapping } : {}),
      onProgress: (p) => {
        if (p.type !== "progress") return;
        bar.value = p.bytesTotal ? p.bytesDone / p.bytesTotal : 1;
        status.textContent = `${p.tensorsDone}/${p.tensors} weights: ${p.current ?? ""}`;
      },
    });
    result = mergedBlobs(out.files, modelFiles);
    resultModel = model;
    bar.value = 1;
    status.textContent = `merged ${out.report.weights} weight(s) with ${out.report.backend} in ${out.report.timings.total.toFixed(0)} ms: ${result.map((f) => `${f.path} (${size(f.blob.size)})`).join(", ")}`;
    status.dataset["state"] = "done";
    $("merge-report").textContent = JSON.stringify({ backendInfo: backend.info, ...out.report }, null, 2);
  } catch (e) {
    status.textContent = "merge failed";
    status.dataset["state"] = "error";
    showError(issues, e);
  } finally {
    running = undefined;
    ($("btn-cancel") as HTMLButtonElement).disabled = true;
    await backend?.dispose?.().catch(() => {});
    enable();
  }
}

/** Files relative to the folder of `model` (the names its external data locations use). */
function besideModel(model: InputFile, files: readonly InputFile[]): InputFile[] {
  const dir = model.path.includes("/") ? model.path.slice(0, model.path.lastIndexOf("/") + 1) : "";
  return files.filter((f) => f.path.startsWith(dir)).map((f) => ({ path: f.path.slice(dir.length), file: f.file }));
}

/** Run the base model and the merged one in onnxruntime-web on the given ids; show the logits' distance. */
async function runBaseAndMerged(): Promise<void> {
  if (!result || !resultModel) return;
  const issues = $("run-issues");
  issues.replaceChildren();
  const status = $("run-status");
  status.removeAttribute("data-state");
  status.removeAttribute("data-distance");
  const button = $("btn-run") as HTMLButtonElement;
  button.disabled = true;
  try {
    const run = await import("./run/run-onnx.js");
    const ids = run.parseInputIds(($("run-ids") as HTMLInputElement).value);
    const logits = async (model: InputFile, files: readonly InputFile[]) => {
      const m = await run.openModel({
        model: { path: model.path, blob: model.file },
        files: besideModel(model, files).map((f) => ({ path: f.path, blob: f.file })),
      });
      try {
        const t0 = performance.now();
        const out = await run.runLogits({ model: m, feeds: run.textFeeds({ inputNames: m.inputNames, ids }) });
        return { ...out, ms: performance.now() - t0 };
      } finally {
        await m.release();
      }
    };
    status.textContent = "loading onnxruntime-web and running the base model...";
    const base = await logits(resultModel, modelFiles);
    status.textContent = "running the merged model...";
    const merged = result.find((f) => !f.path.includes("/") && f.path.endsWith(".onnx")) ?? result[0]!;
    const m = await logits(
      { path: merged.path, file: merged.blob },
      result.map((f) => ({ path: f.path, file: f.blob })),
    );
    const d = run.maxAbsDistance(base.data, m.data);
    status.dataset["distance"] = String(d);
    status.dataset["state"] = "done";
    status.textContent = `${base.name} [${base.dims.join(", ")}]: max |merged - base| = ${d.toExponential(4)} (base ${base.ms.toFixed(0)} ms, merged ${m.ms.toFixed(0)} ms, onnxruntime-web wasm)`;
  } catch (e) {
    status.textContent = "run failed";
    status.dataset["state"] = "error";
    showError(issues, e);
  } finally {
    enable();
  }
}

/**
 * Download the merged files: one by one when they are few and flat (a model and its data file), else as
 * one zip (browsers allow only a few downloads per click, and keep no folders), unless that is too big
 * for a zip without ZIP64.
 */
async function downloadResult(): Promise<void> {
  const files = result ?? [];
  const total = files.reduce((n, f) => n + f.blob.size, 0);
  const flat = files.length <= 4 && files.every((f) => !f.path.includes("/"));
  if (flat || total > ZIP_MAX_BYTES) {
    if (!flat) $("merge-status").textContent += " (too large for one zip: files are downloaded one by one)";
    for (const f of files) download({ name: f.path.split("/").pop()!, blob: f.blob });
    return;
  }
  const model = files[0]!.path
    .split("/")
    .pop()!
    .replace(/\.onnx$/, "");
  download({ name: `${model}-merged.zip`, blob: await zipBlobs(files) });
}

/**
 * The chosen backend. `wasm` is strict IEEE SIMD (the same bytes as `vera merge --backend wasm` on any
 * machine); `wasm-relaxed` uses relaxed-SIMD FMA (faster, rounding may differ between CPUs).
 */
function startBackend(name: string): Promise<ComputeBackend> {
  if (name === "wasm") return createWasmBackend({ relaxed: false });
  if (name === "wasm-relaxed") return createWasmBackend({ relaxed: true });
  return createBackend({ name });
}

/** Write the merged files into a folder the user picks; each file is committed only when complete. */
async function saveToFolder(picker: (o: object) => Promise<DirHandle>): Promise<void> {
  if (!result) return;
  const issues = $("merge-issues");
  try {
    const dir = await picker({ mode: "readwrite" });
    for (const f of result) {
      const parts = f.path.split("/");
      let d = dir;
      for (const p of parts.slice(0, -1)) d = await d.getDirectoryHandle(p, { create: true });
      const w = await (await d.getFileHandle(parts[parts.length - 1]!, { create: true })).createWritable();
      await f.blob.stream().pipeTo(w); // closes (commits) on success, aborts (discards) on failure
    }
    $("merge-status").textContent += " (saved)";
  } catch (e) {
    if ((e as Error)?.name !== "AbortError") showError(issues, e);
  }
}

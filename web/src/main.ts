/**
 * The verakit page: inspect, validate and convert adapters, and merge one into an ONNX model, all in
 * the browser (nothing is uploaded). Only the package's public entries are imported.
 */
import { summarizeAdapter, type VeraAdapter } from "verakit/format";
import { toLoraZip, toPeftZip, toVeraFile, type OutputFile } from "./convert.js";
import { filesFromDrop, filesFromList, type InputFile } from "./input-files.js";
import { inspectInfo, peftDescriptionRows, vectorBytesOf } from "./inspect-info.js";
import { describeAdapterFiles, loadAdapterFiles, type LoadedAdapter } from "./load-adapter.js";
import { $, download, el, showError, showIssues, size } from "./show.js";

let adapterFiles: InputFile[] = [];
let baseFiles: InputFile[] = [];
let loaded: LoadedAdapter | undefined;

/** The adapter ready for conversion (a valid verakit file or an imported PEFT folder). */
function currentAdapter(): { adapter: VeraAdapter; label: string; files: InputFile[] } | undefined {
  if (!loaded) return undefined;
  if (loaded.kind === "peft") return { adapter: loaded.adapter, label: loaded.label, files: adapterFiles };
  return loaded.validation.ok
    ? { adapter: loaded.validation.adapter!, label: loaded.label, files: adapterFiles }
    : undefined;
}

function row(table: HTMLElement, cells: string[], header = false): void {
  const tr = el("tr");
  for (const c of cells) tr.append(el(header ? "th" : "td", c));
  table.append(tr);
}

function adapterNameValue(): string | undefined {
  return ($("adapter-name") as HTMLInputElement).value.trim() || undefined;
}

function clearAdapterView(): void {
  for (const id of ["adapter-issues", "summary", "targets", "modules", "convert-issues"]) $(id).replaceChildren();
  $("inspect-json").textContent = "";
  $("convert-report").textContent = "";
  $("adapter-status").textContent = "";
  $("adapter-status").removeAttribute("data-state");
}

function setConvertEnabled(): void {
  const ready = currentAdapter() !== undefined;
  for (const id of ["btn-export-proj", "btn-export-noproj", "btn-expand"])
    ($(id) as HTMLButtonElement).disabled = !ready;
  ($("btn-import") as HTMLButtonElement).disabled = !(ready && loaded?.kind === "peft");
  document.dispatchEvent(new CustomEvent("vera-adapter-changed"));
}

function showSummary(adapter: VeraAdapter, extra: Array<[string, string]>): void {
  const s = summarizeAdapter(adapter);
  const t = $("summary");
  row(t, [
    "base model",
    `${s.baseModel?.id ?? "(not recorded)"}${s.baseModel?.revision ? ` @ ${s.baseModel.revision}` : ""}`,
  ]);
  row(t, [
    "rank",
    `${s.rank}   projections: A ${s.rank}x${s.maxIn}, B ${s.maxOut}x${s.rank} (${s.projectionStorage}${s.projectionRounding !== "none" ? `, rounded to ${s.projectionRounding}` : ""})`,
  ]);
  row(t, ["PRNG", `${s.prng.algorithm}, seed ${s.prng.seed}, ${s.prng.arithmetic} arithmetic`]);
  row(t, [
    "modules",
    `${s.moduleCount} (${s.parameterCount.toLocaleString("en-US")} trainable parameters, vectors ${s.vectorDtype})`,
  ]);
  for (const [k, v] of extra) row(t, [k, v]);
  if (s.extraTensors.length) row(t, ["extra tensors", s.extraTensors.join(", ")]);
  const tg = $("targets");
  row(tg, ["target", "count", "shapes (out x in)", "layout"], true);
  for (const g of s.targets) row(tg, [g.suffix, String(g.count), g.shapes.join(", "), g.layout]);
  const mt = $("modules");
  row(mt, ["module", "out x in", "layout"], true);
  for (const m of s.modules) row(mt, [m.name, `${m.outFeatures}x${m.inFeatures}`, m.layout]);
}

let loads = 0;

/** A PEFT adapter that did not load (no base, a lone weights file): what `vera inspect` says of it, and the command. */
async function showPeftDescription(load: number, name: string | undefined): Promise<void> {
  const d = await describeAdapterFiles({ files: adapterFiles, ...(name ? { adapterName: name } : {}) });
  if (!d || load !== loads) return;
  const t = $("summary");
  for (const [k, v] of peftDescriptionRows(d.description, d.validation)) row(t, [k, v]);
  $("inspect-json").textContent = JSON.stringify({ ...d.description, validation: d.validation }, null, 2);
}

async function loadAdapter(): Promise<void> {
  const load = ++loads;
  clearAdapterView();
  loaded = undefined;
  setConvertEnabled(); // nothing to convert while loading
  const status = $("adapter-status");
  const name = adapterNameValue();
  try {
    const result = await loadAdapterFiles({
      files: adapterFiles,
      base: baseFiles,
      ...(name ? { adapterName: name } : {}),
    });
    if (load !== loads) return; // a newer choice is being loaded
    loaded = result;
  } catch (e) {
    if (load !== loads) return;
    status.textContent = "refused";
    status.dataset["state"] = "error";
    showError($("adapter-issues"), e);
    setConvertEnabled();
    await showPeftDescription(load, name);
    return;
  }
  if (loaded.kind === "vera") {
    const r = loaded.validation;
    if (!r.ok) {
      status.textContent = `${loaded.label}: INVALID (${r.issues.length} issue${r.issues.length === 1 ? "" : "s"})`;
      status.dataset["state"] = "invalid";
      showIssues($("adapter-issues"), r.issues, "error");
      showIssues($("adapter-issues"), r.warnings, "warning");
      await showPeftDescription(load, name);
    } else {
      const info = inspectInfo({ file: loaded.label, fileBytes: loaded.fileBytes, validation: r });
      status.textContent = `${loaded.label}: verakit adapter, format ${r.version}`;
      status.dataset["state"] = "valid";
      showSummary(r.adapter!, [
        ["size", `${size(info.fileBytes)} file, ${size(info.vectorBytes)} of vectors`],
        ["digest", `sha256 ${r.digest?.ok ? "ok" : "not checked"} (${r.digest?.actual.slice(0, 16)}...)`],
      ]);
      showIssues($("adapter-issues"), r.warnings, "warning");
      $("inspect-json").textContent = JSON.stringify(info, null, 2);
    }
  } else {
    const rep = loaded.imported;
    const p = rep.projections;
    status.textContent = `${loaded.label}: PEFT VeRA adapter "${loaded.adapterName}", imported`;
    status.dataset["state"] = "valid";
    showSummary(loaded.adapter, [
      [
        "size",
        `${size(adapterFiles.reduce((n, f) => n + f.file.size, 0))} folder, ${size(vectorBytesOf(loaded.adapter))} of vectors`,
      ],
      ["dimensions", rep.dimensionSource],
      [
        "projections",
        p.inFile
          ? p.storage === "stored"
            ? "stored projections match no regeneration: kept explicitly"
            : `stored projections equal the regenerated ones (${p.matches.map((m) => `${m.arithmetic}/${m.rounding}`).join(", ")})`
          : "projections regenerated from the seed (not in the file)",
      ],
      ...(loaded.otherAdapters.length ? [["other adapters", loaded.otherAdapters.join(", ")] as [string, string]] : []),
    ]);
    showIssues(
      $("adapter-issues"),
      rep.warnings.map((w) => ({ code: "PEFT_WARNING", message: w })),
      "warning",
    );
    $("inspect-json").textContent = JSON.stringify({ ...summarizeAdapter(loaded.adapter), report: rep }, null, 2);
  }
  setConvertEnabled();
}

function convert(run: () => { output: OutputFile; report: unknown }): void {
  $("convert-issues").replaceChildren();
  $("convert-report").textContent = "";
  try {
    const { output, report } = run();
    $("convert-report").textContent = `${output.name}\n${JSON.stringify(report, null, 2)}`;
    download(output);
  } catch (e) {
    showError($("convert-issues"), e);
  }
}

function wire(): void {
  const drop = $("adapter-drop");
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    void filesFromDrop(e.dataTransfer!).then((f) => {
      adapterFiles = f;
      return loadAdapter();
    });
  });
  for (const id of ["adapter-file", "adapter-folder"])
    $(id).addEventListener("change", (e) => {
      adapterFiles = filesFromList((e.target as HTMLInputElement).files!);
      void loadAdapter();
    });
  $("base-file").addEventListener("change", (e) => {
    baseFiles = filesFromList((e.target as HTMLInputElement).files!);
    if (adapterFiles.length) void loadAdapter();
  });
  $("adapter-name").addEventListener("change", () => {
    if (adapterFiles.length) void loadAdapter();
  });
  $("btn-import").addEventListener("click", () =>
    convert(() => {
      const a = currentAdapter()!;
      const output = toVeraFile(a.adapter, a.label);
      return { output, report: loaded?.kind === "peft" ? loaded.imported : {} };
    }),
  );
  $("btn-export-proj").addEventListener("click", () =>
    convert(() => toPeftZip(currentAdapter()!.adapter, currentAdapter()!.label, true)),
  );
  $("btn-export-noproj").addEventListener("click", () =>
    convert(() => toPeftZip(currentAdapter()!.adapter, currentAdapter()!.label, false)),
  );
  $("btn-expand").addEventListener("click", () => {
    const v = ($("lora-rank") as HTMLInputElement).value.trim();
    convert(() => toLoraZip(currentAdapter()!.adapter, currentAdapter()!.label, v ? Number(v) : undefined));
  });
  // The merge part (ONNX reading, compute backends) loads on first use, outside the inspect bundle.
  let mergePage: Promise<typeof import("./merge-page.js")> | undefined;
  const merge = (): Promise<typeof import("./merge-page.js")> =>
    (mergePage ??= import("./merge-page.js").then((m) => {
      m.setupMergePage({ adapterInput: () => ({ files: adapterFiles, adapterName: adapterNameValue(), loaded }) });
      return m;
    }));
  const modelDrop = $("model-drop");
  modelDrop.addEventListener("dragover", (e) => e.preventDefault());
  modelDrop.addEventListener("drop", (e) => {
    e.preventDefault();
    void filesFromDrop(e.dataTransfer!).then(async (f) => (await merge()).setModelFiles(f));
  });
  for (const id of ["model-files", "model-folder"])
    $(id).addEventListener("change", (e) => {
      const f = filesFromList((e.target as HTMLInputElement).files!);
      void merge().then((m) => m.setModelFiles(f));
    });
  setConvertEnabled();
  document.body.dataset["ready"] = "1";
}

wire();

/**
 * Several adapters on one model without merging: the dropped ONNX model is grafted once (graftOnnx, plain inputs,
 * the default) for the adapter of section 1, then run in onnxruntime-web with each dropped adapter's vectors
 * (adapterFeeds). Each adapter also runs as an onnxruntime adapter file (writeOnnxAdapter + onnxruntime-web's
 * LoraAdapter) on a copy grafted with `defaults: true`, the form onnxruntime's adapter API takes, and its distance to
 * the fed run is shown. Loaded on first use.
 */
import { ErrorCode, VeraError } from "verakit";
import type { VeraAdapter } from "verakit/format";
import { listLinearWeights, readOnnxModel, type LinearWeight } from "verakit/onnx";
import { peftBaseFromOnnx } from "verakit/peft";
import { adapterFeeds, baseFeeds, checkFeeds, graftOnnx, writeOnnxAdapter } from "verakit/serve";
import type { InputFile } from "./input-files.js";
import { loadAdapterFiles } from "./load-adapter.js";
import type { AdapterInput } from "./merge-page.js";
import {
  maxAbsDistance,
  openModel,
  parseInputIds,
  runLogits,
  runLogitsWithAdapterFile,
  textFeeds,
  type ModelSession,
} from "./run/run-onnx.js";
import { $, el, showError } from "./show.js";

/** The adapter of section 1, imported against the model's own shapes when it is a PEFT folder (as `vera graft`). */
async function graftAdapter(
  input: AdapterInput,
  weights: readonly LinearWeight[],
  label: string,
): Promise<VeraAdapter> {
  if (input.loaded?.kind === "vera" && input.loaded.validation.ok) return input.loaded.validation.adapter!;
  const l = await loadAdapterFiles({
    files: input.files,
    ...(input.adapterName ? { adapterName: input.adapterName } : {}),
    baseFor: (peftWeights) => peftBaseFromOnnx({ weights, peftWeights, label }),
  });
  if (l.kind === "vera") {
    if (!l.validation.ok) throw VeraError.fromIssues(l.validation.issues);
    return l.validation.adapter!;
  }
  return l.adapter;
}

/**
 * The adapters given to swap in: every `.vera.safetensors` file, and every folder holding an adapter_config.json
 * (a PEFT adapter, imported against the model's shapes as `vera graft` does), in path order.
 */
export function groupSwapFiles(files: readonly InputFile[]): Array<{ name: string; files: InputFile[] }> {
  const out: Array<{ name: string; files: InputFile[] }> = [];
  for (const f of files) {
    if (f.path.endsWith(".vera.safetensors"))
      out.push({ name: f.path, files: [{ path: f.path.split("/").pop()!, file: f.file }] });
    const m = /^(.*\/)?adapter_config\.json$/.exec(f.path);
    if (!m) continue;
    const dir = m[1] ?? "";
    const group = files
      .filter((g) => g.path.startsWith(dir) && !g.path.slice(dir.length).includes("/"))
      .map((g) => ({ path: g.path.slice(dir.length), file: g.file }));
    out.push({ name: dir.replace(/\/$/, "") || "(PEFT folder)", files: group });
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** One adapter to swap in: a verakit file validated as `vera validate` does, or a PEFT folder imported. */
async function swapAdapter(files: InputFile[], weights: readonly LinearWeight[], label: string): Promise<VeraAdapter> {
  const l = await loadAdapterFiles({
    files,
    baseFor: (peftWeights) => peftBaseFromOnnx({ weights, peftWeights, label }),
  });
  if (l.kind === "peft") return l.adapter;
  if (!l.validation.ok) throw VeraError.fromIssues(l.validation.issues);
  return l.validation.adapter!;
}

/**
 * Graft `model` for the section-1 adapter and run it with each of `swaps`; show every adapter's logits
 * distance to the base model's (and the grafted model without adapter, which must be the base).
 */
export async function graftAndRun(params: {
  model: InputFile;
  beside: InputFile[];
  adapter: AdapterInput;
  swaps: InputFile[];
}): Promise<void> {
  const status = $("serve-status");
  const issues = $("serve-issues");
  const table = $("swap-results");
  issues.replaceChildren();
  table.replaceChildren();
  status.removeAttribute("data-state");
  const opened: ModelSession[] = [];
  try {
    const ids = parseInputIds(($("run-ids") as HTMLInputElement).value);
    const bytes = new Uint8Array(await params.model.file.arrayBuffer());
    const parsed = readOnnxModel({ bytes });
    const label = params.model.path.split("/").pop()!;
    const weights = listLinearWeights({ model: parsed });
    const adapter = await graftAdapter(params.adapter, weights, label);
    const swaps: Array<{ name: string; adapter: VeraAdapter | null }> = [{ name: "(no adapter)", adapter: null }];
    const given = groupSwapFiles(params.swaps);
    if (params.swaps.length > 0 && given.length === 0)
      throw new VeraError(ErrorCode.ARG_INVALID, "no adapter among the files given to swap in", {
        expected: ".vera.safetensors files or PEFT adapter folders (adapter_config.json)",
        received: params.swaps.map((f) => f.path).join(", "),
      });
    for (const g of given) swaps.push({ name: g.name, adapter: await swapAdapter(g.files, weights, label) });
    if (params.swaps.length === 0) swaps.push({ name: "(section 1's adapter)", adapter });

    status.textContent = "grafting...";
    const t0 = performance.now();
    const g = graftOnnx({ model: parsed, adapter });
    const graftMs = performance.now() - t0;
    // Every adapter is checked against the graft (seed, rank, shapes) before anything runs; the base row is explicit.
    const fed = swaps.map((x) => ({
      ...x,
      feeds: (x.adapter ? adapterFeeds({ spec: g.spec, adapter: x.adapter }) : baseFeeds({ spec: g.spec })).feeds,
      file: x.adapter ? writeOnnxAdapter({ adapter: x.adapter, spec: g.spec }).bytes : undefined,
    }));
    // The adapter-file form: the same graft with default initializers (onnxruntime's adapter API feeds only those).
    const withDefaults = graftOnnx({ model: parsed, adapter, defaults: true });
    const files = params.beside.map((f) => ({ path: f.path, blob: f.file }));
    status.textContent = "running the base model in onnxruntime-web...";
    const base = await openModel({ model: { path: label, blob: params.model.file }, files });
    opened.push(base);
    const baseLogits = await runLogits({ model: base, feeds: textFeeds({ inputNames: base.inputNames, ids }) });
    const grafted = await openModel({ model: { path: label, blob: new Blob([g.bytes as BlobPart]) }, files });
    opened.push(grafted);
    const forFiles = await openModel({
      model: { path: label, blob: new Blob([withDefaults.bytes as BlobPart]) },
      files,
    });
    opened.push(forFiles);
    const head = el("tr");
    for (const h of ["adapter", "max |logits - base|", "ms", "adapter file: max |logits - fed|"])
      head.append(el("th", h));
    table.append(head);
    for (const s of fed) {
      // The session must take every adapter input, each fed with its shape (SERVE_FEEDS otherwise).
      checkFeeds({ spec: g.spec, feeds: s.feeds, sessionInputs: grafted.inputNames });
      status.textContent = `running ${s.name}...`;
      const t = performance.now();
      const out = await runLogits({
        model: grafted,
        feeds: textFeeds({ inputNames: grafted.inputNames, ids, extra: s.feeds }),
      });
      const ms = performance.now() - t;
      const d = maxAbsDistance(baseLogits.data, out.data);
      let viaFile = "";
      if (s.file) {
        const f = await runLogitsWithAdapterFile({
          model: forFiles,
          feeds: textFeeds({ inputNames: forFiles.inputNames, ids }),
          adapterFile: s.file,
        });
        viaFile = String(maxAbsDistance(out.data, f.data));
      }
      const tr = el("tr", undefined, {
        "data-adapter": s.name,
        "data-distance": String(d),
        "data-file-distance": viaFile,
      });
      for (const c of [
        s.name,
        d.toExponential(4),
        ms.toFixed(0),
        viaFile === "" ? "-" : Number(viaFile).toExponential(2),
      ])
        tr.append(el("td", c));
      table.append(tr);
    }
    status.textContent = `grafted ${g.modules.length} module(s) (rank ${g.spec.rank}, +${g.addedBytes} bytes) in ${graftMs.toFixed(0)} ms; ${swaps.length} run(s) on one session, no merge`;
    status.dataset["state"] = "done";
  } catch (e) {
    status.textContent = "graft or run failed";
    status.dataset["state"] = "error";
    showError(issues, e);
  } finally {
    for (const m of opened) await m.release().catch(() => {});
  }
}

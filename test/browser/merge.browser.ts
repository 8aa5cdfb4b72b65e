/**
 * The page's ONNX merge in headless Chromium. The downloaded merged model must equal `vera merge`'s output
 * byte for byte on the same backend (reference, strict-SIMD wasm, WebGPU: SwiftShader in Chromium against Dawn
 * on lavapipe in Node).
 */
import { copyFileSync, mkdirSync, readFileSync, readdirSync, statSync } from "node:fs";
import { readInlineValues } from "../../src/onnx/inline-values.js";
import { readOnnxModel } from "../../src/onnx/read-onnx-model.js";
import { parseSafetensors, tensorBytes } from "../../src/safetensors/parse.js";
import { MergeErrorCode } from "../../src/merge/error-codes.js";
import { join } from "node:path";
import { unzipSync } from "fflate";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  browserReady,
  downloads,
  firstDifference,
  openPage,
  openSession,
  readTree,
  ROOT,
  tmp,
  vera,
  veraOk,
  type Session,
} from "./page.js";

const ready = browserReady();
const ONNX = join(ROOT, "fixtures", "onnx");

type PageT = import("playwright-core").Page;

async function mergeOnPage(
  page: PageT,
  params: { adapter: string; adapterIsFile?: boolean; model: string; backend: string },
): Promise<{ report: Record<string, unknown>; issues: Array<{ code: string; message: string }> }> {
  await page.setInputFiles(params.adapterIsFile ? "#adapter-file" : "#adapter-folder", params.adapter);
  await page.setInputFiles("#model-folder", params.model);
  await page.waitForSelector("#btn-merge:not([disabled])");
  await page.selectOption("#backend", params.backend);
  await page.click("#btn-merge");
  await page.waitForSelector('#merge-status[data-state="done"], #merge-status[data-state="error"]');
  const issues = await page.$$eval("#merge-issues li", (l) =>
    l.map((x) => ({ code: x.getAttribute("data-code")!, message: x.getAttribute("data-message")! })),
  );
  const text = (await page.textContent("#merge-report")) || "{}";
  if (issues.length === 0) expect(await page.$eval("#merge-progress", (p) => (p as HTMLProgressElement).value)).toBe(1);
  return { report: JSON.parse(text) as Record<string, unknown>, issues };
}

/** Record the size of every Blob/File read whole by the page (Blob.prototype.arrayBuffer). */
async function recordReads(page: PageT): Promise<void> {
  await page.evaluate(() => {
    const w = window as unknown as { veraReads: number[] };
    w.veraReads = [];
    const orig = Blob.prototype.arrayBuffer;
    Blob.prototype.arrayBuffer = function (this: Blob) {
      w.veraReads.push(this.size);
      return orig.call(this);
    };
  });
}

function cliMerge(model: string, adapter: string, backend: string): Map<string, Uint8Array> {
  const out = tmp();
  veraOk(["merge", model, adapter, "-o", join(out, "model.onnx"), "--backend", backend]);
  return readTree(out);
}

describe.skipIf(!ready)("the page in Chromium: ONNX merge", () => {
  let s: Session;
  beforeAll(async () => {
    s = await openSession();
  });
  afterAll(async () => {
    await s?.close();
  });

  for (const backend of ["reference", "wasm"]) {
    it(`a PEFT folder merged into a model with external data (${backend}) downloads the CLI's bytes`, async () => {
      const { page, errors } = await openPage(s);
      const adapter = join(ONNX, "adapters", "llama");
      const model = join(ONNX, "llama-dynamo");
      await recordReads(page);
      const { report, issues } = await mergeOnPage(page, { adapter, model, backend });
      expect(issues).toEqual([]);
      expect(report.backend).toBe(backend);
      expect(report.weights).toBe(14);
      // The external data file is read one weight at a time, never whole.
      const reads = await page.evaluate(() => (window as unknown as { veraReads: number[] }).veraReads);
      const small = new Set([
        statSync(join(model, "model.onnx")).size,
        ...readdirSync(adapter).map((n) => statSync(join(adapter, n)).size),
      ]);
      const largestWeight = Math.max(
        ...(report.modules as Array<{ inFeatures: number; outFeatures: number }>).map(
          (m) => m.inFeatures * m.outFeatures * 4,
        ),
      );
      // (the 16-byte read is the container's detection from the model's first bytes)
      const dataReads = reads.filter((n) => !small.has(n) && n > 16);
      expect(dataReads.length).toBe(14);
      for (const n of dataReads) expect(n).toBeLessThanOrEqual(largestWeight);
      const got = await downloads(page, "#btn-merge-download", 2);
      const want = cliMerge(join(model, "model.onnx"), adapter, backend);
      expect([...got.keys()].sort()).toEqual(["model.onnx", "model.onnx.data"]);
      expect([...want.keys()].sort()).toEqual(["model.onnx", "model.onnx.data"]);
      for (const [name, bytes] of want) expect(firstDifference(got.get(name)!, bytes), `${backend}: ${name}`).toBe(-1);
      expect(errors).toEqual([]);
    });
  }

  it("Save to a folder (File System Access API, here over the origin-private file system) writes the CLI's bytes", async () => {
    const { page, errors } = await openPage(s);
    // the folder picker needs a person; the page gets the origin-private folder instead, a real FileSystemDirectoryHandle
    await page.evaluate(() => {
      (window as unknown as { showDirectoryPicker: () => Promise<FileSystemDirectoryHandle> }).showDirectoryPicker =
        () => navigator.storage.getDirectory();
    });
    const adapter = join(ONNX, "adapters", "llama");
    const model = join(ONNX, "llama-dynamo");
    const { issues } = await mergeOnPage(page, { adapter, model, backend: "reference" });
    expect(issues).toEqual([]);
    expect(await page.isVisible("#btn-merge-save")).toBe(true);
    await page.click("#btn-merge-save");
    await page.waitForSelector('#merge-status:has-text("(saved)")');
    const saved = await page.evaluate(async () => {
      const dir = await navigator.storage.getDirectory();
      const out: Record<string, string> = {};
      for (const name of ["model.onnx", "model.onnx.data"]) {
        const bytes = new Uint8Array(await (await (await dir.getFileHandle(name)).getFile()).arrayBuffer());
        let bin = "";
        for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
        out[name] = btoa(bin);
      }
      return out;
    });
    const want = cliMerge(join(model, "model.onnx"), adapter, "reference");
    for (const [name, bytes] of want)
      expect(firstDifference(new Uint8Array(Buffer.from(saved[name]!, "base64")), bytes), name).toBe(-1);
    expect(errors).toEqual([]);
  });

  it("a verakit file merged into a model with inline weights (reference) downloads the CLI's bytes", async () => {
    const { page, errors } = await openPage(s);
    const model = join(ONNX, "legacy-llama-folded");
    const vf = join(tmp(), "tiny.vera.safetensors");
    veraOk(["import-peft", join(ONNX, "adapters", "tiny-llama"), "--base", join(model, "model.onnx"), "-o", vf]);
    const { report, issues } = await mergeOnPage(page, {
      adapter: vf,
      adapterIsFile: true,
      model,
      backend: "reference",
    });
    expect(issues).toEqual([]);
    expect(report.weights).toBeGreaterThan(0);
    const got = await downloads(page, "#btn-merge-download", 1);
    const want = cliMerge(join(model, "model.onnx"), vf, "reference");
    expect([...want.keys()]).toEqual(["model.onnx"]);
    expect(firstDifference(got.get("model.onnx")!, want.get("model.onnx")!)).toBe(-1);
    expect(errors).toEqual([]);
  });

  it("a classifier adapter (zoo roberta, modules_to_save): the merged model carries the adapter's head, the CLI's bytes", async () => {
    const { page, errors } = await openPage(s);
    const zoo = join(ROOT, "fixtures", "zoo", "roberta");
    const model = join(tmp(), "roberta");
    mkdirSync(model);
    copyFileSync(join(zoo, "model.onnx"), join(model, "model.onnx"));
    const adapter = join(zoo, "adapter");
    const { report, issues } = await mergeOnPage(page, { adapter, model, backend: "reference" });
    expect(issues).toEqual([]);
    const carried = report.carried as Array<{ tensor: string; param: string; target: string; kind: string }>;
    expect(carried.filter((c) => c.kind === "modules_to_save").map((c) => c.param)).toContain(
      "classifier.out_proj.weight",
    );
    const got = await downloads(page, "#btn-merge-download", 1);
    const want = cliMerge(join(model, "model.onnx"), adapter, "reference");
    expect(firstDifference(got.get("model.onnx")!, want.get("model.onnx")!)).toBe(-1);
    // the head's weight in the downloaded model is the adapter's tensor, not the base model's
    const merged = readOnnxModel({ bytes: got.get("model.onnx")! });
    const baseBytes = new Uint8Array(readFileSync(join(model, "model.onnx")));
    const peft = parseSafetensors(new Uint8Array(readFileSync(join(adapter, "adapter_model.safetensors"))));
    const head = carried.find((c) => c.param === "classifier.out_proj.weight")!;
    const init = (m: ReturnType<typeof readOnnxModel>) =>
      m.graphs[0]!.initializers.find((t) => t.name === head.target)!;
    const f32 = (b: Uint8Array) => [...new Float32Array(b.slice().buffer)];
    const adapterHead = f32(tensorBytes(peft, head.tensor));
    expect(f32(readInlineValues(got.get("model.onnx")!, init(merged), "F32"))).toEqual(adapterHead);
    const base = readOnnxModel({ bytes: baseBytes });
    expect(f32(readInlineValues(baseBytes, init(base), "F32"))).not.toEqual(adapterHead);
    expect(errors).toEqual([]);
  });

  it("a tied weight: refused like the CLI, then untied (reference) into the CLI's 17 files byte for byte", async () => {
    const { page, errors } = await openPage(s);
    const adapter = join(ONNX, "adapters", "tiny-llama-head");
    const model = join(ONNX, "legacy-llama-unfolded-wrapped");
    const refused = await mergeOnPage(page, { adapter, model, backend: "reference" });
    const cli = JSON.parse(
      vera(["merge", join(model, "model.onnx"), adapter, "-o", join(tmp(), "model.onnx"), "--json"]).stdout,
    ).error;
    expect(cli.code).toBe("ONNX_SHARED_WEIGHT");
    expect(refused.issues).toEqual(
      cli.issues.map((i: { code: string; message: string }) => ({ code: i.code, message: i.message })),
    );
    await page.check("#untie");
    await page.click("#btn-merge");
    await page.waitForSelector('#merge-status[data-state="done"]');
    const report = JSON.parse((await page.textContent("#merge-report"))!) as {
      modules: Array<{ untiedFrom?: string }>;
    };
    expect(report.modules.some((m) => m.untiedFrom === "m.model.embed_tokens.weight")).toBe(true);
    const out = tmp();
    veraOk([
      "merge",
      join(model, "model.onnx"),
      adapter,
      "-o",
      join(out, "model.onnx"),
      "--backend",
      "reference",
      "--untie",
    ]);
    const want = readTree(out);
    expect(want.size).toBe(17);
    // 17 files come as one zip (browsers allow only a few downloads per click)
    const zip = await downloads(page, "#btn-merge-download", 1);
    expect([...zip.keys()]).toEqual(["model-merged.zip"]);
    const got = new Map(Object.entries(unzipSync(zip.get("model-merged.zip")!)));
    expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
    for (const [name, bytes] of want) expect(firstDifference(got.get(name)!, bytes), name).toBe(-1);
    expect(errors).toEqual([]);
  });

  it("WebGPU on SwiftShader: the CLI's WebGPU bytes; the reference's bytes outside the merged weights, merged values at float32 accuracy", async () => {
    const { page, errors } = await openPage(s);
    const adapter = join(ONNX, "adapters", "llama");
    const model = join(ONNX, "llama-dynamo");
    const { report, issues } = await mergeOnPage(page, { adapter, model, backend: "webgpu" });
    expect(issues).toEqual([]);
    expect(report.backend).toBe("webgpu");
    expect((report.backendInfo as { software?: boolean }).software).toBe(true); // SwiftShader, as asked
    const got = await downloads(page, "#btn-merge-download", 2);
    const want = cliMerge(join(model, "model.onnx"), adapter, "reference");
    expect(firstDifference(got.get("model.onnx")!, want.get("model.onnx")!)).toBe(-1);
    const g = got.get("model.onnx.data")!;
    const w = want.get("model.onnx.data")!;
    const base = new Uint8Array(readFileSync(join(model, "model.onnx.data")));
    expect(g.length).toBe(w.length);
    // every merged weight is float32 here; compare per weight, everything else byte for byte
    const modules = report.modules as Array<{ storage: string; inFeatures: number; outFeatures: number }>;
    const ranges = modules.map((m) => {
      const off = Number(/@(\d+)$/.exec(m.storage)![1]);
      return [off, off + m.inFeatures * m.outFeatures * 4] as const;
    });
    const inMerged = (i: number): boolean => ranges.some(([a, b]) => i >= a && i < b);
    let outside = 0;
    for (let i = 0; i < w.length; i++) if (!inMerged(i) && g[i] !== w[i]) outside++;
    expect(outside).toBe(0);
    let changed = 0;
    for (const [a, b] of ranges) {
      const gf = new Float32Array(g.slice(a, b).buffer);
      const wf = new Float32Array(w.slice(a, b).buffer);
      const bf = new Float32Array(base.slice(a, b).buffer);
      let scale = 0;
      for (let i = 0; i < wf.length; i++) scale = Math.max(scale, Math.abs(wf[i]!), Math.abs(bf[i]!));
      for (let i = 0; i < wf.length; i++) {
        expect(Math.abs(gf[i]! - wf[i]!)).toBeLessThanOrEqual(scale * 2 ** -20);
        if (gf[i] !== bf[i]) changed++;
      }
    }
    expect(changed).toBeGreaterThan(0); // the merge did change the weights
    // The CLI's WebGPU backend (Dawn on Mesa's lavapipe) runs the same shaders: the same bytes. CI installs
    // lavapipe, so there a CLI without WebGPU is a failure; elsewhere that comparison is left out.
    const out = tmp();
    const cli = vera([
      "merge",
      join(model, "model.onnx"),
      adapter,
      "-o",
      join(out, "model.onnx"),
      "--backend",
      "webgpu",
    ]);
    if (cli.status === 0 || process.env.CI === "true") {
      expect(cli.status, cli.stderr).toBe(0);
      for (const [name, bytes] of readTree(out))
        expect(firstDifference(got.get(name)!, bytes), `webgpu: ${name}`).toBe(-1);
    } else
      console.warn(
        `CLI WebGPU unavailable here, byte comparison with it left out: ${cli.stderr.trim().split("\n").pop()}`,
      );
    expect(errors).toEqual([]);
  });

  it("refusals: a missing external data file and a cancelled merge show their codes; nothing is offered", async () => {
    const { page } = await openPage(s);
    const adapter = join(ONNX, "adapters", "llama");
    const model = join(ONNX, "llama-dynamo", "model.onnx");
    await page.setInputFiles("#adapter-folder", adapter);
    await page.setInputFiles("#model-files", model);
    await page.waitForSelector("#btn-merge:not([disabled])");
    await page.click("#btn-merge");
    await page.waitForSelector('#merge-status[data-state="error"]');
    const code = await page.getAttribute("#merge-issues li", "data-code");
    expect(code).toBe("IO_NOT_FOUND");
    expect(await page.isDisabled("#btn-merge-download")).toBe(true);

    await page.setInputFiles("#model-folder", join(ONNX, "llama-dynamo"));
    await page.waitForSelector("#btn-merge:not([disabled])");
    await page.evaluate(() => {
      document.getElementById("btn-merge")!.click();
      document.getElementById("btn-cancel")!.click();
    });
    await page.waitForSelector('#merge-status[data-state="error"]');
    expect(await page.getAttribute("#merge-issues li", "data-code")).toBe(MergeErrorCode.MERGE_ABORTED);
    const cliMsg = "merge cancelled; no output was written and the input is unchanged";
    expect(await page.getAttribute("#merge-issues li", "data-message")).toBe(cliMsg);
    expect(await page.isDisabled("#btn-merge-download")).toBe(true);
    // the CLI refuses the model without its data file with the same code
    const copy = tmp();
    copyFileSync(model, join(copy, "model.onnx"));
    const r = vera(["merge", join(copy, "model.onnx"), adapter, "-o", join(tmp(), "m.onnx"), "--json"]);
    expect(JSON.parse(r.stdout).error.code).toBe(code);
  });
});

/**
 * The page runs the base and the merged model in onnxruntime-web (wasm) and shows the logits' max-abs
 * distance; onnxruntime-node on the same files must find the same distance.
 */
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadAdapterFromPath } from "../../src/node/load-adapter.js";
import { peftBaseFromOnnx } from "../../src/peft/base-shapes-from-onnx.js";
import { listLinearWeights, readOnnxModel } from "../../src/onnx/index.js";
import { adapterFeeds, graftOnnx } from "../../src/serve/index.js";
import { loadOrt, maxAbsDiff, runModel } from "../onnx-helpers.js";
import { browserReady, downloads, openPage, openSession, ROOT, tmp, veraOk, type Session } from "./page.js";

const ready = browserReady();
const ONNX = join(ROOT, "fixtures", "onnx");
const IDS = [1, 5, 9, 13, 2, 7, 30, 63];

type PageT = import("playwright-core").Page;

async function merge(page: PageT, adapter: string, model: string): Promise<void> {
  await page.setInputFiles("#adapter-folder", adapter);
  await page.setInputFiles("#model-folder", model);
  await page.waitForSelector("#btn-merge:not([disabled])");
  await page.selectOption("#backend", "reference");
  await page.click("#btn-merge");
  await page.waitForSelector('#merge-status[data-state="done"]');
}

async function runOnPage(page: PageT, ids: string): Promise<{ state: string; distance: number; text: string }> {
  await page.fill("#run-ids", ids);
  await page.waitForSelector("#btn-run:not([disabled])");
  await page.click("#btn-run");
  await page.waitForSelector('#run-status[data-state="done"], #run-status[data-state="error"]');
  return {
    state: (await page.getAttribute("#run-status", "data-state"))!,
    distance: Number(await page.getAttribute("#run-status", "data-distance")),
    text: `${await page.textContent("#run-status")} ${(await page.$$eval("#run-issues li", (l) => l.map((x) => x.textContent))).join("; ")}`,
  };
}

/** onnxruntime-node's logits distance between two model files on the ids. */
async function nodeDistance(base: string, merged: string): Promise<number> {
  const ref = {
    inputs: [{ name: "input_ids", dtype: "int64" as const, shape: [1, IDS.length], data: IDS }],
    outputs: ["logits"],
  };
  return maxAbsDiff(await runModel(base, ref), await runModel(merged, ref));
}

describe.skipIf(!ready)("the page in Chromium: running models in onnxruntime-web", () => {
  let s: Session;
  beforeAll(async () => {
    s = await openSession();
  });
  afterAll(async () => {
    await s?.close();
  });

  it("the logits distance of a merged PEFT adapter equals onnxruntime-node's on the same files", async () => {
    const { page, errors } = await openPage(s);
    const requests: string[] = [];
    page.on("request", (r) => requests.push(r.url()));
    const model = join(ONNX, "llama-dynamo");
    await merge(page, join(ONNX, "adapters", "llama"), model);
    // onnxruntime-web is loaded only to run a model: not by the page, not by a merge
    expect(requests.filter((u) => u.includes("ort-wasm"))).toEqual([]);
    const shown = await runOnPage(page, IDS.join(" "));
    expect(requests.filter((u) => u.endsWith("/ort/ort-wasm-simd-threaded.wasm"))).toHaveLength(1);
    expect(shown.state, shown.text).toBe("done");
    const got = await downloads(page, "#btn-merge-download", 2);
    const dir = tmp();
    mkdirSync(dir, { recursive: true });
    for (const [name, bytes] of got) writeFileSync(join(dir, name), bytes);
    const want = await nodeDistance(join(model, "model.onnx"), join(dir, "model.onnx"));
    expect(want).toBeGreaterThan(0);
    expect(shown.distance).toBeGreaterThan(0);
    expect(Math.abs(shown.distance - want)).toBeLessThanOrEqual(1e-5);
    expect(shown.text).toContain("logits [1, 8,");
    expect(errors).toEqual([]);
  });

  it("bad input ids are refused with ARG_INVALID", async () => {
    const { page } = await openPage(s);
    await merge(page, join(ONNX, "adapters", "llama"), join(ONNX, "llama-dynamo"));
    const shown = await runOnPage(page, "1 two 3");
    expect(shown.state).toBe("error");
    expect(await page.getAttribute("#run-issues li", "data-code")).toBe("ARG_INVALID");
  });
});

const SERVE = join(ROOT, "fixtures", "serve", "llama-dynamo");

/** onnxruntime-node: the model grafted (plain inputs) for `graftWith`, run with each adapter; distance to the base. */
async function nodeSwapDistances(graftWith: string, adapters: string[]): Promise<number[]> {
  const ort = await loadOrt();
  const modelPath = join(SERVE, "model.onnx");
  const parsed = readOnnxModel({ bytes: new Uint8Array(readFileSync(modelPath)) });
  const weights = listLinearWeights({ model: parsed });
  const g = graftOnnx({
    model: parsed,
    adapter: (
      await loadAdapterFromPath({ path: graftWith, base: (peftWeights) => peftBaseFromOnnx({ weights, peftWeights }) })
    ).adapter,
    defaults: false,
  });
  const dir = tmp();
  writeFileSync(join(dir, "model.onnx"), g.bytes);
  copyFileSync(join(SERVE, "model.onnx.data"), join(dir, "model.onnx.data"));
  const ids = new ort.Tensor(
    "int64",
    BigInt64Array.from(IDS, (x) => BigInt(x)),
    [1, IDS.length],
  );
  const base = await runModel(modelPath, {
    inputs: [{ name: "input_ids", dtype: "int64", shape: [1, IDS.length], data: IDS }],
    outputs: ["logits"],
  });
  const session = await ort.InferenceSession.create(join(dir, "model.onnx"), { executionProviders: ["cpu"] });
  try {
    const out: number[] = [];
    for (const a of adapters) {
      const { feeds } = adapterFeeds({
        spec: g.spec,
        adapter: (
          await loadAdapterFromPath({ path: a, base: (peftWeights) => peftBaseFromOnnx({ weights, peftWeights }) })
        ).adapter,
        sessionInputs: session.inputNames,
      });
      const inputs: Record<string, import("onnxruntime-node").Tensor> = { input_ids: ids };
      for (const [name, t] of Object.entries(feeds)) inputs[name] = new ort.Tensor(t.type, t.data, t.dims);
      const { logits } = await session.run(inputs);
      out.push(maxAbsDiff(base, [logits!.data as Float32Array]));
    }
    return out;
  } finally {
    await session.release();
  }
}

describe.skipIf(!ready)("the page in Chromium: one grafted model, adapters swapped in onnxruntime-web", () => {
  let s: Session;
  beforeAll(async () => {
    s = await openSession();
  });
  afterAll(async () => {
    await s?.close();
  });

  it("grafts once and runs three real PEFT adapters by their vectors: onnxruntime-node's distances", async () => {
    const { page, errors } = await openPage(s);
    const names = ["a1", "a2", "a3"];
    const dir = tmp();
    const files = names.map((n) => {
      const out = join(dir, `${n}.vera.safetensors`);
      veraOk(["import-peft", join(SERVE, "adapters", n), "--base", join(SERVE, "model.onnx"), "-o", out]);
      return out;
    });
    await page.setInputFiles("#adapter-folder", join(SERVE, "adapters", "a1"));
    await page.setInputFiles("#model-files", [join(SERVE, "model.onnx"), join(SERVE, "model.onnx.data")]);
    await page.setInputFiles("#swap-files", files);
    await page.fill("#run-ids", IDS.join(" "));
    await page.waitForSelector("#btn-graft-run:not([disabled])");
    await page.click("#btn-graft-run");
    await page.waitForSelector('#serve-status[data-state="done"], #serve-status[data-state="error"]');
    const issues = await page.$$eval("#serve-issues li", (l) => l.map((x) => x.textContent));
    expect(issues).toEqual([]);
    const rows = await page.$$eval("#swap-results tr[data-adapter]", (l) =>
      l.map((x) => [x.getAttribute("data-adapter")!, Number(x.getAttribute("data-distance"))] as const),
    );
    expect(rows.map((r) => r[0])).toEqual(["(no adapter)", ...names.map((n) => `${n}.vera.safetensors`)]);
    expect(rows[0]![1]).toBe(0); // the grafted model without an adapter is the base model
    // Each adapter also ran as an .onnx_adapter file through onnxruntime-web's LoraAdapter: the fed run's logits.
    const viaFile = await page.$$eval("#swap-results tr[data-adapter]", (l) =>
      l.map((x) => x.getAttribute("data-file-distance")),
    );
    expect(viaFile[0]).toBe("");
    for (const d of viaFile.slice(1)) {
      expect(d).not.toBe("");
      expect(Number(d)).toBeLessThanOrEqual(1e-6);
    }
    const want = await nodeSwapDistances(join(SERVE, "adapters", "a1"), files);
    for (const [k, w] of want.entries()) {
      expect(w).toBeGreaterThan(0);
      expect(Math.abs(rows[k + 1]![1] - w), names[k]).toBeLessThanOrEqual(1e-5);
    }
    expect(new Set(want.map((w) => w.toFixed(6))).size).toBe(3); // three different adapters
    expect(errors).toEqual([]);
  });

  it("a folder of PEFT adapter folders: each imported against the model and swapped in, onnxruntime-node's distances", async () => {
    const { page, errors } = await openPage(s);
    const names = ["a1", "a2", "a3"];
    const dir = join(tmp(), "mine");
    for (const n of names) {
      mkdirSync(join(dir, n), { recursive: true });
      for (const f of ["adapter_config.json", "adapter_model.safetensors"])
        copyFileSync(join(SERVE, "adapters", n, f), join(dir, n, f));
    }
    await page.setInputFiles("#adapter-folder", join(SERVE, "adapters", "a2"));
    await page.setInputFiles("#model-files", [join(SERVE, "model.onnx"), join(SERVE, "model.onnx.data")]);
    await page.setInputFiles("#swap-folder", dir);
    await page.fill("#run-ids", IDS.join(" "));
    await page.waitForSelector("#btn-graft-run:not([disabled])");
    await page.click("#btn-graft-run");
    await page.waitForSelector('#serve-status[data-state="done"], #serve-status[data-state="error"]');
    expect(await page.$$eval("#serve-issues li", (l) => l.map((x) => x.textContent))).toEqual([]);
    const rows = await page.$$eval("#swap-results tr[data-adapter]", (l) =>
      l.map((x) => [x.getAttribute("data-adapter")!, Number(x.getAttribute("data-distance"))] as const),
    );
    expect(rows.map((r) => r[0])).toEqual(["(no adapter)", ...names.map((n) => `mine/${n}`)]);
    expect(rows[0]![1]).toBe(0);
    const want = await nodeSwapDistances(
      join(SERVE, "adapters", "a2"),
      names.map((n) => join(SERVE, "adapters", n)),
    );
    for (const [k, w] of want.entries()) expect(Math.abs(rows[k + 1]![1] - w), names[k]).toBeLessThanOrEqual(1e-5);
    expect(errors).toEqual([]);
  });

  it("an adapter of another rank is refused with the code and message onnxruntime-node's feeds get", async () => {
    const { page } = await openPage(s);
    const r4 = join(tmp(), "r4.vera.safetensors");
    veraOk(["import-peft", join(SERVE, "adapters", "r4"), "--base", join(SERVE, "model.onnx"), "-o", r4]);
    await page.setInputFiles("#adapter-folder", join(SERVE, "adapters", "a1"));
    await page.setInputFiles("#model-files", [join(SERVE, "model.onnx"), join(SERVE, "model.onnx.data")]);
    await page.setInputFiles("#swap-files", [r4]);
    await page.waitForSelector("#btn-graft-run:not([disabled])");
    await page.click("#btn-graft-run");
    await page.waitForSelector('#serve-status[data-state="error"]');
    const shown = await page.$$eval("#serve-issues li", (l) =>
      l.map((x) => ({ code: x.getAttribute("data-code"), message: x.getAttribute("data-message") })),
    );
    const parsed = readOnnxModel({ bytes: new Uint8Array(readFileSync(join(SERVE, "model.onnx"))) });
    const weights = listLinearWeights({ model: parsed });
    const a1 = (
      await loadAdapterFromPath({
        path: join(SERVE, "adapters", "a1"),
        base: (peftWeights) => peftBaseFromOnnx({ weights, peftWeights }),
      })
    ).adapter;
    const g = graftOnnx({ model: parsed, adapter: a1, defaults: false });
    let want: { code: string; message: string } | undefined;
    try {
      adapterFeeds({
        spec: g.spec,
        adapter: (
          await loadAdapterFromPath({ path: r4, base: (peftWeights) => peftBaseFromOnnx({ weights, peftWeights }) })
        ).adapter,
      });
    } catch (e) {
      want = { code: (e as { code: string }).code, message: (e as Error).message };
    }
    expect(want?.code).toBe("SERVE_SPEC_MISMATCH");
    expect(shown[0]).toEqual(want);
    expect(await page.$$("#swap-results tr[data-adapter]")).toEqual([]);
  });
});

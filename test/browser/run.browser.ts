/**
 * The page runs the base and the merged model in onnxruntime-web (wasm) and shows the logits' max-abs
 * distance; onnxruntime-node on the same files must find the same distance.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { maxAbsDiff, runModel } from "../onnx-helpers.js";
import { browserReady, downloads, openPage, openSession, ROOT, tmp, type Session } from "./page.js";

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
    const model = join(ONNX, "llama-dynamo");
    await merge(page, join(ONNX, "adapters", "llama"), model);
    const shown = await runOnPage(page, IDS.join(" "));
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

/**
 * The WebGPU backends run for real: on a machine without a GPU, on Mesa's lavapipe (correctness
 * only). With CI=true a missing adapter FAILS the suite; elsewhere the tests skip with the reason.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ComputeBackend } from "../src/compute/backend.js";
import { createOrtBackend } from "../src/compute/node/ort-backend.js";
import { createDawnBackend } from "../src/compute/node/webgpu-node.js";
import { DTYPES, LAYOUTS } from "./compute-helpers.js";
import { expectMatchesReference, expectOverflowLeavesWeight } from "./compute-conformance.js";

async function start(name: string, make: () => Promise<ComputeBackend>): Promise<ComputeBackend | undefined> {
  try {
    return await make();
  } catch (e) {
    const why = `${name}: ${(e as Error).message}`;
    if (process.env.CI === "true")
      throw new Error(`CI=true requires a WebGPU adapter (install Mesa's lavapipe, see .ci/run): ${why}`);
    console.warn(`skipping ${name} tests: ${why}`);
    return undefined;
  }
}

describe("webgpu backend (Dawn)", { timeout: 180_000 }, () => {
  let be: ComputeBackend | undefined;
  let blocks: ComputeBackend | undefined;
  beforeAll(async () => {
    be = await start("webgpu", () => createDawnBackend({}));
    // 64 KiB blocks: every weight above 16k float32 elements is merged in several row blocks
    blocks = be && (await start("webgpu", () => createDawnBackend({ maxBlockBytes: 1 << 16 })));
  }, 120_000);
  afterAll(async () => {
    await be?.dispose?.();
    await blocks?.dispose?.();
  });
  it("reports its adapter", (ctx) => {
    if (!be) return ctx.skip();
    expect(be.name).toBe("webgpu");
    expect(be.info?.device.length).toBeGreaterThan(0);
  });
  for (const dtype of DTYPES)
    for (const layout of LAYOUTS) {
      it(`matches the reference: ${dtype} ${layout}`, async (ctx) => {
        if (!be || !blocks) return ctx.skip();
        await expectMatchesReference(be, dtype, layout, 30);
        await expectMatchesReference(blocks, dtype, layout, 40);
      });
      it(`overflow: MERGE_OVERFLOW, weight unchanged: ${dtype} ${layout}`, async (ctx) => {
        if (!blocks) return ctx.skip();
        await expectOverflowLeavesWeight(blocks, dtype, layout);
      });
    }
});

describe("ort-webgpu backend (onnxruntime's WebGPU execution provider)", { timeout: 180_000 }, () => {
  let be: ComputeBackend | undefined;
  beforeAll(async () => {
    be = await start("ort-webgpu", () => createOrtBackend({ executionProvider: "webgpu", blockBytes: 1 << 16 }));
  }, 120_000);
  afterAll(async () => be?.dispose?.());
  for (const dtype of DTYPES)
    for (const layout of LAYOUTS)
      it(`matches the reference: ${dtype} ${layout}`, async (ctx) => {
        if (!be) return ctx.skip();
        await expectMatchesReference(be, dtype, layout, 50);
      });
});

import { describe, expect, it } from "vitest";
import { createBackend } from "../src/compute/create-backend.js";
import { createNodeBackend, NODE_BACKENDS } from "../src/compute/node/create-node-backend.js";
import { probeNodeBackends } from "../src/compute/node/probe-node-backends.js";
import { isVeraError } from "../src/errors.js";
import { randomTask } from "./compute-helpers.js";
import { checkMerge } from "../src/compute/check-merge.js";

describe("createBackend (browser-safe)", () => {
  it("auto without navigator.gpu takes the WebAssembly backend and says why", async () => {
    const be = await createBackend({ name: "auto" });
    expect(be.name).toBe("wasm");
    expect(be.info?.skipped?.[0]?.name).toBe("webgpu");
  });
  it("a named backend that cannot start is COMPUTE_UNAVAILABLE; an unknown name is COMPUTE_UNKNOWN_BACKEND", async () => {
    const e1 = await createBackend({ name: "webgpu" }).catch((x: unknown) => x);
    expect(isVeraError(e1) && e1.code).toBe("COMPUTE_UNAVAILABLE");
    const e2 = await createBackend({ name: "cuda" }).catch((x: unknown) => x);
    expect(isVeraError(e2) && e2.code).toBe("COMPUTE_UNKNOWN_BACKEND");
    const noAdapter = { requestAdapter: async () => null };
    const e3 = await createBackend({ name: "webgpu", gpu: noAdapter }).catch((x: unknown) => x);
    expect(isVeraError(e3) && e3.code).toBe("COMPUTE_UNAVAILABLE");
    expect((e3 as Error).message).toMatch(/no adapter/);
  });
});

describe("createNodeBackend", { timeout: 120_000 }, () => {
  it("auto picks a working backend, never a software adapter, and records what it skipped", async () => {
    const be = await createNodeBackend({});
    try {
      expect(NODE_BACKENDS).toContain(be.name);
      expect(be.info?.software ?? false).toBe(false);
      const t = randomTask({ out: 20, inF: 30, rank: 4, dtype: "F16", layout: "out_in", seed: 2 });
      const orig = t.weight.slice();
      await be.merge([t]);
      expect(checkMerge({ task: t, original: orig }).ok).toBe(true);
      for (const s of be.info?.skipped ?? []) expect(s.reason.length).toBeGreaterThan(0);
    } finally {
      await be.dispose?.();
    }
  });
  it("every backend is selectable by name; unavailable ones fail with a reason or fall back when asked", async () => {
    const probes = await probeNodeBackends();
    expect(probes.map((p) => p.name)).toEqual(NODE_BACKENDS.filter((n) => n !== "auto"));
    for (const p of probes) {
      if (p.available) continue;
      expect(p.reason).toBeTruthy();
      const e = await createNodeBackend({ name: p.name }).catch((x: unknown) => x);
      expect(isVeraError(e) && e.code).toBe("COMPUTE_UNAVAILABLE");
      const be = await createNodeBackend({ name: p.name, fallback: true });
      expect(be.name).not.toBe(p.name);
      expect(be.info?.skipped?.[0]?.name).toBe(p.name);
      await be.dispose?.();
    }
    const e = await createNodeBackend({ name: "tpu" }).catch((x: unknown) => x);
    expect(isVeraError(e) && e.code).toBe("COMPUTE_UNKNOWN_BACKEND");
  });
});

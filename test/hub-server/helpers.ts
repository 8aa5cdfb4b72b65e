/** Shared helpers of the Hub tests: adapters, temp folders, a no-wait retry policy. */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createAdapter } from "../../src/format/create.js";
import { writeVera } from "../../src/format/write.js";
import type { VeraAdapter } from "../../src/format/types.js";

export const TOKEN = "hf_testWriteTokenAbCdEf0123456789";
export const READ_TOKEN = "hf_testReadTokenZyXw9876543210";
export const OTHER_TOKEN = "hf_testOtherUserToken55555555";

/** Users of the loopback server: alice (write, org acme), rita (read only), bob (write). */
export const USERS = [
  { name: "alice", token: TOKEN, role: "write" as const, orgs: ["acme"] },
  { name: "rita", token: READ_TOKEN, role: "read" as const },
  { name: "bob", token: OTHER_TOKEN, role: "write" as const },
];

/** Retry quickly in tests: real counts, no waiting. */
export const FAST_RETRY = { maxRetries: 3, delayScale: 0 };

/** A small deterministic LCG for test data. */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
}

/** A trained-looking adapter: llama-style q_proj/v_proj over `layers` layers, random vectors. */
export function makeAdapter(
  opts: { layers?: number; rank?: number; seed?: number; baseModel?: string; taskType?: string } = {},
): VeraAdapter {
  const layers = opts.layers ?? 2;
  const modules = [];
  for (let i = 0; i < layers; i++) {
    modules.push({ name: `model.layers.${i}.self_attn.q_proj`, inFeatures: 32, outFeatures: 32 });
    modules.push({ name: `model.layers.${i}.self_attn.v_proj`, inFeatures: 32, outFeatures: 16 });
  }
  const a = createAdapter({
    modules,
    rank: opts.rank ?? 8,
    seed: opts.seed ?? 0,
    ...(opts.baseModel ? { baseModel: { id: opts.baseModel } } : {}),
  });
  const rnd = lcg(opts.seed ?? 1);
  for (const m of a.modules) {
    for (let k = 0; k < m.lambdaD.length; k++) m.lambdaD[k] = rnd();
    for (let k = 0; k < m.lambdaB.length; k++) m.lambdaB[k] = rnd();
  }
  if (opts.taskType) a.training = { ...(a.training ?? {}), task_type: opts.taskType };
  return a;
}

/** Canonical verakit bytes of {@link makeAdapter}. */
export function makeAdapterBytes(opts: Parameters<typeof makeAdapter>[0] = {}): Uint8Array {
  return writeVera({ adapter: makeAdapter(opts) });
}

/** A temp folder removed by the returned cleanup. */
export function tempDir(prefix = "vera-hub-"): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

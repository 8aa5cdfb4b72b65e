/** Node-only: the WebGPU backend on Dawn through the `webgpu` npm package. */
import { VeraError } from "../../errors.js";
import type { ComputeBackend } from "../backend.js";
import { ComputeErrorCode } from "../error-codes.js";
import {
  createWebGpuBackend,
  isSoftwareAdapter,
  type CreateWebGpuBackendParams,
  type GpuLike,
} from "../webgpu-backend.js";

/** Params of {@link createDawnBackend}. */
export interface CreateDawnBackendParams extends Omit<CreateWebGpuBackendParams, "gpu"> {
  /**
   * Dawn toggles and options passed to the package's `create()` (e.g. `["adapter=..."]`).
   * @default []
   */
  dawnOptions?: string[];
  /**
   * Look for an adapter in a child process first (see {@link probeDawnAdapter}) and load Dawn here only when
   * one that may be used exists. Dawn prints its driver errors (`BackendVk.cpp ... No such file or
   * directory`) straight to the process's stderr when it loads; the child's stderr is discarded.
   * @default true
   */
  probe?: boolean;
}

/** What {@link probeDawnAdapter} found. */
export type DawnProbe =
  | { ok: true; software: boolean; description: string }
  | {
      ok: false;
      /** Why no adapter: no `webgpu` package, no driver, or the probe failed. */
      reason: string;
    };

let cached: Promise<GpuLike> | undefined;
const probes = new Map<string, Promise<DawnProbe>>();

/** The `webgpu` package's entry file, resolved from this module (undefined when not installed). */
async function resolveWebgpu(): Promise<string | undefined> {
  const { createRequire } = await import("node:module");
  const here = typeof __filename === "string" ? __filename : import.meta.url;
  try {
    return createRequire(here).resolve("webgpu");
  } catch {
    return undefined;
  }
}

/** The child's program: load Dawn, ask for an adapter and a device, print one JSON line. Its stderr goes nowhere. */
const PROBE_SCRIPT = `
const { pathToFileURL } = await import("node:url");
const out = (o) => process.stdout.write(JSON.stringify(o) + "\\n");
try {
  const m = await import(pathToFileURL(process.argv[1]).href);
  const gpu = m.create(JSON.parse(process.argv[2]));
  const a = await gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!a) out({ adapter: null });
  else {
    const i = a.info ?? {};
    const d = await a.requestDevice();
    d.destroy?.();
    out({ adapter: { vendor: i.vendor, architecture: i.architecture, device: i.device, description: i.description,
      isFallbackAdapter: i.isFallbackAdapter === true || a.isFallbackAdapter === true } });
  }
} catch (e) {
  out({ error: String((e && e.message) || e) });
}
process.exit(0);
`;

/**
 * Whether Dawn finds a WebGPU adapter (and opens a device on it) here, asked in a child process whose stderr is discarded, so that the
 * driver messages Dawn prints while loading (no Vulkan driver, no ICD file) never reach this process's
 * output. Once per process; about one Node start-up.
 */
export function probeDawnAdapter(params: { dawnOptions?: string[]; timeoutMs?: number } = {}): Promise<DawnProbe> {
  const key = JSON.stringify(params.dawnOptions ?? []);
  let probed = probes.get(key);
  if (!probed) probes.set(key, (probed = runProbe(params)));
  return probed;
}

/** The probe itself (see {@link probeDawnAdapter}). */
async function runProbe(params: { dawnOptions?: string[]; timeoutMs?: number }): Promise<DawnProbe> {
  const entry = await resolveWebgpu();
  if (!entry) return { ok: false, reason: "the `webgpu` package is not installed (`npm i webgpu`)" };
  const { spawn } = await import("node:child_process");
  const text = await new Promise<string | Error>((resolve) => {
    const child = spawn(
      process.execPath,
      ["--input-type=module", "-e", PROBE_SCRIPT, entry, JSON.stringify(params.dawnOptions ?? [])],
      { stdio: ["ignore", "pipe", "ignore"], timeout: params.timeoutMs ?? 30_000, windowsHide: true },
    );
    let s = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (s += d));
    child.on("error", (e) => resolve(e));
    child.on("close", () => resolve(s));
  });
  if (text instanceof Error) return { ok: false, reason: `the WebGPU probe could not start: ${text.message}` };
  let r: { adapter?: Record<string, unknown> | null; error?: string };
  try {
    r = JSON.parse(text.trim().split("\n").pop() ?? "") as typeof r;
  } catch {
    return { ok: false, reason: "the WebGPU probe ended without an answer (Dawn crashed or timed out)" };
  }
  if (r.error !== undefined) return { ok: false, reason: `Dawn cannot start: ${r.error}` };
  if (!r.adapter)
    return {
      ok: false,
      reason: "no adapter found (no GPU, or no driver: on Linux without a GPU install Mesa's lavapipe)",
    };
  const a = r.adapter;
  return {
    ok: true,
    software: isSoftwareAdapter({ info: a }),
    description:
      [a["vendor"], a["architecture"], a["description"] || a["device"]].filter(Boolean).join(" / ") || "WebGPU adapter",
  };
}

/** Load the `webgpu` package and create its GPU object once per process. */
function loadDawnGpu(options: string[] = []): Promise<GpuLike> {
  cached ??= (async () => {
    try {
      const m = (await import("webgpu")) as unknown as { create(o: string[]): GpuLike };
      return m.create(options);
    } catch (e) {
      cached = undefined;
      throw new VeraError(
        ComputeErrorCode.COMPUTE_UNAVAILABLE,
        `the \`webgpu\` package cannot be loaded (${(e as Error).message}); install it with \`npm i webgpu\` or choose another backend`,
        { expected: "the webgpu package installed", received: "not loadable", cause: e },
      );
    }
  })();
  return cached;
}

function unavailable(reason: string): VeraError {
  return new VeraError(ComputeErrorCode.COMPUTE_UNAVAILABLE, `WebGPU backend unavailable: ${reason}`, {
    expected: "a WebGPU adapter",
    received: reason,
  });
}

/**
 * The WebGPU backend in Node: Dawn (the `webgpu` npm package) with whatever adapter the system
 * has (Vulkan, Metal, D3D12; Mesa's lavapipe on machines without a GPU). Unless `probe: false`, a child
 * process looks for the adapter first, so a machine without one gets a typed error and no native output.
 */
export async function createDawnBackend(params: CreateDawnBackendParams = {}): Promise<ComputeBackend> {
  if (params.probe !== false) {
    const p = await probeDawnAdapter(params.dawnOptions ? { dawnOptions: params.dawnOptions } : {});
    if (!p.ok) throw unavailable(p.reason);
    if (p.software && params.allowSoftware === false)
      throw unavailable(`only a software adapter was found (${p.description})`);
  }
  const gpu = await loadDawnGpu(params.dawnOptions ?? []);
  return createWebGpuBackend({ ...params, gpu, name: params.name ?? "webgpu" });
}

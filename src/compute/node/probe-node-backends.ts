import { NODE_BACKENDS, startNodeBackend } from "./create-node-backend.js";
import { probeDawnAdapter } from "./webgpu-node.js";

/** Availability of one backend, as {@link probeNodeBackends} reports it. */
export interface BackendProbe {
  name: string;
  available: boolean;
  /** Where it would run, when available. */
  device?: string;
  software?: boolean;
  /** Why not, when unavailable. */
  reason?: string;
}

/**
 * Try to start every Node backend (and release it again); what a `vera backends` listing shows. Silent: the
 * WebGPU adapter is looked for in a child process first (see probeDawnAdapter), and when Dawn finds none,
 * onnxruntime's WebGPU provider (Dawn too, on the same drivers) is not loaded either, since loading it would
 * print the same driver errors.
 */
export async function probeNodeBackends(): Promise<BackendProbe[]> {
  const out: BackendProbe[] = [];
  const dawn = await probeDawnAdapter();
  for (const name of NODE_BACKENDS) {
    if (name === "auto") continue;
    if (name === "ort-webgpu" && !dawn.ok && !/not installed/.test(dawn.reason)) {
      out.push({ name, available: false, reason: `Dawn finds no WebGPU adapter here: ${dawn.reason}` });
      continue;
    }
    if (name === "webgpu") {
      // the child process opened a device on the adapter: all a listing needs, and Dawn stays out of this process
      out.push(
        dawn.ok
          ? { name, available: true, device: dawn.description, ...(dawn.software ? { software: true } : {}) }
          : { name, available: false, reason: `WebGPU backend unavailable: ${dawn.reason}` },
      );
      continue;
    }
    try {
      const be = await startNodeBackend(name, {}, false);
      out.push({
        name,
        available: true,
        device: be.info?.device ?? "",
        ...(be.info?.software ? { software: true } : {}),
      });
      await be.dispose?.();
    } catch (e) {
      out.push({ name, available: false, reason: (e as Error).message });
    }
  }
  return out;
}

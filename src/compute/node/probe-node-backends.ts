import { NODE_BACKENDS, startNodeBackend } from "./create-node-backend.js";

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

/** Try to start every Node backend (and release it again); what a `vera backends` listing shows. */
export async function probeNodeBackends(): Promise<BackendProbe[]> {
  const out: BackendProbe[] = [];
  for (const name of NODE_BACKENDS) {
    if (name === "auto") continue;
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

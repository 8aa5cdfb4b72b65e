import { encodeVera } from "./encode-vera.js";
import { validateVera } from "./validate.js";

/** True when `bytes` are a valid verakit file and exactly what {@link writeVera} produces for the adapter they hold. */
export function isCanonical(bytes: Uint8Array): boolean {
  const r = validateVera(bytes, { checkCanonical: false });
  if (!r.ok || !r.adapter) return false;
  const again = encodeVera({ adapter: r.adapter, ...(r.digest ? { dataDigest: r.digest.actual } : {}) });
  if (again.length !== bytes.length) return false;
  for (let i = 0; i < again.length; i++) if (again[i] !== bytes[i]) return false;
  return true;
}

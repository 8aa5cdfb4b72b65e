/**
 * The module-path matching rules every weight locator shares (ONNX graphs, safetensors checkpoints,
 * GGUF files, grafting): a wrapper prefix on either side, suffix matches at a `.` boundary, and the
 * modules that are parts of a fused weight. A leaf: it imports nothing.
 */

/** How a module path was matched to a container's path. */
export type PathMatchKind = "exact" | "suffix";

/**
 * How well a container-side path matches a module path: Infinity when equal, else the number of
 * dot-separated components the shorter one shares as a suffix of the other (a wrapper prefix on
 * either side), 0 when they do not match.
 */
export function pathMatchScore(path: string, module: string): number {
  if (path === module) return Infinity;
  if (path.endsWith("." + module)) return module.split(".").length;
  if (module.endsWith("." + path)) return path.split(".").length;
  return 0;
}

/** One candidate of {@link bestPathMatches}: an item known by one or more paths. */
export interface PathCandidate<T> {
  item: T;
  paths: readonly string[];
}

/** A candidate whose path matched. */
export interface PathMatch<T> {
  item: T;
  /** The container-side path that matched. */
  path: string;
  kind: PathMatchKind;
}

/**
 * The candidates that match a module path best: the exact matches when there are any, else the
 * suffix matches sharing the most path components. Each candidate counts once (its best path).
 */
export function bestPathMatches<T>(module: string, candidates: Iterable<PathCandidate<T>>): PathMatch<T>[] {
  const scored: Array<{ match: PathMatch<T>; score: number }> = [];
  for (const c of candidates) {
    let best: { match: PathMatch<T>; score: number } | undefined;
    for (const path of c.paths) {
      const score = pathMatchScore(path, module);
      if (score === 0 || (best && best.score >= score)) continue;
      best = { match: { item: c.item, path, kind: score === Infinity ? "exact" : "suffix" }, score };
    }
    if (best) scored.push(best);
  }
  const top = Math.max(0, ...scored.map((s) => s.score));
  return scored.filter((s) => s.score === top).map((s) => s.match);
}

/**
 * Fused weights other exporters build from separate modules, by the fused module's last path
 * component: its parts in storage order (row blocks of the fused weight). onnxruntime-genai fuses
 * q/k/v into `qkv_proj` and gate/up into `gate_up_proj`. A model that has these modules itself (Phi-3)
 * is matched by the whole path first: a part is only looked for when the adapter names a part.
 */
export const FUSED_PARTS: Readonly<Record<string, readonly string[]>> = {
  qkv_proj: ["q_proj", "k_proj", "v_proj"],
  gate_up_proj: ["gate_proj", "up_proj"],
};

/** The fused layout of a module path (`model.layers.0.attn.qkv_proj`): its prefix and parts, or undefined. */
export function fusedPartsOf(path: string): { prefix: string; parts: readonly string[] } | undefined {
  const dot = path.lastIndexOf(".");
  const last = path.slice(dot + 1);
  const parts = Object.hasOwn(FUSED_PARTS, last) ? FUSED_PARTS[last] : undefined;
  return parts ? { prefix: path.slice(0, dot + 1), parts } : undefined;
}

/**
 * Where the parts of a fused weight lie, given the out features of the parts the adapter names:
 * a part starts where the sum of the parts before it ends (all of them named), or ends where the
 * parts after it start (all of them named, counted back from `total`). Undefined for a part whose
 * place depends on a part the adapter does not name.
 */
export function fusedPartRanges(
  parts: readonly string[],
  sizes: ReadonlyMap<string, number>,
  total: number,
): Map<string, [number, number] | undefined> {
  const out = new Map<string, [number, number] | undefined>();
  parts.forEach((part, i) => {
    const size = sizes.get(part);
    if (size === undefined) return;
    const before = parts.slice(0, i).map((p) => sizes.get(p));
    const after = parts.slice(i + 1).map((p) => sizes.get(p));
    if (before.every((s) => s !== undefined)) {
      const start = before.reduce<number>((a, s) => a + s!, 0);
      out.set(part, [start, start + size]);
    } else if (after.every((s) => s !== undefined)) {
      const end = total - after.reduce<number>((a, s) => a + s!, 0);
      out.set(part, [end - size, end]);
    } else out.set(part, undefined);
  });
  return out;
}

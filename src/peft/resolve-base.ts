/**
 * Matching adapter module paths to base-model modules.
 * @internal
 */
import { VeraError } from "../errors.js";
import type { Layout } from "../format/types.js";
import type { BaseModule, BaseModuleShape, BaseShapes } from "./base-shapes.js";
import { PeftErrorCode } from "./error-codes.js";

function lastPart(p: string): string {
  const k = p.lastIndexOf(".");
  return k < 0 ? p : p.slice(k + 1);
}

/** An index of base modules by the last component of every name they are known by. */
export class BaseIndex {
  private readonly byLast = new Map<string, Array<{ name: string; module: BaseModule }>>();
  constructor(readonly base: BaseShapes) {
    for (const m of base.modules) {
      for (const name of [m.path, ...(m.aliases ?? [])]) {
        const k = lastPart(name);
        let list = this.byLast.get(k);
        if (!list) this.byLast.set(k, (list = []));
        list.push({ name, module: m });
      }
    }
  }

  /**
   * The base module for an adapter path: an exact name, else the one whose name is a dot-suffix of the
   * path or has the path as a dot-suffix (wrapper prefixes such as `m.` or task prefixes such as `bert.`).
   * Several candidates with the same shapes count as one.
   */
  find(path: string): BaseModule | undefined {
    const list = this.byLast.get(lastPart(path)) ?? [];
    const exact = list.find((e) => e.name === path);
    if (exact) return exact.module;
    const hits = new Set<BaseModule>();
    for (const e of list) if (e.name.endsWith("." + path) || path.endsWith("." + e.name)) hits.add(e.module);
    if (hits.size === 0) return undefined;
    const arr = [...hits];
    // prefer the longest common suffix
    const score = (m: BaseModule) =>
      Math.max(
        ...[m.path, ...(m.aliases ?? [])].map((n) =>
          n.endsWith("." + path) || path.endsWith("." + n) ? Math.min(n.length, path.length) : 0,
        ),
      );
    const best = Math.max(...arr.map(score));
    const top = arr.filter((m) => score(m) === best);
    const sig = (m: BaseModule) => JSON.stringify(m.shapes);
    if (top.length > 1 && new Set(top.map(sig)).size > 1)
      throw new VeraError(
        PeftErrorCode.PEFT_BASE_AMBIGUOUS,
        `module "${path}" matches ${top.length} modules of the base (${top
          .map((m) => m.path)
          .slice(0, 4)
          .join(", ")}) with different shapes`,
        {
          path,
          received: top.map((m) => m.path),
        },
      );
    return top[0];
  }
}

/** The shape of one adapter module, chosen among the base's candidates. */
export function chooseShape(params: {
  path: string;
  module: BaseModule;
  outFeatures: number;
  fanInFanOut: boolean;
  baseLabel: string;
}): { inFeatures: number; outFeatures: number; layout: Layout } {
  const { path, module, outFeatures, fanInFanOut } = params;
  const fits = module.shapes.filter((s) => s.outFeatures === outFeatures);
  if (fits.length === 0) {
    const outs = [...new Set(module.shapes.map((s) => s.outFeatures))].join(" or ");
    throw new VeraError(
      PeftErrorCode.PEFT_BASE_SHAPE,
      `module "${path}": vera_lambda_b has ${outFeatures} entries but ${params.baseLabel} gives out_features ${outs} for "${module.path}"`,
      {
        path,
        expected: outs,
        received: outFeatures,
      },
    );
  }
  const wanted: Layout = fanInFanOut ? "conv1d" : "linear";
  const pick: BaseModuleShape =
    fits.find((s) => s.layout === wanted) ?? fits.find((s) => s.layout === undefined) ?? fits[0]!;
  return { inFeatures: pick.inFeatures, outFeatures: pick.outFeatures, layout: pick.layout ?? wanted };
}

import type { CarriedPlacement } from "./carried-values.js";
import type { ContainerWeight } from "./container.js";
import type { MergeReportCarried } from "./merge-report.js";

/**
 * The report's rows of the carried tensors among a container's weights (`copyName`: an untied copy's name), and of
 * the biases added to the model (`added`: the model held no tensor for them).
 */
export function carriedReportRows<W extends ContainerWeight>(
  weights: readonly W[],
  copyName: (w: W) => string | undefined = () => undefined,
  added: ReadonlyArray<{ placement: CarriedPlacement }> = [],
): MergeReportCarried[] {
  const rows: MergeReportCarried[] = [];
  for (const { placement: c } of added)
    if (c.target.kind !== "other")
      rows.push({
        tensor: c.target.tensor.name,
        kind: c.target.kind,
        param: c.target.param,
        target: c.tensor,
        added: true,
        matchedBy: c.matchedBy,
        dtype: c.dtype,
        transposed: false,
      });
  for (const w of weights) {
    const c = w.carried?.placement;
    if (!c || c.target.kind === "other") continue;
    const copy = copyName(w);
    rows.push({
      tensor: c.target.tensor.name,
      kind: c.target.kind,
      param: c.target.param,
      target: copy ?? c.tensor,
      ...(copy !== undefined ? { untiedFrom: c.tensor } : {}),
      matchedBy: c.matchedBy,
      dtype: c.dtype,
      transposed: c.transposed,
    });
  }
  return rows.sort((a, b) => (a.tensor < b.tensor ? -1 : a.tensor > b.tensor ? 1 : 0));
}

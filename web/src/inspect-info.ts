import { summarizeAdapter, type AdapterSummary, type ValidationResult, type VeraAdapter } from "verakit/format";
import type { Issue } from "verakit";
import type { PeftAdapterDescription, PeftValidationResult } from "verakit/peft";

/** What `vera inspect --json --modules` prints for a file, computed the same way. */
export interface InspectInfo extends AdapterSummary {
  file: string;
  fileBytes: number;
  /** Bytes of the trained vectors (lambda_d and lambda_b of every module). */
  vectorBytes: number;
  formatVersion: string | undefined;
  digest: ValidationResult["digest"] | null;
  warnings: Issue[];
}

/** Bytes of an adapter's trained vectors. */
export function vectorBytesOf(adapter: VeraAdapter): number {
  const n = adapter.modules.reduce((s, m) => s + m.lambdaD.length + m.lambdaB.length, 0);
  return n * (adapter.vectorDtype === "F32" ? 4 : 2);
}

/** The inspect view of a valid verakit file (as `vera inspect` computes it). */
export function inspectInfo(params: { file: string; fileBytes: number; validation: ValidationResult }): InspectInfo {
  const r = params.validation;
  const s = summarizeAdapter(r.adapter!);
  return {
    file: params.file,
    fileBytes: params.fileBytes,
    vectorBytes: vectorBytesOf(r.adapter!),
    formatVersion: r.version,
    digest: r.digest ?? null,
    warnings: r.warnings,
    ...s,
  };
}

/** The rows the page shows for a PEFT adapter described without importing it (as `vera inspect` prints them). */
export function peftDescriptionRows(d: PeftAdapterDescription, v: PeftValidationResult): Array<[string, string]> {
  const rows: Array<[string, string]> = [
    [
      "PEFT adapter",
      `${d.peftType ?? "(no adapter_config.json)"}${d.peftVersion ? `, written by peft ${d.peftVersion}` : ""}`,
    ],
    ["base model", `${d.baseModel ?? "(not recorded)"}${d.taskType ? `, task type ${d.taskType}` : ""}`],
    [
      "rank",
      `${d.rank ?? "?"}, seed ${d.seed ?? "?"}, projections ${d.projections.stored ? "stored" : "not stored (regenerated from the seed)"}`,
    ],
    ["targets", JSON.stringify(d.targetModules)],
    ["modules", String(d.modules.length)],
  ];
  for (const c of d.carried) rows.push(["carried", `${c.name} (${c.kind}${c.param ? `, replaces ${c.param}` : ""})`]);
  rows.push(["import", v.ok ? d.importCommand : "import-peft refuses it as it is"]);
  return rows;
}

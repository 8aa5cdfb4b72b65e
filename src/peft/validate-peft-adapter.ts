import { isVeraError, type Issue } from "../errors.js";
import type { SafetensorsFile } from "../safetensors/parse.js";
import type { BaseShapes } from "./base-shapes.js";
import { PeftErrorCode } from "./error-codes.js";
import { importPeft, type ImportPeftReport } from "./import-peft.js";

/** Parameters of {@link validatePeftAdapter}. */
export interface ValidatePeftAdapterParams {
  /** adapter_config.json's text; undefined when only the weights were given (then PEFT_CONFIG_MISSING). */
  configText: string | undefined;
  /** The parsed adapter_model.safetensors. */
  weights: SafetensorsFile;
  /** The base model's shapes, to check the dimensions too. @default undefined */
  base?: BaseShapes;
  /** Where the config came from, for messages. @default "adapter_config.json" */
  configLabel?: string;
  /** The adapter's name. @default "default" */
  adapterName?: string;
}

/** What {@link validatePeftAdapter} found. */
export interface PeftValidationResult {
  /** No issue: `vera import-peft` takes it (with `--base` when `needsBase`). */
  ok: boolean;
  /** Every problem found, with stable codes (`PEFT_*`); import stops at the first, so at most one today. */
  issues: Issue[];
  /** Importer warnings, and PEFT_BASE_REQUIRED when the dimensions could not be checked without a base. */
  warnings: Array<Omit<Issue, "code"> & { code: Issue["code"] | "PEFT_WARNING" }>;
  /** True when in_features cannot be proven without a base model: import with `--base`. */
  needsBase: boolean;
  /** The import report when the import went through. */
  report?: ImportPeftReport;
}

function issueOf(e: unknown): Issue[] {
  if (!isVeraError(e)) throw e;
  if (e.issues.length > 0) return e.issues;
  return [
    {
      code: e.code,
      message: e.message,
      ...(e.path !== undefined ? { path: e.path } : {}),
      ...(e.expected !== undefined ? { expected: e.expected } : {}),
      ...(e.received !== undefined ? { received: e.received } : {}),
    },
  ];
}

/**
 * Check a PEFT VeRA adapter as `vera import-peft` would, without writing anything: the config, every vector and
 * projection, and the dimensions (against `base`, or proven from the adapter alone). A missing base is not a flaw
 * of the adapter: it gives `needsBase` and a PEFT_BASE_REQUIRED warning instead of an issue.
 */
export function validatePeftAdapter(params: ValidatePeftAdapterParams): PeftValidationResult {
  const label = params.configLabel ?? "adapter_config.json";
  if (params.configText === undefined)
    return {
      ok: false,
      issues: [
        {
          code: PeftErrorCode.PEFT_CONFIG_MISSING,
          message:
            `${label} is missing: a PEFT adapter is the folder that save_pretrained wrote, with adapter_config.json ` +
            "beside adapter_model.safetensors; import-peft needs both",
          path: label,
          expected: "adapter_config.json",
          received: "missing",
        },
      ],
      warnings: [],
      needsBase: false,
    };
  try {
    const { report } = importPeft({
      config: params.configText,
      weights: params.weights,
      configLabel: label,
      ...(params.base ? { base: params.base } : {}),
      ...(params.adapterName !== undefined ? { adapterName: params.adapterName } : {}),
    });
    const warnings = report.warnings.map((message) => ({ code: "PEFT_WARNING" as const, message }));
    return { ok: true, issues: [], warnings, needsBase: false, report };
  } catch (e) {
    const issues = issueOf(e);
    if (issues.length === 1 && issues[0]!.code === PeftErrorCode.PEFT_BASE_REQUIRED)
      return { ok: true, issues: [], warnings: issues, needsBase: true };
    return { ok: false, issues, warnings: [], needsBase: false };
  }
}

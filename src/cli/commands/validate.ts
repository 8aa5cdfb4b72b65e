import { isVeraError, type Issue } from "../../errors.js";
import { nodeFileAccess } from "../../node/node-file-access.js";
import { readBaseShapes } from "../../node/read-base-shapes.js";
import type { BaseShapes } from "../../peft/base-shapes.js";
import { checkAdapterSource } from "../../peft/load/check-adapter-source.js";
import { UsageError, type Command } from "../command.js";

/** One path's result, as `--json` lists it. */
interface FileResult {
  file: string;
  format: "vera" | "peft";
  ok: boolean;
  version: string | null;
  issues: Issue[];
  warnings: Array<Omit<Issue, "code"> & { code: Issue["code"] | "PEFT_WARNING" }>;
  /** PEFT: the command that imports it. */
  importCommand?: string;
}

/** Check one path: a verakit file against the format, a PEFT adapter as import-peft would. */
async function check(
  path: string,
  base: { shapes: BaseShapes; arg: string } | undefined,
  adapterName: string | undefined,
): Promise<FileResult> {
  let r;
  try {
    r = await checkAdapterSource({
      source: { files: nodeFileAccess(), path },
      ...(adapterName !== undefined ? { adapterName } : {}),
      ...(base ? { base: base.shapes, baseArg: base.arg } : {}),
    });
  } catch (e) {
    // a PEFT folder that cannot be read as one (a pickle, a missing file) is that folder's issue; I/O fails the run
    if (!isVeraError(e) || e.code.startsWith("IO_")) throw e;
    const issues =
      e.issues.length > 0 ? e.issues : [{ code: e.code, message: e.message, ...(e.path ? { path: e.path } : {}) }];
    return { file: path, format: "peft", ok: false, version: null, issues, warnings: [] };
  }
  if (r.format === "vera") {
    const v = r.validation;
    return { file: path, format: "vera", ok: v.ok, version: v.version ?? null, issues: v.issues, warnings: v.warnings };
  }
  const v = r.validation;
  return {
    file: path,
    format: "peft",
    ok: v.ok,
    version: null,
    issues: v.issues,
    warnings: v.warnings,
    ...(v.ok ? { importCommand: r.description.importCommand } : {}),
  };
}

const command: Command = {
  name: "validate",
  summary: "Check verakit files (or PEFT folders) and list every issue",
  description:
    "Check verakit files against the format specification, listing every issue with a stable code. A PEFT adapter " +
    "folder (or its adapter_model.safetensors) is checked as `vera import-peft` would (with --base, its dimensions too).",
  usage: "vera validate FILE|DIR... [--json] [--base PATH] [--adapter NAME]",
  options: { base: { type: "string" }, adapter: { type: "string" } },
  async run({ values, positionals }, ctx) {
    if (positionals.length === 0) throw new UsageError("expected at least one FILE");
    const arg = values["base"] !== undefined ? String(values["base"]) : undefined;
    const base = arg !== undefined ? { shapes: await readBaseShapes({ path: arg }), arg } : undefined;
    const adapterName = values["adapter"] !== undefined ? String(values["adapter"]) : undefined;
    const results: FileResult[] = [];
    let bad = 0;
    for (const path of positionals) {
      const r = await check(path, base, adapterName);
      if (!r.ok) bad++;
      results.push(r);
      if (!ctx.json) {
        const what = r.format === "peft" ? "PEFT adapter, " : "";
        ctx.out(
          `${path}: ${what}${r.ok ? "valid" : `INVALID (${r.issues.length} issue${r.issues.length === 1 ? "" : "s"})`}`,
        );
        for (const i of r.issues)
          ctx.out(
            `  ${i.code}${i.path ? ` at ${i.path}` : ""}: ${i.message}${i.expected !== undefined ? ` (expected ${fmt(i.expected)}, found ${fmt(i.received)})` : ""}`,
          );
        for (const w of r.warnings) ctx.out(`  warning ${w.code}${w.path ? ` at ${w.path}` : ""}: ${w.message}`);
        if (r.importCommand) ctx.out(`  import: ${r.importCommand}`);
      }
    }
    if (ctx.json) ctx.out(JSON.stringify({ ok: bad === 0, files: results }, null, 2));
    return bad === 0 ? 0 : 1;
  },
};

function fmt(v: unknown): string {
  return typeof v === "string" ? v : JSON.stringify(v);
}
export default command;

import { validateVera } from "../../format/validate.js";
import { readFileBytes } from "../../node/files.js";
import { UsageError, type Command } from "../command.js";

const command: Command = {
  name: "validate",
  summary: "Check verakit files against the format specification, listing every issue",
  usage: "vera validate FILE... [--json]",
  options: {},
  async run({ positionals }, ctx) {
    if (positionals.length === 0) throw new UsageError("expected at least one FILE");
    const results = [];
    let bad = 0;
    for (const path of positionals) {
      const r = validateVera(await readFileBytes(path));
      if (!r.ok) bad++;
      results.push({ file: path, ok: r.ok, version: r.version ?? null, issues: r.issues, warnings: r.warnings });
      if (!ctx.json) {
        ctx.out(`${path}: ${r.ok ? "valid" : `INVALID (${r.issues.length} issue${r.issues.length === 1 ? "" : "s"})`}`);
        for (const i of r.issues)
          ctx.out(
            `  ${i.code}${i.path ? ` at ${i.path}` : ""}: ${i.message}${i.expected !== undefined ? ` (expected ${fmt(i.expected)}, found ${fmt(i.received)})` : ""}`,
          );
        for (const w of r.warnings) ctx.out(`  warning ${w.code}${w.path ? ` at ${w.path}` : ""}: ${w.message}`);
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

import { summarizeAdapter } from "../../format/summary.js";
import { validateVera } from "../../format/validate.js";
import { VeraError } from "../../errors.js";
import { readFileBytes } from "../../node/files.js";
import { UsageError, type Command } from "../command.js";

const command: Command = {
  name: "inspect",
  summary: "Show an adapter's base model, modules, rank, seed, sizes and digest status",
  usage: "vera inspect FILE [--json] [--modules]",
  options: { modules: { type: "boolean" } },
  async run({ values, positionals }, ctx) {
    if (positionals.length !== 1) throw new UsageError("expected exactly one FILE");
    const path = positionals[0]!;
    const bytes = await readFileBytes(path);
    const r = validateVera(bytes);
    if (!r.ok || !r.adapter) throw VeraError.fromIssues(r.issues);
    const s = summarizeAdapter(r.adapter);
    const vectorBytes =
      r.adapter.modules.reduce((n, m) => n + (m.lambdaD.length + m.lambdaB.length), 0) *
      (s.vectorDtype === "F32" ? 4 : 2);
    const info = {
      file: path,
      fileBytes: bytes.length,
      vectorBytes,
      formatVersion: r.version,
      digest: r.digest ?? null,
      warnings: r.warnings,
      ...s,
    };
    if (ctx.json) {
      ctx.out(JSON.stringify({ ok: true, ...info, modules: values["modules"] ? s.modules : undefined }, null, 2));
      return 0;
    }
    const kib = (n: number) => `${(n / 1024).toFixed(1)} KiB`;
    ctx.out(`${path}: verakit adapter, format ${r.version}`);
    ctx.out(
      `  base model:   ${s.baseModel?.id ?? "(not recorded)"}${s.baseModel?.revision ? ` @ ${s.baseModel.revision}` : ""}`,
    );
    ctx.out(
      `  rank:         ${s.rank}   projections: A ${s.rank}x${s.maxIn}, B ${s.maxOut}x${s.rank} (${s.projectionStorage}${s.projectionRounding !== "none" ? `, rounded to ${s.projectionRounding}` : ""})`,
    );
    ctx.out(`  PRNG:         ${s.prng.algorithm}, seed ${s.prng.seed}, ${s.prng.arithmetic} arithmetic`);
    ctx.out(
      `  modules:      ${s.moduleCount} (${s.parameterCount.toLocaleString("en-US")} trainable parameters, vectors ${s.vectorDtype})`,
    );
    for (const t of s.targets) ctx.out(`    ${t.suffix.padEnd(14)} x${t.count}  ${t.shapes.join(", ")} (${t.layout})`);
    if (values["modules"])
      for (const m of s.modules) ctx.out(`    ${m.name}  ${m.outFeatures}x${m.inFeatures} ${m.layout}`);
    if (s.extraTensors.length) ctx.out(`  extra tensors: ${s.extraTensors.join(", ")}`);
    ctx.out(`  size:         ${kib(bytes.length)} file, ${kib(vectorBytes)} of vectors`);
    ctx.out(`  digest:       sha256 ${r.digest?.ok ? "ok" : "not checked"} (${r.digest?.actual.slice(0, 16)}...)`);
    for (const w of r.warnings) ctx.out(`  warning ${w.code}: ${w.message}`);
    return 0;
  },
};
export default command;

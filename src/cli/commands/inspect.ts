import { summarizeAdapter } from "../../format/summary.js";
import type { ValidationResult } from "../../format/validate.js";
import { VeraError } from "../../errors.js";
import { nodeFileAccess } from "../../node/node-file-access.js";
import { readBaseShapes } from "../../node/read-base-shapes.js";
import type { PeftAdapterDescription } from "../../peft/describe-peft-adapter.js";
import { checkAdapterSource } from "../../peft/load/check-adapter-source.js";
import type { PeftValidationResult } from "../../peft/validate-peft-adapter.js";
import { UsageError, type Command, type CliContext } from "../command.js";

const kib = (n: number) => `${(n / 1024).toFixed(1)} KiB`;

/** A verakit file, as `vera inspect` has always shown it. */
function showVera(path: string, fileBytes: number, r: ValidationResult, modules: boolean, ctx: CliContext): number {
  if (!r.ok || !r.adapter) throw VeraError.fromIssues(r.issues);
  const s = summarizeAdapter(r.adapter);
  const vectorBytes =
    r.adapter.modules.reduce((n, m) => n + (m.lambdaD.length + m.lambdaB.length), 0) *
    (s.vectorDtype === "F32" ? 4 : 2);
  const info = {
    file: path,
    fileBytes,
    vectorBytes,
    formatVersion: r.version,
    digest: r.digest ?? null,
    warnings: r.warnings,
    ...s,
  };
  if (ctx.json) {
    ctx.out(JSON.stringify({ ok: true, ...info, modules: modules ? s.modules : undefined }, null, 2));
    return 0;
  }
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
  if (modules) for (const m of s.modules) ctx.out(`    ${m.name}  ${m.outFeatures}x${m.inFeatures} ${m.layout}`);
  if (s.extraTensors.length) ctx.out(`  extra tensors: ${s.extraTensors.join(", ")}`);
  ctx.out(`  size:         ${kib(fileBytes)} file, ${kib(vectorBytes)} of vectors`);
  ctx.out(`  digest:       sha256 ${r.digest?.ok ? "ok" : "not checked"} (${r.digest?.actual.slice(0, 16)}...)`);
  for (const w of r.warnings) ctx.out(`  warning ${w.code}: ${w.message}`);
  return 0;
}

/** A PEFT adapter (folder or weights file): what it holds, whether import-peft takes it, and the command. */
function showPeft(
  d: PeftAdapterDescription,
  v: PeftValidationResult,
  fileBytes: number,
  modules: boolean,
  ctx: CliContext,
): number {
  if (ctx.json) {
    const { modules: mods, ...rest } = d;
    ctx.out(
      JSON.stringify(
        {
          ok: v.ok,
          ...rest,
          fileBytes,
          moduleCount: mods.length,
          modules: modules ? mods : undefined,
          importable: v.ok,
          needsBase: v.needsBase,
          issues: v.issues,
          warnings: v.warnings,
        },
        null,
        2,
      ),
    );
    return v.ok ? 0 : 1;
  }
  const kind = d.peftType === "VERA" ? "PEFT VeRA adapter" : `PEFT adapter (peft_type ${d.peftType ?? "unknown"})`;
  ctx.out(
    `${d.path}: ${d.hasConfig ? kind : "PEFT VeRA weights without adapter_config.json"}` +
      `${d.adapterName !== "default" ? ` "${d.adapterName}"` : ""}, not a verakit file` +
      `${d.peftVersion ? ` (written by peft ${d.peftVersion})` : ""}`,
  );
  ctx.out(`  base model:   ${d.baseModel ?? "(not recorded)"}${d.taskType ? `   task type: ${d.taskType}` : ""}`);
  const proj = d.projections.stored
    ? `stored (vera_A ${d.projections.A?.join("x") ?? "-"}, vera_B ${d.projections.B?.join("x") ?? "-"})`
    : "not stored (regenerated from the seed)";
  ctx.out(`  rank:         ${d.rank ?? "?"}   seed ${d.seed ?? "?"}   projections: ${proj}`);
  ctx.out(`  targets:      ${JSON.stringify(d.targetModules)}`);
  ctx.out(`  modules:      ${d.modules.length}`);
  if (modules) for (const m of d.modules) ctx.out(`    ${m.name}  out ${m.outFeatures}`);
  for (const c of d.carried)
    ctx.out(
      `  carried:      ${c.name} ${c.dtype} [${c.shape.join(", ")}] (${c.kind}${c.param ? `, replaces ${c.param}` : ""})`,
    );
  if (d.otherAdapters.length) ctx.out(`  other adapters: ${d.otherAdapters.join(", ")} (choose with --adapter NAME)`);
  ctx.out(`  size:         ${kib(fileBytes)}`);
  for (const i of v.issues) ctx.out(`  ${i.code}${i.path ? ` at ${i.path}` : ""}: ${i.message}`);
  for (const w of v.warnings) ctx.out(`  warning ${w.code}: ${w.message}`);
  ctx.out(
    v.ok
      ? `  import:       ${d.importCommand}${v.needsBase ? "   (BASE: its config.json, model.safetensors or model.onnx)" : ""}`
      : `  import-peft refuses it as it is (see above)`,
  );
  return v.ok ? 0 : 1;
}

const command: Command = {
  name: "inspect",
  summary: "Show what an adapter (verakit file or PEFT folder) holds",
  description:
    "Show what an adapter holds. A verakit file: base model, modules, rank, seed, sizes and digest status. A PEFT " +
    "adapter folder (or its adapter_model.safetensors): peft_type, r, seed, targets, modules, carried tensors " +
    "(modules_to_save heads, biases) and whether the projections are stored, checked as `vera import-peft` would " +
    "(with --base, its dimensions too), and the import-peft command to run.",
  usage: "vera inspect FILE|DIR [--json] [--modules] [--base PATH] [--adapter NAME]",
  options: { modules: { type: "boolean" }, base: { type: "string" }, adapter: { type: "string" } },
  async run({ values, positionals }, ctx) {
    if (positionals.length !== 1) throw new UsageError("expected exactly one FILE or DIR");
    const path = positionals[0]!;
    const base = values["base"] !== undefined ? await readBaseShapes({ path: String(values["base"]) }) : undefined;
    const r = await checkAdapterSource({
      source: { files: nodeFileAccess(), path },
      ...(values["adapter"] !== undefined ? { adapterName: String(values["adapter"]) } : {}),
      ...(base ? { base, baseArg: String(values["base"]) } : {}),
    });
    const modules = values["modules"] === true;
    if (r.format === "vera") return showVera(path, r.fileBytes, r.validation, modules, ctx);
    return showPeft(r.description, r.validation, r.fileBytes, modules, ctx);
  },
};
export default command;

import { writePeftFolder } from "../../node/peft-folder.js";
import { exportPeft } from "../../peft/export-peft.js";
import { UsageError, type Command } from "../command.js";
import { adapterInputOptions, loadAdapterFromArgs } from "../adapter-input.js";
import { cliOptions } from "../options.js";

const command: Command = {
  name: "export-peft",
  summary: "Write a verakit adapter as a PEFT VeRA folder that PEFT loads unchanged",
  description:
    "Write a verakit adapter as a PEFT VeRA folder that PEFT loads unchanged (config as PEFT writes it, PEFT's keys, " +
    "projections identical to what PEFT regenerates). --peft-compat VERSION drops config fields that older PEFT rejects.",
  usage: "vera export-peft FILE -o DIR [--save-projection | --no-save-projection] [--peft-compat VERSION]",
  options: {
    ...cliOptions({ strings: ["output", "peft-compat"], flags: ["save-projection", "no-save-projection"] }),
    ...adapterInputOptions,
  },
  async run({ values, positionals }, ctx) {
    const out = values["output"] as string | undefined;
    if (positionals.length !== 1) throw new UsageError("give exactly one adapter file");
    if (!out) throw new UsageError("-o DIR is required");
    if (values["save-projection"] && values["no-save-projection"])
      throw new UsageError("--save-projection and --no-save-projection exclude each other");
    const { adapter } = await loadAdapterFromArgs(positionals[0]!, values);
    const saveProjection = values["save-projection"] ? true : values["no-save-projection"] ? false : undefined;
    const res = exportPeft({
      adapter,
      ...(saveProjection !== undefined ? { saveProjection } : {}),
      ...(values["peft-compat"] !== undefined ? { peftCompat: String(values["peft-compat"]) } : {}),
    });
    const files = await writePeftFolder({ dir: out, configJson: res.configJson, safetensors: res.safetensors });
    if (ctx.json) ctx.out(JSON.stringify({ ok: true, output: out, files, report: res.report }, null, 2));
    else {
      ctx.out(
        `wrote ${out}: ${res.report.tensors} tensors, save_projection ${res.report.saveProjection}, PEFT >= ${res.report.peftCompat}` +
          (res.report.droppedFields.length ? ` (dropped ${res.report.droppedFields.join(", ")})` : ""),
      );
      for (const w of res.report.warnings) ctx.err(`warning: ${w}`);
    }
    return 0;
  },
};
export default command;

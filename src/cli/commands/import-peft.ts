import { writeVeraFile } from "../../node/files.js";
import { UsageError, type Command } from "../command.js";
import { adapterInputOptions, loadAdapterFromArgs } from "../adapter-input.js";

const command: Command = {
  name: "import-peft",
  summary: "Import a PEFT VeRA adapter folder into a verakit file, bit for bit",
  description:
    "Import a PEFT VeRA adapter folder (adapter_config.json + adapter_model.safetensors) into a verakit file, bit for bit. " +
    "PEFT does not store in_features: give the base model with --base (a transformers config.json, model.safetensors or its " +
    "index, an ONNX model, or a folder holding one); it is inferred without one only when unambiguous.",
  usage: "vera import-peft DIR -o FILE [--base PATH] [--adapter NAME]",
  options: {
    output: { type: "string", short: "o" },
    ...adapterInputOptions,
  },
  async run({ values, positionals }, ctx) {
    const out = values["output"] as string | undefined;
    if (positionals.length !== 1) throw new UsageError("give exactly one PEFT adapter folder");
    if (!out) throw new UsageError("-o FILE is required");
    const { adapter, imported } = await loadAdapterFromArgs(positionals[0]!, values);
    if (!imported) throw new UsageError(`${positionals[0]} is not a folder: import-peft reads a PEFT adapter folder`);
    const bytes = await writeVeraFile(out, adapter);
    if (ctx.json) ctx.out(JSON.stringify({ ok: true, output: out, bytes: bytes.length, report: imported }, null, 2));
    else {
      const p = imported.projections;
      const proj = p.inFile
        ? p.storage === "stored"
          ? "stored projections match no regeneration: kept explicitly"
          : `stored projections equal the regenerated ones (${p.matches.map((m) => `${m.arithmetic}/${m.rounding}`).join(", ")})`
        : "projections regenerated from the seed (not in the file)";
      ctx.out(
        `wrote ${out}: ${imported.modules} modules, r ${imported.rank}, seed ${imported.seed}, ${bytes.length} bytes\n` +
          (imported.dimensionsInferred
            ? `  in_features inferred without --base: ${imported.dimensionSource.replace(/^inferred[^:]*: /, "")}`
            : `  dimensions: ${imported.dimensionSource}`) +
          `\n  projections: ${proj}` +
          (imported.carriedTensors.length ? `\n  carried: ${imported.carriedTensors.length} extra tensor(s)` : ""),
      );
      for (const w of imported.warnings) ctx.err(`warning: ${w}`);
    }
    return 0;
  },
};
export default command;

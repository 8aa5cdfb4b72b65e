import { ErrorCode, VeraError } from "../../errors.js";
import { createAdapter, type CreateModuleSpec } from "../../format/create.js";
import { writeVeraFile } from "../../node/files.js";
import { UsageError, type Command } from "../command.js";
import { cliOptions, intOption } from "../options.js";

const command: Command = {
  name: "create",
  summary: "Create a new adapter initialised as PEFT does (d = d_initial, b = 0)",
  description:
    "Create a new adapter initialised as PEFT does (d = d_initial, b = 0). Modules: --module NAME:OUTxIN[:conv1d] (repeatable), or --layers N --target q_proj:OUTxIN ... to expand model.layers.{i}.<group>.<name> for llama-style models.",
  usage:
    "vera create -o FILE --rank R [--seed S] [--d-initial X] [--module NAME:OUTxIN[:linear|conv1d]]... [--layers N --target PATH:OUTxIN...] [--base-model ID] [--arithmetic fused|separate]",
  options: {
    ...cliOptions({
      strings: ["output", "rank", "seed", "d-initial", "layers", "base-model", "arithmetic"],
      lists: ["module", "target"],
    }),
  },
  allowPositionals: false,
  async run({ values }, ctx) {
    const out = values["output"] as string | undefined;
    if (!out) throw new UsageError("-o FILE is required");
    const rank = intOption(values, "rank", true)!;
    const modules: CreateModuleSpec[] = [];
    const parse = (spec: string, name?: string): CreateModuleSpec => {
      const m = /^([^:]+):([1-9][0-9]*)x([1-9][0-9]*)(?::(linear|conv1d))?$/.exec(spec);
      if (!m)
        throw new VeraError(ErrorCode.ARG_INVALID, `module spec must be NAME:OUTxIN[:linear|conv1d]`, {
          received: spec,
          expected: "q_proj:4096x4096",
        });
      return {
        name: name ?? m[1]!,
        outFeatures: Number(m[2]),
        inFeatures: Number(m[3]),
        layout: (m[4] as "linear" | "conv1d" | undefined) ?? "linear",
      };
    };
    for (const s of (values["module"] as string[] | undefined) ?? []) modules.push(parse(s));
    const layers = intOption(values, "layers");
    const targets = (values["target"] as string[] | undefined) ?? [];
    if (layers !== undefined || targets.length > 0) {
      if (layers === undefined || targets.length === 0) throw new UsageError("--layers and --target go together");
      for (let i = 0; i < layers; i++)
        for (const t of targets) {
          const spec = parse(t);
          modules.push({ ...spec, name: `model.layers.${i}.${spec.name}` });
        }
    }
    if (modules.length === 0) throw new UsageError("give at least one --module or --layers/--target");
    let dInitial: number | undefined;
    if (values["d-initial"] !== undefined) {
      dInitial = Number(values["d-initial"]);
      if (!Number.isFinite(dInitial))
        throw new VeraError(ErrorCode.ARG_INVALID, "--d-initial must be a number", { received: values["d-initial"] });
    }
    const arithmetic = values["arithmetic"] as string | undefined;
    if (arithmetic !== undefined && arithmetic !== "fused" && arithmetic !== "separate")
      throw new VeraError(ErrorCode.ARG_INVALID, "--arithmetic must be fused or separate", { received: arithmetic });
    const adapter = createAdapter({
      modules,
      rank,
      ...(values["seed"] !== undefined ? { seed: String(values["seed"]) } : {}),
      ...(dInitial !== undefined ? { dInitial } : {}),
      ...(arithmetic ? { arithmetic } : {}),
      ...(values["base-model"] ? { baseModel: { id: String(values["base-model"]) } } : {}),
    });
    const bytes = await writeVeraFile(out, adapter);
    if (ctx.json)
      ctx.out(
        JSON.stringify({ ok: true, output: out, bytes: bytes.length, modules: adapter.modules.length, rank }, null, 2),
      );
    else ctx.out(`wrote ${out}: ${adapter.modules.length} modules, rank ${rank}, ${bytes.length} bytes`);
    return 0;
  },
};
export default command;

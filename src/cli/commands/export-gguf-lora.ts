import { ErrorCode, VeraError } from "../../errors.js";
import { exportGgufLoraStream } from "../../gguf/export-gguf-lora.js";
import type { GgufFloatOutType } from "../../gguf/encode-tensor.js";
import { loadGgufLoraInputs, writeGgufStreamFile } from "../../node/gguf-file.js";
import { UsageError, type Command } from "../command.js";
import { cliOptions, intOption } from "../options.js";

const TYPES = ["f32", "f16", "bf16", "q8_0"];

const command: Command = {
  name: "export-gguf-lora",
  summary: "Write a VeRA adapter as a llama.cpp / ollama GGUF LoRA adapter (exact)",
  description:
    "Write a VeRA adapter as a llama.cpp GGUF LoRA adapter (llama-cli --lora, ollama ADAPTER): exact at the VeRA rank " +
    "(alpha = r), llama.cpp's tensor names and q/k permutation; --rank K truncates and reports the error. A GGUF LoRA " +
    "holds no modules_to_save head or bias: an adapter carrying them is refused unless --drop-carried leaves them out.",
  usage:
    "vera export-gguf-lora ADAPTER --base MODEL.gguf|config.json -o adapter.gguf [--rank K] [--type f32|f16|bf16|q8_0] " +
    "[--mapping names.json] [--adapter NAME] [--name NAME] [--drop-carried]",
  options: {
    ...cliOptions({
      strings: ["output", "base", "rank", "type", "mapping", "adapter", "name"],
      flags: ["drop-carried"],
    }),
  },
  async run({ values, positionals }, ctx) {
    const out = values["output"] as string | undefined;
    const base = values["base"] as string | undefined;
    if (positionals.length !== 1) throw new UsageError("give exactly one adapter (verakit file or PEFT folder)");
    if (!out) throw new UsageError("-o adapter.gguf is required");
    if (!base) throw new UsageError("--base MODEL.gguf or config.json is required");
    const type = (values["type"] as string | undefined) ?? "f32";
    if (!TYPES.includes(type))
      throw new VeraError(ErrorCode.ARG_INVALID, `--type must be one of ${TYPES.join(", ")}`, {
        path: "--type",
        expected: TYPES,
        received: type,
      });
    const rank = intOption(values, "rank");
    const inputs = await loadGgufLoraInputs({
      adapter: positionals[0]!,
      base,
      ...(values["mapping"] !== undefined ? { mapping: String(values["mapping"]) } : {}),
      ...(values["adapter"] !== undefined ? { adapterName: String(values["adapter"]) } : {}),
    });
    const stream = exportGgufLoraStream({
      adapter: inputs.adapter,
      base: inputs.base,
      type: type as GgufFloatOutType,
      ...(rank !== undefined ? { rank } : {}),
      ...(inputs.mapping ? { mapping: inputs.mapping } : {}),
      ...(values["name"] !== undefined ? { name: String(values["name"]) } : {}),
      ...(values["drop-carried"] === true ? { dropCarried: true } : {}),
    });
    await writeGgufStreamFile(out, stream);
    const report = stream.report();
    if (ctx.json) ctx.out(JSON.stringify({ ok: true, output: out, bytes: stream.plan.size, report }, null, 2));
    else {
      ctx.out(
        `wrote ${out}: GGUF LoRA for ${report.architecture}, ${report.modules.length} modules, rank ${report.rank}, ` +
          `${report.type}, alpha ${report.alpha} (scale 1), ` +
          (report.exact ? "exact" : `relative Frobenius error ${report.totalRelativeError.toExponential(3)} in total`),
      );
      if (!report.exact)
        for (const m of report.modules)
          ctx.out(`  ${m.module} -> ${m.tensor}: relative error ${m.relativeError.toExponential(3)}`);
      if (report.dropped.length > 0) ctx.out(`  dropped (--drop-carried): ${report.dropped.join(", ")}`);
    }
    return 0;
  },
};
export default command;

import { ErrorCode, VeraError } from "../../errors.js";
import { generateProjections } from "../../projections/generate.js";
import { parseSeed } from "../../projections/seed.js";
import { bytesOf, writeSafetensors } from "../../safetensors/write.js";
import { writeFileAtomic } from "../../node/files.js";
import { UsageError, type Command } from "../command.js";
import { cliOptions, intOption } from "../options.js";

const command: Command = {
  name: "projections",
  summary: "Regenerate VeRA's shared projections A and B bit-exactly as PyTorch draws them",
  description:
    "Regenerate VeRA's shared projections bit-exactly as PyTorch/PEFT draws them, as vera_A and vera_B (float32).",
  usage:
    "vera projections --seed S --rank R --max-in N --max-out M [--arithmetic fused|separate] [--rounding none|bf16|fp16] -o OUT.safetensors",
  options: {
    ...cliOptions({ strings: ["seed", "rank", "max-in", "max-out", "arithmetic", "rounding", "output"] }),
  },
  allowPositionals: false,
  async run({ values }, ctx) {
    const out = values["output"] as string | undefined;
    if (!out) throw new UsageError("-o OUT.safetensors is required");
    if (values["seed"] === undefined) throw new UsageError("--seed is required");
    const seed = parseSeed(String(values["seed"]));
    const rank = intOption(values, "rank", true)!;
    const maxIn = intOption(values, "max-in", true)!;
    const maxOut = intOption(values, "max-out", true)!;
    const arithmetic = (values["arithmetic"] as string | undefined) ?? "fused";
    if (arithmetic !== "fused" && arithmetic !== "separate")
      throw new VeraError(ErrorCode.ARG_INVALID, `--arithmetic must be fused or separate`, {
        expected: "fused|separate",
        received: arithmetic,
      });
    const rounding = (values["rounding"] as string | undefined) ?? "none";
    if (rounding !== "none" && rounding !== "bf16" && rounding !== "fp16")
      throw new VeraError(ErrorCode.ARG_INVALID, `--rounding must be none, bf16 or fp16`, {
        expected: "none|bf16|fp16",
        received: rounding,
      });
    const t0 = performance.now();
    const { A, B } = generateProjections({ seed, rank, maxIn, maxOut, arithmetic, rounding });
    const ms = performance.now() - t0;
    const bytes = writeSafetensors({
      tensors: [
        { name: "vera_A", dtype: "F32", shape: [rank, maxIn], data: bytesOf(A) },
        { name: "vera_B", dtype: "F32", shape: [maxOut, rank], data: bytesOf(B) },
      ],
      metadata: { format: "pt" },
    });
    await writeFileAtomic(out, bytes);
    const info = {
      ok: true,
      output: out,
      seed: seed.toString(),
      rank,
      maxIn,
      maxOut,
      arithmetic,
      rounding,
      shapes: { vera_A: [rank, maxIn], vera_B: [maxOut, rank] },
      bytes: bytes.length,
      milliseconds: Math.round(ms),
    };
    if (ctx.json) ctx.out(JSON.stringify(info, null, 2));
    else
      ctx.out(
        `wrote ${out}: vera_A ${rank}x${maxIn}, vera_B ${maxOut}x${rank} (seed ${seed}, ${arithmetic}${rounding !== "none" ? `, ${rounding}` : ""}) in ${ms.toFixed(0)} ms`,
      );
    return 0;
  },
};
export default command;

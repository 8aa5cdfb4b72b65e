import { ErrorCode, VeraError } from "../../errors.js";
import { writePeftFolderStreamed } from "../../node/peft-folder.js";
import { expandToLoraStream } from "../../peft/expand-to-lora.js";
import { LORA_ENGINES, planLoraForEngine, type LoraEngine, type LoraEnginePlan } from "../../serve/lora-for-engine.js";
import { UsageError, type Command } from "../command.js";
import { cliOptions, intOption } from "../options.js";
import { adapterInputOptions, loadAdapterFromArgs } from "../adapter-input.js";

const command: Command = {
  name: "expand-lora",
  summary: "Expand a VeRA adapter into an equivalent (or truncated) PEFT LoRA folder",
  description:
    "Expand a VeRA adapter into an equivalent PEFT LoRA folder (for vLLM, TGI, llama.cpp, onnxruntime-genai, Olive): exact " +
    "at the VeRA rank (lora_alpha = r). --rank K < r writes the best rank-K approximation and reports the relative " +
    "Frobenius error per module; --rank-pattern MODULE=K,... sets ranks per module. --for vllm|tgi|lorax writes what " +
    "that server's loader accepts (vLLM: r padded to a --max-lora-rank value, or truncated above 512); these engines do " +
    "not apply modules_to_save heads or biases, so an adapter carrying them is refused unless --drop-carried leaves them out.",
  usage:
    "vera expand-lora FILE -o DIR [--rank K] [--rank-pattern MODULE=K[,MODULE=K...]] [--peft-compat VERSION] " +
    "[--for vllm|tgi|lorax [--drop-carried]]",
  options: {
    ...cliOptions({
      strings: ["output", "rank", "peft-compat", "for"],
      lists: ["rank-pattern"],
      flags: ["drop-carried"],
    }),
    ...adapterInputOptions,
  },
  async run({ values, positionals }, ctx) {
    const out = values["output"] as string | undefined;
    if (positionals.length !== 1) throw new UsageError("give exactly one adapter file");
    if (!out) throw new UsageError("-o DIR is required");
    const rank = intOption(values, "rank");
    const rankPattern: Record<string, number> = {};
    for (const spec of ((values["rank-pattern"] as string[] | undefined) ?? []).flatMap((s) => s.split(","))) {
      const m = /^([^=]+)=([1-9][0-9]*)$/.exec(spec.trim());
      if (!m)
        throw new VeraError(ErrorCode.ARG_INVALID, "--rank-pattern entries must be MODULE=K", {
          path: "--rank-pattern",
          received: spec,
          expected: "model.layers.0.self_attn.q_proj=8",
        });
      rankPattern[m[1]!] = Number(m[2]);
    }
    const engine = values["for"] as string | undefined;
    if (engine !== undefined && !LORA_ENGINES.includes(engine as LoraEngine))
      throw new VeraError(ErrorCode.ARG_INVALID, `--for must be one of ${LORA_ENGINES.join(", ")}`, {
        path: "--for",
        expected: LORA_ENGINES.join(" | "),
        received: engine,
      });
    if (engine !== undefined && (Object.keys(rankPattern).length || values["peft-compat"] !== undefined))
      throw new UsageError(
        "--for sets the ranks and the config fields itself: leave out --rank-pattern and --peft-compat",
      );
    const dropCarried = values["drop-carried"] === true;
    if (dropCarried && engine === undefined)
      throw new UsageError("--drop-carried goes with --for: a PEFT LoRA folder keeps the tensors the adapter carries");
    const { adapter } = await loadAdapterFromArgs(positionals[0]!, values);
    let plan: LoraEnginePlan | undefined;
    if (engine !== undefined)
      plan = planLoraForEngine({
        adapter,
        engine: engine as LoraEngine,
        ...(rank !== undefined ? { rank } : {}),
        ...(dropCarried ? { dropCarried } : {}),
      });
    const stream = expandToLoraStream(
      plan?.expand ?? {
        adapter,
        ...(rank !== undefined ? { rank } : {}),
        ...(Object.keys(rankPattern).length ? { rankPattern } : {}),
        ...(values["peft-compat"] !== undefined ? { peftCompat: String(values["peft-compat"]) } : {}),
      },
    );
    // streamed: one tensor in memory at a time (a 7B all-linear r=1024 expansion is ~10 GB)
    const files = await writePeftFolderStreamed({ dir: out, configJson: stream.configJson, weights: stream });
    const res = { report: stream.report() };
    const target = plan
      ? {
          engine: plan.engine,
          rank: plan.rank,
          fileRank: plan.fileRank,
          maxLoraRank: plan.maxLoraRank,
          notes: plan.notes,
          dropped: plan.dropped,
        }
      : undefined;
    if (ctx.json)
      ctx.out(
        JSON.stringify({ ok: true, output: out, files, report: res.report, ...(target ? { target } : {}) }, null, 2),
      );
    else {
      ctx.out(
        `wrote ${out}: LoRA r ${res.report.rank}, ${res.report.modules.length} modules, ` +
          (res.report.exact
            ? "exact (lora_alpha = r)"
            : `relative Frobenius error ${res.report.totalRelativeError.toExponential(3)} in total`),
      );
      if (!res.report.exact)
        for (const m of res.report.modules)
          ctx.out(`  ${m.name}: rank ${m.rank}, relative error ${m.relativeError.toExponential(3)}`);
      for (const n of plan?.notes ?? []) ctx.out(`  ${plan!.engine}: ${n}`);
      for (const w of res.report.warnings) ctx.err(`warning: ${w}`);
    }
    return 0;
  },
};
export default command;

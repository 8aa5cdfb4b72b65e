import { ErrorCode, VeraError } from "../../errors.js";
import { readFileBytes, writeFileAtomic } from "../../node/files.js";
import { ServeErrorCode } from "../../serve/error-codes.js";
import { GRAFT_METADATA_KEY, parseGraftSpec } from "../../serve/graft-spec.js";
import type { OnnxAdapterDtype } from "../../serve/onnx-adapter-file.js";
import { writeOnnxAdapter } from "../../serve/write-onnx-adapter.js";
import { readOnnxModelInputs, type OnnxModelInput } from "../../serve/write-onnx-adapter-inputs.js";
import { writeOnnxLoraAdapter } from "../../serve/write-onnx-adapter-lora.js";
import { UsageError, type Command } from "../command.js";
import { cliOptions, intOption } from "../options.js";
import { baseShapesFromGraftSpec } from "../../serve/read-graft-spec.js";
import { adapterInputOptions, loadAdapterFromArgs } from "../adapter-input.js";
import { loadAdapterFromPath } from "../../node/load-adapter.js";

function dtypeOption(v: unknown): OnnxAdapterDtype | undefined {
  if (v === undefined) return undefined;
  const s = String(v);
  if (s === "f32" || s === "float32") return "float32";
  if (s === "f16" || s === "float16") return "float16";
  throw new VeraError(ErrorCode.ARG_INVALID, "--dtype must be f32 or f16", {
    path: "--dtype",
    expected: "f32 | f16",
    received: s,
  });
}

function versionOption(values: Record<string, unknown>, name: string): number | undefined {
  const v = values[name];
  if (v === undefined) return undefined;
  if (!/^(0|[1-9][0-9]{0,9})$/.test(String(v)) || Number(v) > 0x7fff_ffff)
    throw new VeraError(ErrorCode.ARG_INVALID, `--${name} must be an integer in [0, 2^31 - 1]`, {
      path: `--${name}`,
      received: String(v),
    });
  return Number(v);
}

const command: Command = {
  name: "export-onnx-adapter",
  summary: "Write an onnxruntime .onnx_adapter file (VeRA vectors, or LoRA with --lora)",
  description:
    "Write an onnxruntime adapter file (.onnx_adapter) for an ONNX model: the adapter's d and b vectors for a graph " +
    "grafted by `vera graft` (inputs <module>.vera_lambda_d / .vera_lambda_b), or with --lora its exact LoRA form " +
    "for LoRA-ready models made by Olive's ExtractAdapters (inputs ...lora_A.weight [in, r], ...lora_B.weight [r, out]). " +
    "--model checks names, types and shapes against the model (and, for a grafted model, the adapter against its graft record). " +
    "A PEFT folder needs --base (the base model or its config.json) unless --model is a grafted model, whose record gives every shape.",
  usage:
    "vera export-onnx-adapter ADAPTER -o FILE.onnx_adapter [--model MODEL.onnx] [--base BASE] [--lora [--rank K]] " +
    "[--dtype f32|f16] [--adapter NAME] [--adapter-version N] [--model-version N] [--drop-carried]",
  options: {
    ...cliOptions({
      strings: ["output", "rank", "dtype", "model", "adapter-version", "model-version"],
      flags: ["lora", "drop-carried"],
    }),
    ...adapterInputOptions,
  },
  async run({ values, positionals }, ctx) {
    const out = values["output"] as string | undefined;
    if (positionals.length !== 1) throw new UsageError("give exactly one adapter (verakit file or PEFT folder)");
    if (!out) throw new UsageError("-o FILE.onnx_adapter is required");
    const lora = values["lora"] === true;
    const rank = intOption(values, "rank");
    if (rank !== undefined && !lora) throw new UsageError("--rank applies to --lora only");
    const dropCarried = values["drop-carried"] === true;
    if (dropCarried && !lora) throw new UsageError("--drop-carried applies to --lora only");
    const dtype = dtypeOption(values["dtype"]);
    const versions = {
      ...(versionOption(values, "adapter-version") !== undefined
        ? { adapterVersion: versionOption(values, "adapter-version")! }
        : {}),
      ...(versionOption(values, "model-version") !== undefined
        ? { modelVersion: versionOption(values, "model-version")! }
        : {}),
    };
    let inputs: OnnxModelInput[] | undefined;
    let metadata: Record<string, string> = {};
    const modelPath = values["model"] as string | undefined;
    if (modelPath !== undefined)
      ({ inputs, metadata } = readOnnxModelInputs({ bytes: await readFileBytes(modelPath) }));
    // A grafted model records every grafted module's shape: a PEFT folder needs no --base for it.
    const record = metadata[GRAFT_METADATA_KEY];
    const recorded =
      !lora && values["base"] === undefined && record !== undefined
        ? baseShapesFromGraftSpec(parseGraftSpec(record, `${modelPath}: ${GRAFT_METADATA_KEY}`))
        : undefined;
    const { adapter } = recorded
      ? await loadAdapterFromPath({
          path: positionals[0]!,
          base: recorded,
          ...(values["adapter"] !== undefined ? { adapterName: String(values["adapter"]) } : {}),
        })
      : await loadAdapterFromArgs(positionals[0]!, values);
    // the element type follows the model's inputs unless --dtype says otherwise (a mismatch is then refused)
    let res;
    if (lora) {
      res = writeOnnxLoraAdapter({
        adapter,
        ...(rank !== undefined ? { rank } : {}),
        ...(dtype ? { dtype } : {}),
        ...(inputs ? { inputs } : {}),
        ...versions,
        ...(dropCarried ? { dropCarried } : {}),
      });
    } else {
      let spec;
      if (modelPath !== undefined) {
        if (record === undefined)
          throw new VeraError(
            ServeErrorCode.SERVE_NOT_GRAFTED,
            `${modelPath} carries no graft record (metadata_props ${GRAFT_METADATA_KEY}): it was not made by ` +
              "`vera graft` (for a LoRA-ready model use --lora)",
            { path: modelPath },
          );
        spec = parseGraftSpec(record, `${modelPath}: ${GRAFT_METADATA_KEY}`);
      }
      res = writeOnnxAdapter({
        adapter,
        ...(spec ? { spec } : {}),
        ...(dtype ? { dtype } : {}),
        ...(inputs ? { inputs } : {}),
        ...versions,
      });
    }
    await writeFileAtomic(out, res.bytes);
    const r = res.report;
    const warnings: string[] = [];
    if (r.form === "vera" && r.missing.length)
      warnings.push(`the adapter has no vectors for grafted module(s) ${r.missing.join(", ")}: written as zeros`);
    if (r.form === "lora" && r.unfedInputs.length)
      warnings.push(`the model's LoRA input(s) ${r.unfedInputs.join(", ")} get nothing from this adapter (defaults)`);
    if (!Number.isFinite(r.maxRoundingError))
      warnings.push("some values exceed float16's range and became infinite: use --dtype f32");
    if (ctx.json) ctx.out(JSON.stringify({ ok: true, output: out, report: r, warnings }, null, 2));
    else {
      ctx.out(
        `wrote ${out}: ${r.parameters} parameters (${r.form === "vera" ? "VeRA vectors" : `LoRA r ${r.rank}`}, ` +
          `${r.dtype}), ${r.bytes} bytes` +
          (r.dtype === "float16" ? `, largest float16 rounding ${r.maxRoundingError.toExponential(2)}` : ""),
      );
      if (r.form === "lora" && r.dropped.length > 0) ctx.out(`  dropped (--drop-carried): ${r.dropped.join(", ")}`);
      if (r.form === "lora" && !r.exact)
        ctx.out(
          `  rank ${r.rank} < ${adapter.rank}: relative Frobenius error ${r.totalRelativeError.toExponential(3)}`,
        );
      for (const w of warnings) ctx.err(`warning: ${w}`);
    }
    return 0;
  },
};
export default command;

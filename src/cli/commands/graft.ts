import { graftOnnxFile } from "../../serve/node/graft-onnx-file.js";
import { UsageError, type Command } from "../command.js";
import { cliOptions } from "../options.js";

function fmtBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

const command: Command = {
  name: "graft",
  summary: "Graft VeRA branches into an ONNX model: serve any adapter of its seed and rank",
  description:
    "Graft VeRA branches into an ONNX model so it serves any adapter of the same seed and rank without merging: " +
    "d and b become model inputs (<module>.vera_lambda_d / .vera_lambda_b), A and B are stored once. --batched: one " +
    "adapter per sequence of a batch. The inputs are plain inputs, fed on every run (zeros for the base model), in every " +
    "onnxruntime binding alike. --defaults also gives them default initializers (a run feeding nothing is the base " +
    "model): only for runtimes that feed such inputs (onnxruntime Python/C/C++/C#/Java); onnxruntime-node and " +
    "onnxruntime-web silently ignore feeds for them. Tensors the adapter carries (modules_to_save heads, trainable " +
    "biases) become per-adapter inputs too. The base's weights and data files are not rewritten.",
  usage:
    "vera graft MODEL.onnx ADAPTER -o OUT.onnx [--batched] [--dtype f32|f16] [--defaults] [--skip-missing] " +
    "[--adapter-name NAME] [--json]",
  options: {
    ...cliOptions({
      strings: ["output", "dtype", "adapter-name"],
      flags: ["batched", "defaults", "no-defaults", "skip-missing"],
    }),
  },
  async run({ values, positionals }, ctx) {
    const [model, adapter, ...rest] = positionals;
    if (!model || !adapter)
      throw new UsageError("expected MODEL.onnx ADAPTER (a verakit file or a PEFT adapter folder)");
    if (rest.length > 0) throw new UsageError(`unexpected arguments: ${rest.join(" ")}`);
    const output = values.output as string | undefined;
    if (!output) throw new UsageError("-o OUT.onnx is required");
    const dtype = (values.dtype as string | undefined) ?? "f32";
    if (dtype !== "f32" && dtype !== "f16") throw new UsageError(`--dtype must be f32 or f16, got ${dtype}`);
    if (values.defaults === true && values["no-defaults"] === true)
      throw new UsageError("--defaults and --no-defaults contradict each other (plain inputs are the default)");
    const report = await graftOnnxFile({
      model,
      adapter,
      output,
      dtype,
      batched: values.batched === true,
      defaults: values.defaults === true,
      skipMissing: values["skip-missing"] === true,
      ...(values["adapter-name"] ? { adapterName: values["adapter-name"] as string } : {}),
    });
    if (ctx.json) {
      ctx.out(
        JSON.stringify(
          {
            ok: true,
            ...report,
            spec: { ...report.spec, prng: { ...report.spec.prng, seed: report.spec.prng.seed.toString() } },
          },
          null,
          2,
        ),
      );
      return 0;
    }
    const s = report.spec;
    ctx.out(
      `wrote ${report.output}: ${report.modules.length} modules grafted (seed ${s.prng.seed}, r ${s.rank}, ` +
        `${s.batched ? "batched: one adapter per sequence" : "one adapter per run"}, branch ${s.dtype}, ` +
        `${report.defaults ? "inputs default to the base model: not for onnxruntime-node/-web" : "inputs fed on every run"}), +${fmtBytes(report.addedBytes)}`,
    );
    for (const m of report.modules)
      ctx.out(
        `  ${m.module}: ${m.opType} ${JSON.stringify(m.node)} (${m.activations}), in ${m.inFeatures}, out ${m.outFeatures}`,
      );
    for (const c of report.carried)
      ctx.out(`  carried ${c.param}: initializer ${JSON.stringify(c.initializer)}, input ${c.input}`);
    for (const f of report.dataFiles) ctx.out(`  data ${f.location}: ${f.mode} (${fmtBytes(f.bytes)})`);
    const perAdapter = report.modules.reduce((n, m) => n + 4 * (s.rank + m.outFeatures), 0);
    ctx.out(`  each adapter is ${fmtBytes(perAdapter)} of inputs (4 * (r + out) bytes per module)`);
    for (const w of report.warnings) ctx.err(`warning: ${w}`);
    return 0;
  },
};
export default command;

import { recoverMerge } from "../../merge/recover-merge.js";
import { UsageError, type Command } from "../command.js";

const command: Command = {
  name: "recover",
  summary: "Roll back an interrupted in-place merge from its undo journal",
  usage: "vera recover MODEL [--json]",
  description:
    "MODEL is what was given to the merge: MODEL.onnx, MODEL.gguf, a .safetensors file or a checkpoint folder. " +
    "An in-place merge keeps the original bytes of every range it overwrites in .<model>.vera-undo; after a crash or " +
    "kill, every merge refuses the model (MERGE_INTERRUPTED) until this puts those bytes back. Every digest, the " +
    "record count and the chain digest of the journal are checked first: a damaged or truncated journal changes " +
    "nothing (MERGE_JOURNAL_CORRUPT). A merge still running holds the model's lock (.<model>.vera-lock): it is " +
    "MERGE_BUSY, never rolled back. Symlinks are resolved as the merge resolves them. A model without a journal is " +
    "left as it is.",
  options: {},
  async run({ positionals }, ctx) {
    const [model, ...rest] = positionals;
    if (!model) throw new UsageError("expected MODEL");
    if (rest.length > 0) throw new UsageError(`unexpected arguments: ${rest.join(" ")}`);
    const r = await recoverMerge({ model });
    if (ctx.json) ctx.out(JSON.stringify({ ok: true, ...r }, null, 2));
    else if (r.restored.length === 0) ctx.out(`${model}: no interrupted in-place merge to roll back`);
    else
      for (const x of r.restored)
        ctx.out(
          `${model}: rolled back (${x.ranges} range${x.ranges === 1 ? "" : "s"}, ${x.bytes} bytes in ${x.files.length} file${x.files.length === 1 ? "" : "s"}${x.headRestored ? ", head file restored" : ""})`,
        );
    return 0;
  },
};
export default command;

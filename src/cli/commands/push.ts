import { pushAdapterIter } from "../../hub/push/push-adapter.js";
import { readFileBytes } from "../../node/files.js";
import { UsageError, type Command } from "../command.js";
import { drainHubEvents, hubOptions, hubSettingsFrom, withTokenRedacted } from "../hub-options.js";
import { cliOptions } from "../options.js";

const command: Command = {
  name: "push",
  summary: "Upload a verakit adapter with a model card to a Hugging Face Hub repo",
  description:
    "Upload a verakit adapter to a Hugging Face Hub model repo in one commit, with a model card (a card a person wrote is kept unless --overwrite-card) and, with --with-peft, a PEFT copy PeftModel.from_pretrained loads. Endpoint: --hub-url, else HF_ENDPOINT, else the public Hub. Token: --token, else HF_TOKEN, else HF_HOME/token.",
  usage:
    "vera push FILE --repo NS/NAME [--revision BRANCH] [--create] [--private] [--with-peft] [--message MSG] [--overwrite-card | --skip-card] [--base-model ID] [--hub-url URL] [--token TOKEN] [--json]",
  options: {
    ...cliOptions({
      strings: ["repo", "revision", "base-model"],
      flags: ["create", "private", "with-peft", "overwrite-card", "skip-card"],
    }),
    message: { type: "string", short: "m" },
    ...hubOptions,
  },
  async run({ values, positionals }, ctx) {
    if (positionals.length !== 1) throw new UsageError("expected exactly one FILE");
    const repo = values["repo"] as string | undefined;
    if (!repo) throw new UsageError("--repo NS/NAME is required");
    if (values["overwrite-card"] && values["skip-card"])
      throw new UsageError("--overwrite-card and --skip-card exclude each other");
    return withTokenRedacted(values, ctx, async () => {
      const settings = await hubSettingsFrom(values, ctx, true);
      const file = await readFileBytes(positionals[0]!);
      const gen = pushAdapterIter({
        repo,
        file,
        accessToken: settings.accessToken!,
        hubUrl: settings.hubUrl,
        retry: settings.retry,
        ...(values["revision"] !== undefined ? { branch: values["revision"] as string } : {}),
        ...(values["create"] ? { create: true } : {}),
        ...(values["private"] ? { private: true } : {}),
        ...(values["with-peft"] ? { withPeft: true } : {}),
        ...(values["message"] !== undefined ? { message: values["message"] as string } : {}),
        ...(values["base-model"] !== undefined ? { baseModel: values["base-model"] as string } : {}),
        modelCard: values["overwrite-card"] ? "overwrite" : values["skip-card"] ? "skip" : "auto",
      });
      const res = await drainHubEvents(gen, ctx);
      if (ctx.json) ctx.out(JSON.stringify({ ok: true, ...res }, null, 2));
      else {
        ctx.out(`pushed ${res.files.map((f) => f.path).join(", ")} to ${res.repo}@${res.branch}`);
        ctx.out(`commit ${res.commit}${res.recoveredAfterFailure ? " (confirmed after a failed commit request)" : ""}`);
        ctx.out(
          `model card: ${res.modelCard}${res.repoCreated ? "; repository created" : ""}${res.branchCreated ? "; branch created" : ""}`,
        );
        ctx.out(res.commitUrl);
      }
      return 0;
    });
  },
};

export default command;

import { parseRepoRef } from "../../hub/parse-repo-ref.js";
import { isHubOffline } from "../../hub/node/is-hub-offline.js";
import { pullAdapterIter } from "../../hub/node/pull-adapter.js";
import { UsageError, type Command } from "../command.js";
import { drainHubEvents, hubOptions, hubSettingsFrom, withTokenRedacted } from "../hub-options.js";
import { cliOptions } from "../options.js";

const command: Command = {
  name: "pull",
  summary: "Download and verify an adapter from the Hugging Face Hub into its cache",
  description:
    "Download an adapter from the Hugging Face Hub into the cache Python's huggingface_hub uses (HF_HUB_CACHE, else HF_HOME/hub), checking every file's digest and validating the adapter first. A PEFT VeRA repo is imported. --offline (or HF_HUB_OFFLINE=1) reads the cache only.",
  usage: "vera pull NS/NAME[@REV] [-o DIR] [--offline] [--file NAME] [--hub-url URL] [--token TOKEN] [--json]",
  options: {
    ...cliOptions({ strings: ["output", "file"], flags: ["offline"] }),
    ...hubOptions,
  },
  async run({ values, positionals }, ctx) {
    if (positionals.length !== 1) throw new UsageError("expected exactly one NS/NAME[@REV]");
    return withTokenRedacted(values, ctx, async () => {
      const ref = parseRepoRef({ ref: positionals[0]!, where: "NS/NAME[@REV]" });
      const offline = Boolean(values["offline"]) || isHubOffline({ env: ctx.env });
      const settings = await hubSettingsFrom(values, ctx, false);
      const gen = pullAdapterIter({
        repo: ref.repo,
        ...(ref.revision !== undefined ? { revision: ref.revision } : {}),
        hubUrl: settings.hubUrl,
        ...(settings.accessToken ? { accessToken: settings.accessToken } : {}),
        retry: settings.retry,
        offline,
        env: ctx.env,
        ...(values["output"] !== undefined ? { outputDir: values["output"] as string } : {}),
        ...(values["file"] !== undefined ? { filename: values["file"] as string } : {}),
      });
      const res = await drainHubEvents(gen, ctx);
      const a = res.adapter;
      if (ctx.json) {
        ctx.out(
          JSON.stringify(
            {
              ok: true,
              repo: res.repo,
              revision: res.revision,
              commit: res.commit,
              format: res.format,
              fromCache: res.fromCache,
              cacheDir: res.cacheDir,
              snapshotPath: res.snapshotPath,
              cachePath: res.cachePath,
              outputPath: res.outputPath ?? null,
              files: res.files.map((f) => ({ path: f.path, size: f.size, etag: f.etag })),
              adapter: { rank: a.rank, modules: a.modules.length, baseModel: a.baseModel ?? null },
            },
            null,
            2,
          ),
        );
      } else {
        ctx.out(
          `pulled ${res.repo}@${res.revision} (commit ${res.commit.slice(0, 12)}${res.fromCache ? ", from the cache" : ""})`,
        );
        ctx.out(
          `${res.format === "peft" ? "PEFT adapter, imported" : "verakit adapter"}: rank ${a.rank}, ${a.modules.length} module(s)${a.baseModel?.id ? `, base ${a.baseModel.id}` : ""}`,
        );
        ctx.out(`cache: ${res.cachePath}`);
        if (res.outputPath) ctx.out(`wrote ${res.outputPath}`);
      }
      return 0;
    });
  },
};

export default command;

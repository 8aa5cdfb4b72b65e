import { formatHubEvent } from "../../hub/format-hub-event.js";
import { parseRepoRef } from "../../hub/parse-repo-ref.js";
import { redactError } from "../../hub/redact.js";
import { isHubOffline } from "../../hub/node/is-hub-offline.js";
import { pullAdapterIter } from "../../hub/node/pull-adapter.js";
import { resolveHubSettings } from "../../hub/node/resolve-hub-settings.js";
import { UsageError, type Command } from "../command.js";

const command: Command = {
  name: "pull",
  summary:
    "Download an adapter from the Hugging Face Hub into the cache Python's huggingface_hub uses (HF_HUB_CACHE, else HF_HOME/hub), checking every file's digest and validating the adapter first. A PEFT VeRA repo is imported. --offline (or HF_HUB_OFFLINE=1) reads the cache only.",
  usage: "vera pull NS/NAME[@REV] [-o DIR] [--offline] [--file NAME] [--hub-url URL] [--token TOKEN] [--json]",
  options: {
    output: { type: "string", short: "o" },
    offline: { type: "boolean" },
    file: { type: "string" },
    "hub-url": { type: "string" },
    token: { type: "string" },
  },
  async run({ values, positionals }, ctx) {
    if (positionals.length !== 1) throw new UsageError("expected exactly one NS/NAME[@REV]");
    const token = values["token"] as string | undefined;
    try {
      const ref = parseRepoRef({ ref: positionals[0]!, where: "NS/NAME[@REV]" });
      const offline = Boolean(values["offline"]) || isHubOffline({ env: ctx.env });
      const settings = await resolveHubSettings({
        ...(values["hub-url"] !== undefined ? { hubUrl: values["hub-url"] as string } : {}),
        ...(token !== undefined ? { token } : {}),
        env: ctx.env,
      });
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
      let r = await gen.next();
      while (!r.done) {
        if (!ctx.json) {
          const line = formatHubEvent({ event: r.value, verbose: ctx.isTTY });
          if (line) ctx.err(line);
        }
        r = await gen.next();
      }
      const res = r.value;
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
        ctx.out(`pulled ${res.repo}@${res.revision} (commit ${res.commit.slice(0, 12)}${res.fromCache ? ", from the cache" : ""})`);
        ctx.out(`${res.format === "peft" ? "PEFT adapter, imported" : "verakit adapter"}: rank ${a.rank}, ${a.modules.length} module(s)${a.baseModel?.id ? `, base ${a.baseModel.id}` : ""}`);
        ctx.out(`cache: ${res.cachePath}`);
        if (res.outputPath) ctx.out(`wrote ${res.outputPath}`);
      }
      return 0;
    } catch (e) {
      if (e instanceof UsageError) throw e;
      throw redactError({ error: e, secrets: [token, ctx.env["HF_TOKEN"], ctx.env["HUGGING_FACE_HUB_TOKEN"]] });
    }
  },
};

export default command;

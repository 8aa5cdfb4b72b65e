import { hubWhoAmI } from "../../hub/whoami/who-am-i.js";
import type { Command } from "../command.js";
import { hubOptions, hubSettingsFrom, withTokenRedacted } from "../hub-options.js";

const command: Command = {
  name: "whoami",
  summary: "Show which Hugging Face account the token belongs to",
  description:
    "Show which Hugging Face account the token belongs to (token: --token, else HF_TOKEN, else HF_HOME/token). The token itself is never printed.",
  usage: "vera whoami [--hub-url URL] [--token TOKEN] [--json]",
  options: { ...hubOptions },
  allowPositionals: false,
  async run({ values }, ctx) {
    return withTokenRedacted(values, ctx, async () => {
      const settings = await hubSettingsFrom(values, ctx, true);
      const me = await hubWhoAmI({
        accessToken: settings.accessToken!,
        hubUrl: settings.hubUrl,
        retry: settings.retry,
      });
      if (ctx.json)
        ctx.out(
          JSON.stringify({ ok: true, hubUrl: settings.hubUrl, tokenSource: settings.tokenSource, ...me }, null, 2),
        );
      else {
        ctx.out(me.name);
        if (me.orgs.length > 0 || me.orgsOmitted)
          ctx.out(
            `orgs: ${me.orgs.join(", ")}${me.orgsOmitted ? `${me.orgs.length > 0 ? ", " : ""}(${me.orgsOmitted} not shown: not Hub names)` : ""}`,
          );
        ctx.out(`token: role ${me.tokenRole ?? "unknown"} (from ${settings.tokenSource})`);
        ctx.out(`hub: ${settings.hubUrl}`);
      }
      return 0;
    });
  },
};

export default command;

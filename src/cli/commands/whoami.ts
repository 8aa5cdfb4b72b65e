import { redactError } from "../../hub/redact.js";
import { hubWhoAmI } from "../../hub/who-am-i.js";
import { resolveHubSettings } from "../../hub/node/resolve-hub-settings.js";
import type { Command } from "../command.js";

const command: Command = {
  name: "whoami",
  summary: "Show which Hugging Face account the token belongs to (token: --token, else HF_TOKEN, else HF_HOME/token). The token itself is never printed.",
  usage: "vera whoami [--hub-url URL] [--token TOKEN] [--json]",
  options: {
    "hub-url": { type: "string" },
    token: { type: "string" },
  },
  allowPositionals: false,
  async run({ values }, ctx) {
    const token = values["token"] as string | undefined;
    try {
      const settings = await resolveHubSettings({
        ...(values["hub-url"] !== undefined ? { hubUrl: values["hub-url"] as string } : {}),
        ...(token !== undefined ? { token } : {}),
        requireToken: true,
        env: ctx.env,
      });
      const me = await hubWhoAmI({ accessToken: settings.accessToken!, hubUrl: settings.hubUrl, retry: settings.retry });
      if (ctx.json) ctx.out(JSON.stringify({ ok: true, hubUrl: settings.hubUrl, tokenSource: settings.tokenSource, ...me }, null, 2));
      else {
        ctx.out(me.name);
        if (me.orgs.length > 0) ctx.out(`orgs: ${me.orgs.join(", ")}`);
        ctx.out(`token: ${me.tokenName ? `"${me.tokenName}", ` : ""}role ${me.tokenRole ?? "unknown"} (from ${settings.tokenSource})`);
        ctx.out(`hub: ${settings.hubUrl}`);
      }
      return 0;
    } catch (e) {
      throw redactError({ error: e, secrets: [token, ctx.env["HF_TOKEN"], ctx.env["HUGGING_FACE_HUB_TOKEN"]] });
    }
  },
};

export default command;

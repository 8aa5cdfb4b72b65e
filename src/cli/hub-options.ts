import { formatHubEvent } from "./format-hub-event.js";
import { redactError } from "../hub/redact.js";
import { resolveHubSettings } from "../hub/node/resolve-hub-settings.js";
import { UsageError, type CliContext } from "./command.js";

/** The options every Hub command takes. */
export const hubOptions = {
  "hub-url": { type: "string" },
  token: { type: "string" },
} as const;

/** Endpoint, token and retry settings from `--hub-url` / `--token` and the environment. */
export function hubSettingsFrom(values: Record<string, unknown>, ctx: CliContext, requireToken: boolean) {
  return resolveHubSettings({
    ...(values["hub-url"] !== undefined ? { hubUrl: values["hub-url"] as string } : {}),
    ...(values["token"] !== undefined ? { token: values["token"] as string } : {}),
    ...(requireToken ? { requireToken: true } : {}),
    env: ctx.env,
  });
}

/** Print a Hub operation's progress events on stderr (not with --json) and return its result. */
export async function drainHubEvents<E, R>(gen: AsyncGenerator<E, R>, ctx: CliContext): Promise<R> {
  let r = await gen.next();
  while (!r.done) {
    if (!ctx.json) {
      const line = formatHubEvent({
        event: r.value as Parameters<typeof formatHubEvent>[0]["event"],
        verbose: ctx.isTTY,
      });
      if (line) ctx.err(line);
    }
    r = await gen.next();
  }
  return r.value;
}

/** Run a Hub command body so that no error it throws can carry the token (usage errors pass through). */
export async function withTokenRedacted<T>(
  values: Record<string, unknown>,
  ctx: CliContext,
  body: () => Promise<T>,
): Promise<T> {
  try {
    return await body();
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw redactError({
      error: e,
      secrets: [values["token"] as string | undefined, ctx.env["HF_TOKEN"], ctx.env["HUGGING_FACE_HUB_TOKEN"]],
    });
  }
}

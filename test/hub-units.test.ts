import { mkdirSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  checkRepoId,
  checkRepoPath,
  checkRevision,
  createHubFetch,
  DEFAULT_HUB_URL,
  isGeneratedModelCard,
  parseRepoRef,
  parseRetryAfter,
  redactError,
  redactSecrets,
  renderModelCard,
  resolveHubUrl,
} from "../src/hub/index.js";
import { formatHubEvent } from "../src/cli/format-hub-event.js";
import { isHubOffline, resolveHubCacheDir, resolveHubSettings, resolveHubToken } from "../src/hub/node/index.js";
import { VeraError } from "../src/errors.js";
import { makeAdapter, tempDir, TOKEN } from "./hub-server/helpers.js";

describe("redactSecrets", () => {
  it("removes any hf_ token embedded in any text, and exact secrets of any shape", () => {
    fc.assert(
      fc.property(fc.string(), fc.stringMatching(/^[A-Za-z0-9]{20,40}$/), fc.string(), (pre, body, post) => {
        const token = `hf_${body}`;
        const out = redactSecrets({ text: `${pre}${token}${post}` });
        expect(out).not.toContain(token);
      }),
    );
    fc.assert(
      fc.property(fc.string(), fc.string({ minLength: 4, maxLength: 30 }), fc.string(), (pre, secret, post) => {
        fc.pre(!secret.includes("[REDACTED]"));
        expect(redactSecrets({ text: `${pre}${secret}${post}`, secrets: [secret] })).not.toContain(secret);
      }),
    );
  });
  it("removes Bearer values and URL credentials, keeps the rest", () => {
    expect(redactSecrets({ text: "Authorization: Bearer abc.def-ghi, ok" })).toBe(
      "Authorization: Bearer [REDACTED], ok",
    );
    expect(redactSecrets({ text: "see https://user:pw@example.invalid/x" })).toBe(
      "see https://[REDACTED]@example.invalid/x",
    );
    expect(redactSecrets({ text: "nothing secret here" })).toBe("nothing secret here");
  });
  it("redactError keeps the code and scrubs message, stack and issues", () => {
    const e = new VeraError("HUB_NETWORK", `bad ${TOKEN}`, { path: TOKEN, received: { t: TOKEN } });
    const r = redactError({ error: e }) as VeraError;
    expect(r.code).toBe("HUB_NETWORK");
    expect(`${r.message}${r.stack}${JSON.stringify(r)}${r.path}${JSON.stringify(r.received)}`).not.toContain(TOKEN);
    const plain = redactError({ error: new Error(`x ${TOKEN}`) });
    expect(`${plain.message}${plain.stack}`).not.toContain(TOKEN);
  });
});

describe("names and endpoints", () => {
  it("checks repo ids as the Hub does", () => {
    for (const ok of ["alice/x", "a-b/c.d_e", "Org1/Model-2.5"]) expect(checkRepoId(ok)).toBe(ok);
    for (const bad of [
      "x",
      "a/b/c",
      "a//b",
      "../b",
      "a/b--c",
      "a/.b",
      "a/b.git",
      "a/b c",
      "a/" + "x".repeat(97),
      "a/b\u0000",
    ])
      expect(() => checkRepoId(bad), bad).toThrow(expect.objectContaining({ code: "ARG_INVALID" }));
  });
  it("checks revisions and repo paths (no traversal)", () => {
    for (const ok of ["main", "refs/pr/1", "v1.0", "0123456789abcdef0123456789abcdef01234567"])
      expect(checkRevision(ok)).toBe(ok);
    for (const bad of ["", "..", "a/../b", "/abs", "a//b", "x.lock", "a b", "a\\b"])
      expect(() => checkRevision(bad), bad).toThrow();
    for (const ok of ["adapter.vera.safetensors", "sub/dir/file.json"]) expect(checkRepoPath(ok)).toBe(ok);
    for (const bad of ["", "../x", "a/../../x", "/etc/passwd", "C:/x", "a\\b", "a//b", "./x", "a\nb"])
      expect(() => checkRepoPath(bad), JSON.stringify(bad)).toThrow(
        expect.objectContaining({ code: "IO_UNSAFE_PATH" }),
      );
  });
  it("parses NS/NAME[@REV]", () => {
    expect(parseRepoRef({ ref: "alice/x" })).toEqual({ repo: "alice/x" });
    expect(parseRepoRef({ ref: "alice/x@dev" })).toEqual({ repo: "alice/x", revision: "dev" });
    expect(() => parseRepoRef({ ref: "alice/x@" })).toThrow();
    expect(() => parseRepoRef({ ref: "alice@x" })).toThrow();
  });
  it("resolves the endpoint: option, HF_ENDPOINT, default; rejects credentials", () => {
    expect(resolveHubUrl({})).toBe(DEFAULT_HUB_URL);
    expect(resolveHubUrl({ env: { HF_ENDPOINT: "http://127.0.0.1:8080/" } })).toBe("http://127.0.0.1:8080");
    expect(resolveHubUrl({ hubUrl: "https://hub.example.invalid/mirror/", env: { HF_ENDPOINT: "http://x" } })).toBe(
      "https://hub.example.invalid/mirror",
    );
    expect(() => resolveHubUrl({ hubUrl: "ftp://x" })).toThrow(expect.objectContaining({ code: "ARG_INVALID" }));
    let err: unknown;
    try {
      resolveHubUrl({ hubUrl: "https://user:secretpw@x.invalid" });
    } catch (e) {
      err = e;
    }
    expect((err as VeraError).code).toBe("ARG_INVALID");
    expect(JSON.stringify(err) + (err as Error).message).not.toContain("secretpw");
  });
});

describe("Node environment", () => {
  it("finds the token: option, HF_TOKEN, token file (HF_TOKEN_PATH, HF_HOME/token)", async () => {
    const t = tempDir();
    try {
      mkdirSync(join(t.dir, "home"));
      writeFileSync(join(t.dir, "home", "token"), `${TOKEN}\n`);
      writeFileSync(join(t.dir, "other-token"), "hf_fromTokenPath123456");
      expect(await resolveHubToken({ token: "hf_optionToken12345", env: { HF_TOKEN: "hf_envToken1234567" } })).toEqual({
        token: "hf_optionToken12345",
        source: "option",
      });
      expect(
        await resolveHubToken({ env: { HF_TOKEN: " hf_envToken1234567 ", HF_HOME: join(t.dir, "home") } }),
      ).toEqual({ token: "hf_envToken1234567", source: "HF_TOKEN" });
      expect(await resolveHubToken({ env: { HF_HOME: join(t.dir, "home") } })).toEqual({
        token: TOKEN,
        source: "token-file",
        path: join(t.dir, "home", "token"),
      });
      expect(
        (await resolveHubToken({ env: { HF_HOME: join(t.dir, "home"), HF_TOKEN_PATH: join(t.dir, "other-token") } }))
          ?.token,
      ).toBe("hf_fromTokenPath123456");
      expect(await resolveHubToken({ env: { HF_HOME: join(t.dir, "nothing") } })).toBeUndefined();
    } finally {
      t.cleanup();
    }
  });
  it("finds the cache folder as huggingface_hub does", () => {
    expect(resolveHubCacheDir({ env: { HF_HUB_CACHE: "/c", HF_HOME: "/h" } })).toBe("/c");
    expect(resolveHubCacheDir({ env: { HUGGINGFACE_HUB_CACHE: "/legacy", HF_HOME: "/h" } })).toBe("/legacy");
    expect(resolveHubCacheDir({ env: { HF_HOME: "/h" } })).toBe("/h/hub");
    expect(resolveHubCacheDir({ env: { XDG_CACHE_HOME: "/x" } })).toBe("/x/huggingface/hub");
    expect(resolveHubCacheDir({ env: {} })).toBe(join(homedir(), ".cache", "huggingface", "hub"));
    expect(resolveHubCacheDir({ cacheDir: "/explicit", env: { HF_HUB_CACHE: "/c" } })).toBe("/explicit");
  });
  it("reads HF_HUB_OFFLINE like huggingface_hub", () => {
    for (const v of ["1", "ON", "yes", "True"]) expect(isHubOffline({ env: { HF_HUB_OFFLINE: v } })).toBe(true);
    for (const v of ["0", "", "off", "no"]) expect(isHubOffline({ env: { HF_HUB_OFFLINE: v } })).toBe(false);
    expect(isHubOffline({ env: {} })).toBe(false);
  });
  it("resolveHubSettings reads the retry knobs and checks the token without echoing it", async () => {
    const s = await resolveHubSettings({
      env: {
        HF_TOKEN: TOKEN,
        VERAKIT_HUB_RETRY_SCALE: "0",
        VERAKIT_HUB_MAX_RETRIES: "2",
        HF_ENDPOINT: "http://127.0.0.1:1",
      },
    });
    expect(s).toEqual({
      hubUrl: "http://127.0.0.1:1",
      accessToken: TOKEN,
      tokenSource: "HF_TOKEN",
      retry: { maxRetries: 2, delayScale: 0 },
    });
    await expect(resolveHubSettings({ env: { HF_HOME: "/nonexistent" }, requireToken: true })).rejects.toMatchObject({
      code: "HUB_TOKEN_MISSING",
    });
    const bad = await resolveHubSettings({ env: { HF_TOKEN: "sk-secretvalue" } }).catch((e: VeraError) => e);
    expect((bad as VeraError).code).toBe("HUB_TOKEN_INVALID");
    expect((bad as VeraError).message).not.toContain("sk-secretvalue");
  });
});

describe("retry policy (createHubFetch)", () => {
  const answer = (status: number, headers: Record<string, string> = {}) =>
    new Response(status === 200 ? "ok" : "{}", { status, headers });
  function scripted(statuses: Array<number | "throw">, headers: Record<string, string> = {}) {
    const calls: string[] = [];
    const f = (async (input: RequestInfo | URL, init?: RequestInit) => {
      calls.push(`${init?.method ?? "GET"} ${String(input)}`);
      const s = statuses[Math.min(calls.length - 1, statuses.length - 1)]!;
      if (s === "throw") throw new TypeError("fetch failed");
      return answer(s, headers);
    }) as typeof fetch;
    return { f, calls };
  }
  const noWait = { sleep: async () => {} };

  it("retries 5xx and failed connections for reads, at most maxRetries times", async () => {
    const { f, calls } = scripted([503, "throw", 200]);
    const h = createHubFetch({ fetch: f, retry: { maxRetries: 4, ...noWait } });
    expect((await h.fetch("http://h/a/b/resolve/main/x")).status).toBe(200);
    expect(calls.length).toBe(3);
    const s2 = scripted([500]);
    const h2 = createHubFetch({ fetch: s2.f, retry: { maxRetries: 2, ...noWait } });
    expect((await h2.fetch("http://h/api/models/a/b/paths-info/main", { method: "POST", body: "{}" })).status).toBe(
      500,
    );
    expect(s2.calls.length).toBe(3);
  });

  it("never repeats a commit after a 5xx or a failed connection, but does after a 429", async () => {
    const s = scripted([500, 200]);
    const h = createHubFetch({ fetch: s.f, retry: { maxRetries: 4, ...noWait } });
    expect((await h.fetch("http://h/api/models/a/b/commit/main", { method: "POST", body: "x" })).status).toBe(500);
    expect(s.calls.length).toBe(1);
    const t = scripted(["throw", 200]);
    await expect(
      createHubFetch({ fetch: t.f, retry: { maxRetries: 4, ...noWait } }).fetch("http://h/api/models/a/b/commit/main", {
        method: "POST",
        body: "x",
      }),
    ).rejects.toThrow();
    expect(t.calls.length).toBe(1);
    const u = scripted([429, 200], { "Retry-After": "1" });
    const waits: number[] = [];
    const hu = createHubFetch({ fetch: u.f, retry: { maxRetries: 4, sleep: async (ms) => void waits.push(ms) } });
    expect((await hu.fetch("http://h/api/models/a/b/commit/main", { method: "POST", body: "x" })).status).toBe(200);
    expect(waits).toEqual([1000]);
  });

  it("uses exponential backoff within the cap, scaled by delayScale, and remembers X-Error-Code", async () => {
    const waits: number[] = [];
    const s = scripted([502], { "X-Error-Code": "SomeCode" });
    const h = createHubFetch({
      fetch: s.f,
      retry: {
        maxRetries: 5,
        baseDelayMs: 100,
        maxDelayMs: 500,
        delayScale: 2,
        sleep: async (ms) => void waits.push(ms),
      },
    });
    await h.fetch("http://h/x/y/resolve/main/f?q=1");
    expect(waits.length).toBe(5);
    waits.forEach((w, i) => {
      expect(w).toBeGreaterThanOrEqual(Math.min(500, 100 * 2 ** i * 0.8) * 2 - 1);
      expect(w).toBeLessThanOrEqual(Math.min(500, 100 * 2 ** i * 1.2) * 2 + 1);
    });
    expect(h.errorInfo("http://h/x/y/resolve/main/f")).toMatchObject({ status: 502, errorCode: "SomeCode" });
  });

  it("parses Retry-After seconds and dates", () => {
    expect(parseRetryAfter("5")).toBe(5000);
    expect(parseRetryAfter(new Date(10_000 + 3000).toUTCString(), 10_000)).toBe(3000);
    expect(parseRetryAfter("soon")).toBeUndefined();
    expect(parseRetryAfter(null)).toBeUndefined();
  });
});

describe("model card", () => {
  it("has the adapter front matter and a loading guide; deterministic", () => {
    const adapter = makeAdapter({ baseModel: "meta-llama/Llama-3.2-1B", taskType: "CAUSAL_LM" });
    const card = renderModelCard({ adapter, repo: "alice/x", withPeft: true });
    expect(card).toBe(renderModelCard({ adapter, repo: "alice/x", withPeft: true }));
    const fm = card.split("---\n")[1]!;
    expect(fm.split("\n").filter(Boolean)).toEqual([
      'base_model: "meta-llama/Llama-3.2-1B"',
      "base_model_relation: adapter",
      "library_name: peft",
      "pipeline_tag: text-generation",
      "tags:",
      '- "base_model:adapter:meta-llama/Llama-3.2-1B"',
      '- "peft"',
      '- "vera"',
      '- "verakit"',
    ]);
    expect(card).toContain('PeftModel.from_pretrained(base, "alice/x")');
    expect(card).toContain("AutoModelForCausalLM");
    expect(card).toContain("| rank | 8 |");
    expect(isGeneratedModelCard({ text: card })).toBe(true);
    expect(isGeneratedModelCard({ text: "# mine\n" })).toBe(false);
  });
  it("leaves out a base model id that is not a plain repo id (no injection into YAML or markdown)", () => {
    const adapter = makeAdapter({ baseModel: 'evil"\n- injected: [x](javascript:alert(1))' });
    const card = renderModelCard({ adapter, repo: "alice/x" });
    expect(card).not.toContain("injected");
    expect(card).not.toContain("base_model:");
    expect(card).toContain("library_name: verakit");
  });
});

describe("formatHubEvent", () => {
  it("prints phases, retries, notices and completed transfers", () => {
    expect(formatHubEvent({ event: { type: "phase", phase: "verifying-commit" } })).toBe("verifying commit...");
    expect(
      formatHubEvent({
        event: {
          type: "retry",
          attempt: 1,
          maxRetries: 4,
          delayMs: 1500,
          reason: "HTTP 503",
          method: "GET",
          url: "http://h/x",
        },
      }),
    ).toBe("HTTP 503 from GET http://h/x; retry 1/4 in 1.5 s");
    expect(formatHubEvent({ event: { type: "download", path: "f", bytes: 10, total: 10 } })).toBe("f: 10 B downloaded");
    expect(formatHubEvent({ event: { type: "download", path: "f", bytes: 5, total: 10 } })).toBeUndefined();
    expect(formatHubEvent({ event: { type: "download", path: "f", bytes: 5, total: 10 }, verbose: true })).toBe(
      "f: 5 B / 10 B",
    );
  });
});

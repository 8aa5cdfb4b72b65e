/**
 * A hostile or broken Hub: a server that accepts and never answers, one that sends headers then stalls,
 * one that fails twice then answers, answers larger than any Hub answer, and a whoami answer that
 * carries token material in every field. Each ends in a typed error (or the answer) in bounded time, and
 * no output holds the token.
 */
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createNetServer, type Socket } from "node:net";
import type { AddressInfo } from "node:net";
import { afterAll, describe, expect, it } from "vitest";
import { main } from "../src/cli/main.js";
import { createHubFetch, HUB_DEFAULTS, type RetryEvent } from "../src/hub/hub-fetch.js";
import { fetchAdapter } from "../src/hub/pull/fetch-adapter.js";
import { hubWhoAmI } from "../src/hub/whoami/who-am-i.js";
import { INPUT_LIMITS } from "../src/util/input-limits.js";
import { veraError } from "./error-helpers.js";
import { startHubServer } from "./hub-server/server.js";
import { tempDir, TOKEN, USERS } from "./hub-server/helpers.js";

const closers: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const c of closers) await c();
});

/** A TCP server that accepts connections and never writes a byte. */
async function silentServer(): Promise<{ url: string; connections: () => number }> {
  const sockets: Socket[] = [];
  const srv = createNetServer((s) => sockets.push(s));
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  closers.push(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => srv.close(() => r()));
  });
  return { url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}`, connections: () => sockets.length };
}

/** An HTTP server answering every request with `handler`. */
async function httpServer(
  handler: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<{ url: string; server: Server }> {
  const server = createHttpServer(handler);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  closers.push(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

async function vera(args: string[], env: Record<string, string>): Promise<{ status: number; out: string }> {
  const lines: string[] = [];
  const home = tempDir("vera-hub-timeouts-");
  closers.push(async () => home.cleanup());
  const status = await main(
    args,
    { PATH: process.env["PATH"] ?? "", HOME: home.dir, HF_HOME: home.dir, VERAKIT_HUB_RETRY_SCALE: "0", ...env },
    { out: (l) => lines.push(l), err: (l) => lines.push(l), isTTY: false },
  );
  return { status, out: lines.join("\n") };
}

describe("timeouts: no Hub request waits forever", () => {
  it("a server that accepts and never answers: HUB_TIMEOUT naming the URL after the bounded retries", async () => {
    const s = await silentServer();
    const e = await veraError(
      hubWhoAmI({
        accessToken: TOKEN,
        hubUrl: s.url,
        retry: { maxRetries: 2, delayScale: 0, connectTimeoutMs: 200 },
      }),
    );
    expect(e.code).toBe("HUB_TIMEOUT");
    expect(e.message).toContain(`${s.url}/api/whoami-v2`);
    expect(e.message).toContain("3 attempt(s)");
    expect(e.message).not.toContain(TOKEN);
    // three requests (fetch may open a spare connection, so count at least three, and a bounded number)
    expect(s.connections()).toBeGreaterThanOrEqual(3);
    expect(s.connections()).toBeLessThanOrEqual(6);
  });

  it("vera pull against a silent server ends in HUB_TIMEOUT (VERAKIT_HUB_CONNECT_TIMEOUT_MS)", async () => {
    const s = await silentServer();
    const r = await vera(["pull", "alice/adapter"], {
      HF_ENDPOINT: s.url,
      HF_TOKEN: TOKEN,
      VERAKIT_HUB_CONNECT_TIMEOUT_MS: "200",
      VERAKIT_HUB_MAX_RETRIES: "1",
    });
    expect(r.status).not.toBe(0);
    expect(r.out).toContain("HUB_TIMEOUT");
    expect(r.out).toContain(s.url);
    expect(r.out).not.toContain(TOKEN);
  });

  it("a server that sends headers then stalls mid-body: HUB_TIMEOUT from the idle timeout", async () => {
    let requests = 0;
    const h = await httpServer((_req, res) => {
      requests++;
      res.writeHead(200, { "Content-Type": "application/json", "Content-Length": "400" });
      res.write('{"type": "user", "name": "ali'); // and nothing more
    });
    const e = await veraError(
      hubWhoAmI({
        accessToken: TOKEN,
        hubUrl: h.url,
        retry: { maxRetries: 1, delayScale: 0, connectTimeoutMs: 5000, idleTimeoutMs: 200 },
      }),
    );
    expect(e.code).toBe("HUB_TIMEOUT");
    expect(e.message).toContain("idle timeout");
    expect(e.message).toContain(h.url);
    expect(requests).toBeGreaterThanOrEqual(1);
  });

  it("503 twice then 200: answered on the third attempt, with backoff and Retry-After within the cap", async () => {
    let requests = 0;
    const h = await httpServer((_req, res) => {
      requests++;
      if (requests <= 2) {
        res.writeHead(503, { "Content-Type": "application/json", "Retry-After": "2" });
        return res.end('{"error": "maintenance"}');
      }
      res.writeHead(200, { "Content-Type": "application/json" });
      res.end('{"ok": true}');
    });
    const waits: number[] = [];
    const events: RetryEvent[] = [];
    const hf = createHubFetch({
      retry: { maxRetries: 3, baseDelayMs: 100, maxDelayMs: 60_000, sleep: async (ms) => void waits.push(ms) },
      onRetry: (ev) => events.push(ev),
    });
    const res = await hf.fetch(`${h.url}/api/models/alice/x`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ok: true });
    expect(requests).toBe(3);
    expect(events.map((ev) => ev.reason)).toEqual(["HTTP 503", "HTTP 503"]);
    // Retry-After: 2 asks for 2 s; exponential backoff from 100 ms would wait far less
    for (const w of waits) expect(w).toBeGreaterThanOrEqual(2000);
  });

  it("a Retry-After beyond the cap is not waited for: the 503 is reported", async () => {
    const h = await httpServer((_req, res) => {
      res.writeHead(503, { "Retry-After": "3600" });
      res.end();
    });
    const waits: number[] = [];
    const hf = createHubFetch({
      retry: { maxRetries: 2, maxDelayMs: 5000, sleep: async (ms) => void waits.push(ms) },
    });
    const res = await hf.fetch(`${h.url}/api/models/alice/x`);
    expect(res.status).toBe(503);
    for (const w of waits) expect(w).toBeLessThanOrEqual(5000);
  });
});

describe("answers larger than the limit", () => {
  it("an API answer announcing more than maxAnswerBytes is refused before its body is read", async () => {
    const h = await httpServer((_req, res) => {
      res.writeHead(200, { "Content-Type": "application/json", "Content-Length": String(300 * 1024 * 1024) });
      res.write("[");
    });
    const e = await veraError(hubWhoAmI({ accessToken: TOKEN, hubUrl: h.url, retry: { maxRetries: 0 } }));
    expect(e.code).toBe("IO_TOO_LARGE");
    expect(e.message).toContain(String(HUB_DEFAULTS.maxAnswerBytes));
    expect(e.message).toContain(String(300 * 1024 * 1024));
  });

  it("a chunked API answer without a length is cut at maxAnswerBytes as it arrives", async () => {
    const h = await httpServer((_req, res) => {
      res.writeHead(200, { "Content-Type": "application/json" });
      const chunk = "[" + "0,".repeat(4096);
      let sent = 0;
      const more = (): void => {
        if (sent++ > 100 || res.destroyed) return void res.end();
        res.write(chunk, () => setImmediate(more));
      };
      more();
    });
    const e = await veraError(
      hubWhoAmI({ accessToken: TOKEN, hubUrl: h.url, retry: { maxRetries: 0, maxAnswerBytes: 64 * 1024 } }),
    );
    expect(e.code).toBe("IO_TOO_LARGE");
  });

  it("vera pull of a repo whose adapter_config.json is over the JSON limit: IO_TOO_LARGE, nothing downloaded", async () => {
    const server = await startHubServer({ users: USERS });
    closers.push(() => server.close());
    server.addRepo("alice/bomb");
    const big = new Uint8Array(INPUT_LIMITS.jsonBytes + 1).fill(0x20);
    big[0] = 0x7b;
    server.putFiles("alice/bomb", { "adapter_config.json": big, "adapter_model.safetensors": new Uint8Array(8) });
    const e = await veraError(fetchAdapter({ repo: "alice/bomb", hubUrl: server.url, retry: { delayScale: 0 } }));
    expect(e.code).toBe("IO_TOO_LARGE");
    expect(e.message).toContain("adapter_config.json");
    expect(server.requests.filter((r) => r.path.includes("/resolve/"))).toEqual([]);
  });
});

describe("whoami never prints token material", () => {
  const answer = (fields: { name: string; org: string; text: string }) => ({
    type: "user",
    id: fields.text,
    name: fields.name,
    fullname: fields.text,
    email: fields.text,
    avatarUrl: fields.text,
    orgs: [
      { type: "org", id: fields.text, name: fields.org, fullname: fields.text },
      { type: "org", id: "o2", name: "acme", fullname: fields.text },
    ],
    auth: { type: "access_token", accessToken: { displayName: fields.text, role: "write", createdAt: fields.text } },
  });
  const OTHER = "hf_SomeoneElsesTokenAbCdEf0123456789";

  it("a server that puts the token (or another token) in every free-text field: only the safe fields are shown", async () => {
    for (const text of [TOKEN, OTHER, `token ${TOKEN} here`]) {
      const h = await httpServer((_req, res) => {
        res.writeHead(200, { "Content-Type": "application/json" });
        res.end(JSON.stringify(answer({ name: "alice", org: text, text })));
      });
      for (const json of [false, true]) {
        const r = await vera(["whoami", ...(json ? ["--json"] : [])], { HF_ENDPOINT: h.url, HF_TOKEN: TOKEN });
        expect(r.status).toBe(0);
        expect(r.out).toContain("alice");
        expect(r.out).toContain("acme");
        expect(r.out).not.toContain(TOKEN);
        expect(r.out).not.toContain(OTHER);
        expect(r.out).not.toMatch(/hf_[A-Za-z0-9]{8,}/);
      }
    }
  });

  it("a user name that is the token, token-shaped, or not a Hub name: refused (HUB_BAD_RESPONSE), not printed", async () => {
    for (const name of [TOKEN, OTHER, "hf_abcdefgh12345678", "alice bob", "x".repeat(200), TOKEN.slice(3, 20)]) {
      const h = await httpServer((_req, res) => {
        res.writeHead(200, { "Content-Type": "application/json" });
        res.end(JSON.stringify(answer({ name, org: "acme", text: "x" })));
      });
      const r = await vera(["whoami"], { HF_ENDPOINT: h.url, HF_TOKEN: TOKEN });
      expect(r.status).not.toBe(0);
      expect(r.out).toContain("HUB_BAD_RESPONSE");
      expect(r.out).not.toContain(TOKEN);
      expect(r.out).not.toContain(OTHER);
      expect(r.out).not.toContain("hf_abcdefgh12345678");
    }
  });
});

import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { fetchAdapter, hubWhoAmI, pushAdapter, type HubProgressEvent } from "../src/hub/index.js";
import { pullAdapter } from "../src/hub/node/index.js";
import { startHubServer, type HubServer } from "./hub-server/server.js";
import { FAST_RETRY, makeAdapterBytes, OTHER_TOKEN, READ_TOKEN, tempDir, TOKEN, USERS } from "./hub-server/helpers.js";

let server: HubServer;
const cleanups: Array<() => void> = [];
beforeAll(async () => {
  server = await startHubServer({ users: USERS });
  // Fixtures: a repo with an adapter, an empty repo, a gated repo.
  server.putFiles("alice/adapter", { "adapter.vera.safetensors": makeAdapterBytes({ seed: 1 }) });
  server.putFiles("alice/empty", { "notes.txt": "nothing here" });
  server.putFiles("alice/pushes", { "adapter.vera.safetensors": makeAdapterBytes({ seed: 1 }) });
  server.addRepo("acme/gated", { gated: "manual" });
  server.putFiles("acme/gated", { "adapter.vera.safetensors": makeAdapterBytes({ seed: 2 }) });
});
afterEach(() => {
  server.clearFaults();
});
afterAll(async () => {
  await server.close();
  for (const c of cleanups) c();
});

const SECRETS = [TOKEN, READ_TOKEN, OTHER_TOKEN, "hf_unknownTokenQwErTy123456"];

/** Await a rejection and check it has the code and carries no token anywhere. */
async function failsWith(p: Promise<unknown>, code: string): Promise<Error & { code: string }> {
  let err: unknown;
  try {
    await p;
  } catch (e) {
    err = e;
  }
  expect(err, `expected a ${code} rejection`).toBeDefined();
  const e = err as Error & { code: string };
  expect(e.code).toBe(code);
  const all = `${e.message}\n${e.stack}\n${JSON.stringify(e)}`;
  for (const s of SECRETS) expect(all).not.toContain(s);
  return e;
}

function cacheDir(): string {
  const t = tempDir("vera-hub-fail-");
  cleanups.push(t.cleanup);
  return t.dir;
}

/** Every file under a folder (recursive), relative. */
function listAll(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((d) => !d.isDirectory())
    .map((d) => join(d.parentPath ?? (d as unknown as { path: string }).path, d.name).slice(dir.length + 1));
}

const base = () => ({ hubUrl: server.url, retry: FAST_RETRY });
const probe = (r: { range: string | null }) => r.range === "bytes=0-0";

describe("authentication and authorization", () => {
  it("401: a token the Hub does not know", async () => {
    const e = await failsWith(
      pushAdapter({
        ...base(),
        repo: "alice/x",
        file: makeAdapterBytes(),
        accessToken: "hf_unknownTokenQwErTy123456",
        create: true,
      }),
      "HUB_UNAUTHORIZED",
    );
    expect(e.message).toMatch(/token/);
    await failsWith(
      fetchAdapter({ ...base(), repo: "alice/adapter", accessToken: "hf_unknownTokenQwErTy123456" }),
      "HUB_UNAUTHORIZED",
    );
    await failsWith(hubWhoAmI({ hubUrl: server.url, accessToken: "hf_unknownTokenQwErTy123456" }), "HUB_UNAUTHORIZED");
  });

  it("a malformed or missing token is refused before any request, without echoing it", async () => {
    const n = server.requests.length;
    const e = await failsWith(
      pushAdapter({ ...base(), repo: "alice/x", file: makeAdapterBytes(), accessToken: "not-a-token-secret-value" }),
      "HUB_TOKEN_INVALID",
    );
    expect(e.message).not.toContain("not-a-token-secret-value");
    await failsWith(
      pushAdapter({ ...base(), repo: "alice/x", file: makeAdapterBytes(), accessToken: "" }),
      "HUB_TOKEN_MISSING",
    );
    expect(server.requests.length).toBe(n);
  });

  it("403: a read-only token, and another user's namespace", async () => {
    await failsWith(
      pushAdapter({ ...base(), repo: "rita/x", file: makeAdapterBytes(), accessToken: READ_TOKEN, create: true }),
      "HUB_FORBIDDEN",
    );
    await failsWith(
      pushAdapter({ ...base(), repo: "alice/adapter", file: makeAdapterBytes(), accessToken: OTHER_TOKEN }),
      "HUB_FORBIDDEN",
    );
    await failsWith(
      pushAdapter({
        ...base(),
        repo: "alice/new-one",
        file: makeAdapterBytes(),
        accessToken: OTHER_TOKEN,
        create: true,
      }),
      "HUB_FORBIDDEN",
    );
  });

  it("403: a gated repo until access is granted", async () => {
    const e = await failsWith(fetchAdapter({ ...base(), repo: "acme/gated", accessToken: OTHER_TOKEN }), "HUB_GATED");
    expect(e.message).toContain("gated");
    server.grantGated("acme/gated", "bob");
    const r = await fetchAdapter({ ...base(), repo: "acme/gated", accessToken: OTHER_TOKEN });
    expect(r.bytes).toEqual(makeAdapterBytes({ seed: 2 }));
  });

  it("redacts a token a careless server echoes back", async () => {
    server.inject({ path: "/api/whoami-v2", status: 400, echoAuthorization: true, body: { error: "bad request" } });
    const e = await failsWith(hubWhoAmI({ hubUrl: server.url, accessToken: TOKEN }), "HUB_HTTP_ERROR");
    expect(e.message).toContain("[REDACTED]");
  });
});

describe("not found: repo, revision, file", () => {
  it("tells the three apart", async () => {
    await failsWith(fetchAdapter({ ...base(), repo: "alice/nope", accessToken: TOKEN }), "HUB_REPO_NOT_FOUND");
    const rev = await failsWith(
      fetchAdapter({ ...base(), repo: "alice/adapter", revision: "no-such-branch", accessToken: TOKEN }),
      "HUB_REVISION_NOT_FOUND",
    );
    expect(rev.message).toContain("no-such-branch");
    const file = await failsWith(
      fetchAdapter({ ...base(), repo: "alice/empty", accessToken: TOKEN }),
      "HUB_FILE_NOT_FOUND",
    );
    expect(file.message).toContain("adapter.vera.safetensors");
    await failsWith(
      pushAdapter({
        ...base(),
        repo: "alice/adapter",
        branch: "feature",
        file: makeAdapterBytes(),
        accessToken: TOKEN,
      }),
      "HUB_REVISION_NOT_FOUND",
    );
  });
});

describe("retries", () => {
  it("429 honours Retry-After (bounded), then succeeds", async () => {
    const waits: number[] = [];
    server.inject({ path: "/paths-info/", status: 429, headers: { "Retry-After": "2" }, times: 2 });
    const r = await fetchAdapter({
      hubUrl: server.url,
      repo: "alice/adapter",
      retry: { maxRetries: 3, sleep: async (ms) => void waits.push(ms) },
    });
    expect(r.bytes).toEqual(makeAdapterBytes({ seed: 1 }));
    expect(waits).toEqual([2000, 2000]);
  });

  it("429 asking for longer than the cap fails at once with the wait in the message", async () => {
    const waits: number[] = [];
    server.inject({ path: "/paths-info/", status: 429, headers: { "Retry-After": "3600" } });
    const e = await failsWith(
      fetchAdapter({
        hubUrl: server.url,
        repo: "alice/adapter",
        retry: { maxRetries: 3, maxDelayMs: 60_000, sleep: async (ms) => void waits.push(ms) },
      }),
      "HUB_RATE_LIMITED",
    );
    expect(e.message).toContain("3600 s");
    expect(waits).toEqual([]);
  });

  it("429 on the commit is retried (the Hub did not act on it)", async () => {
    server.inject({ method: "POST", path: "/commit/", status: 429, headers: { "Retry-After": "0" } });
    const before = server.commitCount("alice/pushes");
    const r = await pushAdapter({
      ...base(),
      repo: "alice/pushes",
      file: makeAdapterBytes({ seed: 30 }),
      accessToken: TOKEN,
    });
    expect(server.commitCount("alice/pushes")).toBe(before + 1);
    expect(r.recoveredAfterFailure).toBe(false);
  });

  it("5xx on downloads: retried with backoff, then a bounded failure that stores nothing", async () => {
    const events: HubProgressEvent[] = [];
    server.inject({ method: "GET", path: "/resolve/", when: (q) => !probe(q), status: 503, times: 2 });
    const dir = cacheDir();
    const ok = await pullAdapter({
      ...base(),
      repo: "alice/adapter",
      cacheDir: dir,
      env: {},
      onProgress: (e) => events.push(e),
    });
    expect(ok.bytes).toEqual(makeAdapterBytes({ seed: 1 }));
    expect(events.filter((e) => e.type === "retry").map((e) => (e as { reason: string }).reason)).toEqual([
      "HTTP 503",
      "HTTP 503",
    ]);

    server.inject({ method: "GET", path: "/resolve/", status: 502, times: 50 });
    const dir2 = cacheDir();
    const n = server.requests.length;
    const e = await failsWith(
      pullAdapter({ ...base(), repo: "alice/adapter", cacheDir: dir2, env: {} }),
      "HUB_SERVER_ERROR",
    );
    expect(e.message).toContain("4 attempt");
    expect(server.requests.slice(n).filter((q) => q.path.includes("/resolve/")).length).toBe(FAST_RETRY.maxRetries + 1);
    expect(listAll(dir2)).toEqual([]);
  });

  it("5xx on idempotent upload calls is retried; a failed commit is retried only after checking it did not land", async () => {
    server.inject({ method: "POST", path: "/preupload/", status: 500 });
    server.inject({ method: "POST", path: "/commit/", status: 500 });
    const before = server.commitCount("alice/pushes");
    const events: HubProgressEvent[] = [];
    const r = await pushAdapter({
      ...base(),
      repo: "alice/pushes",
      file: makeAdapterBytes({ seed: 31 }),
      accessToken: TOKEN,
      onProgress: (e) => events.push(e),
    });
    expect(server.commitCount("alice/pushes")).toBe(before + 1);
    expect(events.some((e) => e.type === "phase" && e.phase === "verifying-commit")).toBe(true);
    expect(r.commit).toBe(server.head("alice/pushes"));
  });

  it("a commit that landed but whose answer was lost is recognised, never committed twice", async () => {
    server.inject({ method: "POST", path: "/commit/", status: 502, passThrough: true });
    const before = server.commitCount("alice/pushes");
    const file = makeAdapterBytes({ seed: 32 });
    const r = await pushAdapter({ ...base(), repo: "alice/pushes", file, accessToken: TOKEN });
    expect(r.recoveredAfterFailure).toBe(true);
    expect(server.commitCount("alice/pushes")).toBe(before + 1);
    expect(server.getFile("alice/pushes", "adapter.vera.safetensors")).toEqual(file);
  });

  it("409/412: the branch moved during the push; the commit is redone on the new head", async () => {
    const file = makeAdapterBytes({ seed: 33 });
    let moved = false;
    const racing: typeof fetch = async (input, init) => {
      const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
      if (!moved && init?.method === "POST" && url.includes("/commit/")) {
        moved = true;
        server.putFiles("alice/pushes", { "other.txt": "someone else's commit" });
      }
      return fetch(input, init);
    };
    const r = await pushAdapter({ ...base(), fetch: racing, repo: "alice/pushes", file, accessToken: TOKEN });
    expect(moved).toBe(true);
    expect(r.recoveredAfterFailure).toBe(true);
    expect(server.listPaths("alice/pushes")).toContain("other.txt");
    expect(server.getFile("alice/pushes", "adapter.vera.safetensors")).toEqual(file);
  });
});

describe("broken downloads", () => {
  it("a connection cut mid-download resumes with a Range request", async () => {
    const file = makeAdapterBytes({ seed: 1 });
    server.inject({ method: "GET", path: "/resolve/", when: (q) => q.range === "bytes=512-767", cutAfterBytes: 100 });
    const n = server.requests.length;
    const r = await fetchAdapter({ ...base(), repo: "alice/adapter", chunkSize: 256 });
    expect(r.bytes).toEqual(file);
    const ranges = server.requests
      .slice(n)
      .filter((q) => q.path.includes("/resolve/"))
      .map((q) => q.range);
    expect(ranges.filter((x) => x === "bytes=512-767").length).toBe(2); // cut, then resumed there
    expect(ranges.filter((x) => x === "bytes=0-255").length).toBe(1); // earlier chunks not fetched again
  });

  it("a connection that keeps being cut fails with HUB_NETWORK and leaves no partial file in the cache", async () => {
    server.inject({ method: "GET", path: "/resolve/", when: (q) => !probe(q), cutAfterBytes: 10, times: 50 });
    const dir = cacheDir();
    const e = await failsWith(pullAdapter({ ...base(), repo: "alice/adapter", cacheDir: dir, env: {} }), "HUB_NETWORK");
    expect(e.message).toMatch(/connection cut/);
    expect(listAll(dir)).toEqual([]);
  });

  it("a corrupted transfer is detected by digest, retried, and never cached", async () => {
    server.inject({ method: "GET", path: "/resolve/", when: (q) => !probe(q), corrupt: true });
    const ok = await fetchAdapter({ ...base(), repo: "alice/adapter" });
    expect(ok.bytes).toEqual(makeAdapterBytes({ seed: 1 }));
    server.inject({ method: "GET", path: "/resolve/", when: (q) => !probe(q), corrupt: true, times: 50 });
    const dir = cacheDir();
    await failsWith(pullAdapter({ ...base(), repo: "alice/adapter", cacheDir: dir, env: {} }), "HUB_INTEGRITY");
    expect(listAll(dir)).toEqual([]);
  });

  it("an unreachable Hub falls back to a cached copy; without one it is HUB_NETWORK", async () => {
    const dir = cacheDir();
    await pullAdapter({ ...base(), repo: "alice/adapter", cacheDir: dir, env: {} });
    const events: HubProgressEvent[] = [];
    const r = await pullAdapter({
      repo: "alice/adapter",
      hubUrl: "http://127.0.0.1:9",
      retry: FAST_RETRY,
      cacheDir: dir,
      env: {},
      onProgress: (e) => events.push(e),
    });
    expect(r.fromCache).toBe(true);
    expect(events.some((e) => e.type === "notice" && /could not be reached/.test(e.message))).toBe(true);
    await failsWith(
      pullAdapter({
        repo: "alice/adapter",
        hubUrl: "http://127.0.0.1:9",
        retry: FAST_RETRY,
        cacheDir: cacheDir(),
        env: {},
      }),
      "HUB_NETWORK",
    );
  });
});

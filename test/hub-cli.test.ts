import { createHash } from "node:crypto";
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { main } from "../src/cli/main.js";
import { commands } from "../src/cli/commands/index.js";
import { startHubServer, type HubFault, type HubServer } from "./hub-server/server.js";
import { makeAdapterBytes, READ_TOKEN, tempDir, TOKEN, USERS } from "./hub-server/helpers.js";

let server: HubServer;
let work: { dir: string; cleanup: () => void };
/** Every stdout/stderr of every CLI run in this file, grepped for tokens at the end. */
const outputs: string[] = [];
const BAD_TOKEN = "hf_notKnownToTheServer0000000000";
const SECRETS = [TOKEN, READ_TOKEN, BAD_TOKEN];

beforeAll(async () => {
  server = await startHubServer({ users: USERS });
  // load the Hub commands and the Hub client once here, so that no test's time includes the first import
  await Promise.all([commands.push!(), commands.pull!(), commands.whoami!(), import("@huggingface/hub")]);
  work = tempDir("vera-hub-cli-");
});
afterEach(() => server.clearFaults());
afterAll(async () => {
  await server.close();
  work.cleanup();
});

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Run the CLI in this process (where the loopback server lives), as `vera` would with this environment:
 * the same main() the executable calls, its output captured. In process, so that a test's time is the
 * Hub exchange and not a Node start-up per command (test/cli-core.test.ts runs the built executable).
 */
async function vera(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const out: string[] = [];
  const err: string[] = [];
  const status = await main(
    args,
    {
      PATH: process.env["PATH"] ?? "",
      HOME: work.dir,
      VERAKIT_HUB_RETRY_SCALE: "0",
      VERAKIT_HUB_MAX_RETRIES: "2",
      ...env,
    },
    { out: (l) => out.push(l + "\n"), err: (l) => err.push(l + "\n"), isTTY: false },
  );
  const stdout = out.join("");
  const stderr = err.join("");
  outputs.push(stdout, stderr);
  return { status, stdout, stderr };
}

let n = 0;
/** A fresh HF_HOME and the env pointing the CLI at the loopback server. */
function hubEnv(token: string | undefined = TOKEN): { env: Record<string, string>; home: string } {
  const home = join(work.dir, `home-${++n}`);
  mkdirSync(home, { recursive: true });
  return { home, env: { HF_ENDPOINT: server.url, HF_HOME: home, ...(token ? { HF_TOKEN: token } : {}) } };
}

function adapterFile(seed: number): { path: string; bytes: Uint8Array } {
  const bytes = makeAdapterBytes({ seed, baseModel: "acme/tiny-llama", taskType: "CAUSAL_LM" });
  const path = join(work.dir, `adapter-${seed}.vera.safetensors`);
  writeFileSync(path, bytes);
  return { path, bytes };
}

const sha256 = (b: Uint8Array): string => createHash("sha256").update(b).digest("hex");

describe("vera push / pull / whoami", () => {
  it("push then pull round-trips an adapter byte for byte into the HF cache layout", async () => {
    const { path, bytes } = adapterFile(101);
    const { env, home } = hubEnv();
    const push = await vera(["push", path, "--repo", "alice/cli-round-trip", "--create", "--json"], env);
    expect(push.status, push.stderr).toBe(0);
    const pushed = JSON.parse(push.stdout);
    expect(pushed).toMatchObject({
      ok: true,
      repo: "alice/cli-round-trip",
      branch: "main",
      modelCard: "created",
      repoCreated: true,
    });

    const pull = await vera(["pull", "alice/cli-round-trip", "--json"], env);
    expect(pull.status, pull.stderr).toBe(0);
    const pulled = JSON.parse(pull.stdout);
    expect(pulled.commit).toBe(pushed.commit);
    const root = join(home, "hub", "models--alice--cli-round-trip");
    const pointer = join(root, "snapshots", pushed.commit, "adapter.vera.safetensors");
    expect(pulled.cachePath).toBe(pointer);
    expect(lstatSync(pointer).isSymbolicLink()).toBe(true);
    expect(readFileSync(pointer)).toEqual(Buffer.from(bytes));
    expect(readFileSync(join(root, "blobs", sha256(bytes)))).toEqual(Buffer.from(bytes));
    expect(readFileSync(join(root, "refs", "main"), "utf8")).toBe(pushed.commit);

    // Human output, -o, and offline from the cache (HF_HUB_OFFLINE=1 and --offline) with a dead endpoint.
    const out = join(work.dir, "out-rt");
    const human = await vera(["pull", "alice/cli-round-trip", "-o", out], env);
    expect(human.status).toBe(0);
    expect(human.stdout).toContain("from the cache");
    expect(readFileSync(join(out, "adapter.vera.safetensors"))).toEqual(Buffer.from(bytes));
    const dead = { ...env, HF_ENDPOINT: "http://127.0.0.1:9" };
    expect((await vera(["pull", "alice/cli-round-trip"], { ...dead, HF_HUB_OFFLINE: "1" })).status).toBe(0);
    expect((await vera(["pull", `alice/cli-round-trip@${pushed.commit}`, "--offline"], dead)).status).toBe(0);
    const miss = await vera(["pull", "alice/not-cached", "--offline"], dead);
    expect(miss.status).toBe(1);
    expect(miss.stderr).toContain("HUB_OFFLINE_MISS");
  });

  it("push --with-peft uploads a PEFT folder next to the verakit file; a --revision branch is created with --create", async () => {
    const { path } = adapterFile(102);
    const { env } = hubEnv();
    const r = await vera(
      [
        "push",
        path,
        "--repo",
        "acme/cli-peft",
        "--create",
        "--private",
        "--with-peft",
        "--revision",
        "dev",
        "-m",
        "first upload",
      ],
      env,
    );
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain("adapter_config.json");
    expect(server.listPaths("acme/cli-peft", "dev")).toEqual([
      ".gitattributes",
      "README.md",
      "adapter.vera.safetensors",
      "adapter_config.json",
      "adapter_model.safetensors",
    ]);
    expect(server.isPrivate("acme/cli-peft")).toBe(true);
    const cfg = JSON.parse(new TextDecoder().decode(server.getFile("acme/cli-peft", "adapter_config.json", "dev")));
    expect(cfg.peft_type).toBe("VERA");
    expect(cfg.base_model_name_or_path).toBe("acme/tiny-llama");
  });

  it("whoami reads HF_TOKEN or the token file, and prints the account, never the token", async () => {
    const { env, home } = hubEnv();
    const r = await vera(["whoami"], env);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^alice\n/);
    expect(r.stdout).toContain("orgs: acme");
    writeFileSync(join(home, "token"), `${READ_TOKEN}\n`);
    const viaFile = await vera(["whoami", "--json"], { HF_ENDPOINT: server.url, HF_HOME: home });
    expect(viaFile.status, viaFile.stderr).toBe(0);
    expect(JSON.parse(viaFile.stdout)).toMatchObject({ name: "rita", tokenRole: "read", tokenSource: "token-file" });
    const none = await vera(["whoami"], { HF_ENDPOINT: server.url, HF_HOME: join(home, "empty") });
    expect(none.status).toBe(1);
    expect(none.stderr).toContain("HUB_TOKEN_MISSING");
  });

  it("refuses a usage error with exit 2", async () => {
    const { env } = hubEnv();
    expect((await vera(["push", "--repo", "alice/x"], env)).status).toBe(2);
    expect((await vera(["push", "f", "--repo", "not a repo"], env)).status).toBe(2);
    expect((await vera(["pull", "alice/x@../../etc"], env)).status).toBe(2);
  });
});

describe("failures: clear messages, bounded retries, no token in any output", () => {
  const file = () => adapterFile(200).path;
  beforeAll(() => {
    server.putFiles("alice/cli-fixed", { "adapter.vera.safetensors": makeAdapterBytes({ seed: 5 }) });
    server.putFiles("alice/cli-empty", { "notes.txt": "no adapter" });
  });

  const cases: Array<{
    name: string;
    args: () => string[];
    token?: string;
    faults?: HubFault[];
    code: string;
    exit?: number;
    extra?: (r: Run, home: string) => void;
  }> = [
    {
      name: "401 bad token (push)",
      args: () => ["push", file(), "--repo", "alice/cli-fixed"],
      token: BAD_TOKEN,
      code: "HUB_UNAUTHORIZED",
    },
    {
      name: "401 bad token (pull)",
      args: () => ["pull", "alice/cli-fixed"],
      token: BAD_TOKEN,
      code: "HUB_UNAUTHORIZED",
    },
    { name: "401 bad token (whoami)", args: () => ["whoami"], token: BAD_TOKEN, code: "HUB_UNAUTHORIZED" },
    {
      name: "403 read-only token",
      args: () => ["push", file(), "--repo", "rita/x", "--create"],
      token: READ_TOKEN,
      code: "HUB_FORBIDDEN",
    },
    { name: "404 repo", args: () => ["pull", "alice/cli-missing"], code: "HUB_REPO_NOT_FOUND" },
    { name: "404 file", args: () => ["pull", "alice/cli-empty"], code: "HUB_FILE_NOT_FOUND" },
    {
      name: "404 repo on push without --create",
      args: () => ["push", file(), "--repo", "alice/cli-nope"],
      code: "HUB_REPO_NOT_FOUND",
      extra: (r) => expect(r.stderr + r.stdout).toContain("--create"),
    },
    {
      name: "409/412 branch keeps moving",
      args: () => ["push", file(), "--repo", "alice/cli-fixed"],
      faults: [{ method: "POST", path: "/commit/", status: 412, times: 3 }],
      code: "HUB_CONFLICT",
    },
    {
      name: "429 with a Retry-After beyond the cap",
      args: () => ["pull", "alice/cli-fixed"],
      faults: [{ path: "/revision/", status: 429, headers: { "Retry-After": "86400" } }],
      code: "HUB_RATE_LIMITED",
      exit: 2,
      extra: (r) => expect(r.stderr + r.stdout).toContain("86400 s"),
    },
    {
      name: "429 persisting",
      args: () => ["pull", "alice/cli-fixed"],
      faults: [{ path: "/paths-info/", status: 429, headers: { "Retry-After": "1" }, times: 3 }],
      code: "HUB_RATE_LIMITED",
      exit: 2,
    },
    {
      name: "5xx persisting",
      args: () => ["pull", "alice/cli-fixed"],
      faults: [{ path: "/resolve/", status: 503, times: 3 }],
      code: "HUB_SERVER_ERROR",
      exit: 2,
    },
    {
      name: "connection cut mid-download, every time",
      args: () => ["pull", "alice/cli-fixed"],
      faults: [{ method: "GET", path: "/resolve/", when: (q) => q.range !== "bytes=0-0", cutAfterBytes: 64, times: 3 }],
      code: "HUB_NETWORK",
      exit: 2,
      extra: (_r, home) =>
        expect(
          existsSync(join(home, "hub", "models--alice--cli-fixed"))
            ? readdirSync(join(home, "hub", "models--alice--cli-fixed"), { recursive: true })
            : [],
        ).toEqual([]),
    },
    {
      name: "a server that echoes the Authorization header",
      args: () => ["whoami"],
      faults: [{ path: "/api/whoami-v2", status: 500, times: 3, echoAuthorization: true }],
      code: "HUB_SERVER_ERROR",
      exit: 2,
    },
    { name: "a malformed --token", args: () => ["whoami", "--token", "hf_bad token!"], code: "HUB_TOKEN_INVALID" },
  ];

  for (const c of cases) {
    it(c.name, async () => {
      for (const mode of [[], ["--debug"], ["--json"]]) {
        for (const f of c.faults ?? []) server.inject(f);
        const { env, home } = hubEnv(c.token ?? TOKEN);
        const r = await vera([...c.args(), ...mode], env);
        expect(r.status, `${mode.join(" ")}\n${r.stdout}\n${r.stderr}`).toBe(c.exit ?? 1);
        if (mode[0] === "--json") expect(JSON.parse(r.stdout).error.code).toBe(c.code);
        else expect(r.stderr).toContain(`error ${c.code}`);
        c.extra?.(r, home);
        server.clearFaults();
      }
    });
  }

  it("recovers from transient failures: 429 then 5xx then a cut connection, and the pull succeeds", async () => {
    server.inject({ path: "/revision/", status: 429, headers: { "Retry-After": "1" } });
    server.inject({ path: "/paths-info/", status: 500 });
    server.inject({ method: "GET", path: "/resolve/", when: (q) => q.range !== "bytes=0-0", cutAfterBytes: 32 });
    const { env, home } = hubEnv();
    const r = await vera(["pull", "alice/cli-fixed"], env);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toContain("HTTP 429");
    expect(r.stderr).toContain("HTTP 500");
    expect(r.stderr).toContain("connection cut");
    const bytes = makeAdapterBytes({ seed: 5 });
    expect(readFileSync(join(home, "hub", "models--alice--cli-fixed", "blobs", sha256(bytes)))).toEqual(
      Buffer.from(bytes),
    );
  });

  it("no output of any run in this file contains a token", () => {
    expect(outputs.length).toBeGreaterThan(40);
    const all = outputs.join("\n");
    for (const s of SECRETS) expect(all.includes(s), `found ${s.slice(0, 6)}...`).toBe(false);
    // The echoing server did put a token into its answer; it arrived redacted.
    expect(all).toContain("[REDACTED]");
  });
});

import { existsSync, lstatSync, readdirSync, readFileSync, readlinkSync, realpathSync } from "node:fs";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fetchAdapter, isGeneratedModelCard, pushAdapter, type HubProgressEvent } from "../src/hub/index.js";
import { pullAdapter } from "../src/hub/node/index.js";
import { readVera } from "../src/format/validate.js";
import { parseSafetensors } from "../src/safetensors/parse.js";
import { startHubServer, type HubServer } from "./hub-server/server.js";
import { FAST_RETRY, makeAdapter, makeAdapterBytes, tempDir, TOKEN, USERS } from "./hub-server/helpers.js";

let server: HubServer;
const cleanups: Array<() => void> = [];
beforeAll(async () => {
  server = await startHubServer({ users: USERS });
});
afterAll(async () => {
  await server.close();
  for (const c of cleanups) c();
});

function cache(): string {
  const t = tempDir("vera-hub-cache-");
  cleanups.push(t.cleanup);
  return t.dir;
}

const sha256 = (b: Uint8Array): string => createHash("sha256").update(b).digest("hex");
const base = () => ({ hubUrl: server.url, retry: FAST_RETRY });

describe("push then pull", () => {
  it("round-trips an adapter byte for byte into the HF cache layout", async () => {
    const file = makeAdapterBytes({ seed: 7, baseModel: "acme/tiny-llama", taskType: "CAUSAL_LM" });
    const events: HubProgressEvent[] = [];
    const pushed = await pushAdapter({
      ...base(),
      repo: "alice/round-trip",
      file,
      accessToken: TOKEN,
      create: true,
      onProgress: (e) => events.push(e),
    });
    expect(pushed.repoCreated).toBe(true);
    expect(pushed.modelCard).toBe("created");
    expect(pushed.commit).toBe(server.head("alice/round-trip"));
    expect(pushed.files.map((f) => f.path).sort()).toEqual(["README.md", "adapter.vera.safetensors"]);
    expect(events.some((e) => e.type === "phase" && e.phase === "committing")).toBe(true);
    expect(server.getFile("alice/round-trip", "adapter.vera.safetensors")).toEqual(file);

    const dir = cache();
    const pulled = await pullAdapter({ ...base(), repo: "alice/round-trip", cacheDir: dir, env: {} });
    expect(pulled.bytes).toEqual(file);
    expect(pulled.format).toBe("vera");
    expect(pulled.commit).toBe(pushed.commit);
    expect(pulled.fromCache).toBe(false);
    // Layout of Python's huggingface_hub.
    const root = join(dir, "models--alice--round-trip");
    const blob = join(root, "blobs", sha256(file));
    expect(readFileSync(blob)).toEqual(Buffer.from(file));
    const pointer = join(root, "snapshots", pushed.commit, "adapter.vera.safetensors");
    expect(pulled.cachePath).toBe(pointer);
    expect(lstatSync(pointer).isSymbolicLink()).toBe(true);
    expect(readlinkSync(pointer)).toBe(join("..", "..", "blobs", sha256(file)));
    expect(realpathSync(pointer)).toBe(realpathSync(blob));
    expect(readFileSync(join(root, "refs", "main"), "utf8")).toBe(pushed.commit);
    expect(readdirSync(join(root, "blobs")).filter((n) => n.includes("incomplete"))).toEqual([]);
  });

  it("pulls a second time from the cache without downloading, and offline without a server", async () => {
    const file = makeAdapterBytes({ seed: 11 });
    await pushAdapter({ ...base(), repo: "alice/cached", file, accessToken: TOKEN, create: true });
    const dir = cache();
    await pullAdapter({ ...base(), repo: "alice/cached", cacheDir: dir, env: {} });
    const before = server.requests.length;
    const again = await pullAdapter({ ...base(), repo: "alice/cached", cacheDir: dir, env: {} });
    expect(again.fromCache).toBe(true);
    expect(again.bytes).toEqual(file);
    const downloads = server.requests.slice(before).filter((r) => r.path.includes("/resolve/"));
    expect(downloads).toEqual([]);
    // Offline: a dead endpoint is never contacted.
    const n = server.requests.length;
    const off = await pullAdapter({
      repo: "alice/cached",
      hubUrl: "http://127.0.0.1:9",
      cacheDir: dir,
      env: { HF_HUB_OFFLINE: "1" },
    });
    expect(off.bytes).toEqual(file);
    expect(off.fromCache).toBe(true);
    expect(server.requests.length).toBe(n);
    // HF_HUB_CACHE is honoured through env.
    const viaEnv = await pullAdapter({ repo: "alice/cached", offline: true, env: { HF_HUB_CACHE: dir } });
    expect(viaEnv.bytes).toEqual(file);
    await expect(
      pullAdapter({ repo: "alice/never-pulled", offline: true, cacheDir: dir, env: {} }),
    ).rejects.toMatchObject({ code: "HUB_OFFLINE_MISS" });
  });

  it("resolves HF_HOME/hub and an @revision, and writes -o output atomically", async () => {
    const file = makeAdapterBytes({ seed: 3 });
    await pushAdapter({ ...base(), repo: "alice/branches", file, accessToken: TOKEN, create: true, branch: "exp" });
    const home = cache();
    const out = cache();
    const r = await pullAdapter({
      ...base(),
      repo: "alice/branches",
      revision: "exp",
      env: { HF_HOME: home },
      outputDir: join(out, "sub"),
    });
    expect(r.cachePath.startsWith(join(home, "hub", "models--alice--branches", "snapshots"))).toBe(true);
    expect(readFileSync(join(home, "hub", "models--alice--branches", "refs", "exp"), "utf8")).toBe(r.commit);
    expect(readFileSync(join(out, "sub", "adapter.vera.safetensors"))).toEqual(Buffer.from(file));
    expect(readdirSync(join(out, "sub"))).toEqual(["adapter.vera.safetensors"]);
    // main has no adapter: a clear file-not-found, not a repo-not-found.
    await expect(pullAdapter({ ...base(), repo: "alice/branches", env: {}, cacheDir: cache() })).rejects.toMatchObject({
      code: "HUB_FILE_NOT_FOUND",
    });
  });

  it("fetchAdapter downloads into memory and validates", async () => {
    const file = makeAdapterBytes({ seed: 5 });
    await pushAdapter({ ...base(), repo: "alice/memory", file, accessToken: TOKEN, create: true });
    const r = await fetchAdapter({ ...base(), repo: "alice/memory", chunkSize: 100 });
    expect(r.bytes).toEqual(file);
    expect(readVera(r.bytes).modules.length).toBe(4);
    // chunked: several ranged requests for the one file
    const ranged = server.requests.filter(
      (q) =>
        q.path.endsWith("/resolve/" + r.commit + "/adapter.vera.safetensors") && q.range && q.range !== "bytes=0-0",
    );
    expect(ranged.length).toBe(Math.ceil(file.length / 100));
  });
});

describe("push details", () => {
  it("validates the file before sending anything", async () => {
    const file = makeAdapterBytes();
    const broken = Uint8Array.from(file);
    broken[broken.length - 1] = broken[broken.length - 1]! ^ 0x55; // digest no longer matches
    const n = server.requests.length;
    await expect(
      pushAdapter({ ...base(), repo: "alice/broken", file: broken, accessToken: TOKEN, create: true }),
    ).rejects.toMatchObject({ code: "VERA_DIGEST_MISMATCH" });
    expect(server.requests.length).toBe(n);
  });

  it("needs create for a missing repo and says so", async () => {
    await expect(
      pushAdapter({ ...base(), repo: "alice/missing", file: makeAdapterBytes(), accessToken: TOKEN }),
    ).rejects.toMatchObject({
      code: "HUB_REPO_NOT_FOUND",
      message: expect.stringContaining("--create"),
    });
  });

  it("creates private repos and pushes into an existing one (409 on create is fine)", async () => {
    const r1 = await pushAdapter({
      ...base(),
      repo: "acme/private-one",
      file: makeAdapterBytes({ seed: 1 }),
      accessToken: TOKEN,
      create: true,
      private: true,
    });
    expect(r1.repoCreated).toBe(true);
    expect(server.isPrivate("acme/private-one")).toBe(true);
    const r2 = await pushAdapter({
      ...base(),
      repo: "acme/private-one",
      file: makeAdapterBytes({ seed: 2 }),
      accessToken: TOKEN,
      create: true,
    });
    expect(r2.repoCreated).toBe(false);
    expect(r2.modelCard).toBe("updated");
    // Anonymous pull of a private repo: not found (401 with RepoNotFound, as the Hub answers).
    await expect(fetchAdapter({ ...base(), repo: "acme/private-one" })).rejects.toMatchObject({
      code: "HUB_REPO_NOT_FOUND",
    });
    const withToken = await fetchAdapter({ ...base(), repo: "acme/private-one", accessToken: TOKEN });
    expect(withToken.bytes).toEqual(makeAdapterBytes({ seed: 2 }));
  });

  it("keeps a model card a person wrote, unless asked to overwrite it", async () => {
    server.putFiles("alice/handwritten", { "README.md": "# My adapter\n\nHand-written notes.\n" });
    const kept = await pushAdapter({
      ...base(),
      repo: "alice/handwritten",
      file: makeAdapterBytes(),
      accessToken: TOKEN,
    });
    expect(kept.modelCard).toBe("kept");
    expect(new TextDecoder().decode(server.getFile("alice/handwritten", "README.md"))).toContain("Hand-written notes.");
    const over = await pushAdapter({
      ...base(),
      repo: "alice/handwritten",
      file: makeAdapterBytes(),
      accessToken: TOKEN,
      modelCard: "overwrite",
    });
    expect(over.modelCard).toBe("overwritten");
    const card = new TextDecoder().decode(server.getFile("alice/handwritten", "README.md"));
    expect(isGeneratedModelCard({ text: card })).toBe(true);
    const skip = await pushAdapter({
      ...base(),
      repo: "alice/handwritten",
      file: makeAdapterBytes({ seed: 9 }),
      accessToken: TOKEN,
      modelCard: "skip",
    });
    expect(skip.modelCard).toBe("skipped");
    expect(skip.files.map((f) => f.path)).toEqual(["adapter.vera.safetensors"]);
  });

  it("writes a card with the Hub metadata for adapters", async () => {
    await pushAdapter({
      ...base(),
      repo: "alice/carded",
      file: makeAdapterBytes({ baseModel: "acme/tiny-llama", taskType: "CAUSAL_LM" }),
      accessToken: TOKEN,
      create: true,
    });
    const card = new TextDecoder().decode(server.getFile("alice/carded", "README.md"));
    const fm = card.split("---\n")[1]!;
    expect(fm).toContain('base_model: "acme/tiny-llama"');
    expect(fm).toContain("library_name: verakit");
    expect(fm).toContain("pipeline_tag: text-generation");
    expect(fm).toContain('- "base_model:adapter:acme/tiny-llama"');
    expect(fm).toContain('- "vera"');
    expect(card).toContain("PeftModel");
    expect(card).toContain("vera pull alice/carded");
  });

  it("with withPeft uploads adapter_config.json + adapter_model.safetensors, and a PEFT-only repo pulls (imported)", async () => {
    const adapter = makeAdapter({ seed: 21, baseModel: "acme/tiny-llama", taskType: "CAUSAL_LM", layers: 1 });
    const { writeVera } = await import("../src/format/write.js");
    const file = writeVera({ adapter });
    const r = await pushAdapter({
      ...base(),
      repo: "alice/with-peft",
      file,
      accessToken: TOKEN,
      create: true,
      withPeft: true,
    });
    expect(r.files.map((f) => f.path).sort()).toEqual([
      "README.md",
      "adapter.vera.safetensors",
      "adapter_config.json",
      "adapter_model.safetensors",
    ]);
    const cfg = JSON.parse(new TextDecoder().decode(server.getFile("alice/with-peft", "adapter_config.json")));
    expect(cfg).toMatchObject({ peft_type: "VERA", r: 8, projection_prng_key: 21 });
    const weights = parseSafetensors(server.getFile("alice/with-peft", "adapter_model.safetensors")!);
    expect([...weights.tensors.keys()]).toContain("base_model.model.model.layers.0.self_attn.q_proj.vera_lambda_d");
    const card = new TextDecoder().decode(server.getFile("alice/with-peft", "README.md"));
    expect(card).toContain("library_name: peft");

    // A repo holding only the PEFT files (a model the base's config.json sizes).
    // The base's real config.json (made by transformers, see fixtures/peft/MANIFEST.json).
    server.putFiles("acme/tiny-llama", {
      "config.json": readFileSync(join(__dirname, "../fixtures/peft/bases/llama/config.json")),
    });
    server.putFiles("bob/peft-only", {
      "adapter_config.json": server.getFile("alice/with-peft", "adapter_config.json")!,
      "adapter_model.safetensors": server.getFile("alice/with-peft", "adapter_model.safetensors")!,
    });
    const dir = cache();
    const pulled = await pullAdapter({ ...base(), repo: "bob/peft-only", cacheDir: dir, env: {} });
    expect(pulled.format).toBe("peft");
    expect(pulled.adapter.modules.map((m) => [m.name, m.inFeatures, m.outFeatures])).toEqual(
      adapter.modules.map((m) => [m.name, m.inFeatures, m.outFeatures]),
    );
    for (let i = 0; i < adapter.modules.length; i++) {
      expect(pulled.adapter.modules[i]!.lambdaB).toEqual(adapter.modules[i]!.lambdaB);
      expect(pulled.adapter.modules[i]!.lambdaD).toEqual(adapter.modules[i]!.lambdaD);
    }
    expect(existsSync(join(dir, "models--bob--peft-only", "snapshots", pulled.commit, "adapter_config.json"))).toBe(
      true,
    );
    expect(existsSync(join(dir, "models--acme--tiny-llama", "refs", "main"))).toBe(true);
    // ...and offline from the cache, base config included.
    const off = await pullAdapter({ repo: "bob/peft-only", offline: true, cacheDir: dir, env: {} });
    expect(off.bytes).toEqual(pulled.bytes);
  });

  it("pulls a PEFT adapter made by real PEFT, sizing its modules from the base config on the Hub", async () => {
    const dir = join(__dirname, "../fixtures/peft/adapters/llama-gqa-sp");
    const cfg = JSON.parse(readFileSync(join(dir, "adapter_config.json"), "utf8"));
    cfg.base_model_name_or_path = "acme/tiny-llama-2";
    server.putFiles("acme/tiny-llama-2", {
      "config.json": readFileSync(join(__dirname, "../fixtures/peft/bases/llama/config.json")),
    });
    const weights = new Uint8Array(readFileSync(join(dir, "adapter_model.safetensors")));
    server.putFiles("bob/real-peft", {
      "adapter_config.json": JSON.stringify(cfg, null, 2),
      "adapter_model.safetensors": weights,
    });
    const pulled = await fetchAdapter({ ...base(), repo: "bob/real-peft" });
    expect(pulled.format).toBe("peft");
    expect(pulled.baseConfig?.repo).toBe("acme/tiny-llama-2");
    const st = parseSafetensors(weights);
    const lambdaB = [...st.tensors.keys()].filter((k) => k.endsWith(".vera_lambda_b"));
    expect(pulled.adapter.modules.length).toBe(lambdaB.length);
    expect(pulled.adapter.prng.seed).toBe(4294967301n);
    expect(readVera(pulled.bytes).modules.length).toBe(lambdaB.length);
    // Without a base on the Hub, the error says what is missing.
    cfg.base_model_name_or_path = "acme/absent-base";
    server.putFiles("bob/real-peft-nobase", {
      "adapter_config.json": JSON.stringify(cfg, null, 2),
      "adapter_model.safetensors": weights,
    });
    await expect(fetchAdapter({ ...base(), repo: "bob/real-peft-nobase" })).rejects.toMatchObject({
      code: "PEFT_BASE_REQUIRED",
      message: expect.stringContaining("acme/absent-base"),
    });
  });
});

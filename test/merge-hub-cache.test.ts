/**
 * `vera merge org/model ADAPTER -o OUT`: a Hub repo id resolved in a fake Hugging Face cache (the
 * layout huggingface_hub writes: refs/<rev>, snapshots/<commit>/<file> linking to ../../blobs/<etag>),
 * offline, and merged like the checkpoint folder it stands for. Every other symlink leaving the
 * checkpoint's folder is still refused.
 */
import { createHash } from "node:crypto";
import { lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, symlinkSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { ErrorCode, isVeraError, type VeraError } from "../src/errors.js";
import { HubErrorCode } from "../src/hub/errors.js";
import { findCachedSnapshot } from "../src/hub/node/find-cached-snapshot.js";
import { mergeCheckpoint, MergeErrorCode } from "../src/merge/index.js";
import { loadAdapterFromPath } from "../src/node/load-adapter.js";
import { readBaseShapes } from "../src/node/read-base-shapes.js";
import { runCli } from "./cli-helpers.js";
import { useTempDirs } from "./temp-helpers.js";

const FIX = join(__dirname, "..", "fixtures", "safetensors", "llama-f32");
const BASE = join(FIX, "base");
const ADAPTER = join(FIX, "adapter");
const tempDir = useTempDirs("vera-merge-hub-cache-");
const MAIN = "1".repeat(40);
const OLD = "2".repeat(40);

/** Put `files` (name -> bytes) in `cache` as huggingface_hub does; returns the snapshot folder. */
function cacheSnapshot(cache: string, repo: string, commit: string, files: Map<string, Buffer>, ref?: string): string {
  const root = join(cache, `models--${repo.replace("/", "--")}`);
  const snap = join(root, "snapshots", commit);
  mkdirSync(join(root, "blobs"), { recursive: true });
  mkdirSync(snap, { recursive: true });
  for (const [name, bytes] of files) {
    const etag = createHash("sha256").update(bytes).digest("hex");
    writeFileSync(join(root, "blobs", etag), bytes);
    symlinkSync(join("..", "..", "blobs", etag), join(snap, name));
  }
  if (ref !== undefined) {
    mkdirSync(join(root, "refs"), { recursive: true });
    writeFileSync(join(root, "refs", ref), commit);
  }
  return snap;
}

function baseFiles(): Map<string, Buffer> {
  return new Map(readdirSync(BASE).map((f) => [f, readFileSync(join(BASE, f))]));
}

/** A cache holding the llama fixture as `org/llama` at `main`, and a one-file older revision at tag v1. */
function fakeCache(): { cache: string; snap: string } {
  const cache = tempDir();
  const snap = cacheSnapshot(cache, "org/llama", MAIN, baseFiles(), "main");
  cacheSnapshot(cache, "org/llama", OLD, new Map([["config.json", readFileSync(join(BASE, "config.json"))]]), "v1");
  return { cache, snap };
}

/** Name -> bytes of a folder's entries, each a plain file (no symlinks). */
function plainFiles(dir: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const f of readdirSync(dir).sort()) {
    expect({ f, file: lstatSync(join(dir, f)).isFile() }).toEqual({ f, file: true });
    out.set(f, readFileSync(join(dir, f)));
  }
  return out;
}

async function veraError(p: Promise<unknown>): Promise<VeraError> {
  try {
    await p;
  } catch (e) {
    if (isVeraError(e)) return e;
    throw e;
  }
  throw new Error("expected a VeraError");
}

/** The llama fixture merged from its plain folder: what every merge of its cached snapshot must give. */
let reference: Map<string, Buffer>;
beforeAll(async () => {
  const dir = tempDir();
  await mergeCheckpoint({ model: BASE, adapter: ADAPTER, output: dir, durable: false });
  reference = plainFiles(dir);
});

afterEach(() => {
  vi.unstubAllGlobals();
});

describe("findCachedSnapshot", () => {
  it("resolves a branch, a tag and a commit id to the snapshot folder", async () => {
    const { cache, snap } = fakeCache();
    const main = await findCachedSnapshot({ repo: "org/llama", cacheDir: cache });
    expect(main).toMatchObject({ commit: MAIN, revision: "main", snapshotPath: snap, cacheDir: cache });
    expect((await findCachedSnapshot({ repo: "org/llama", revision: "v1", cacheDir: cache })).commit).toBe(OLD);
    expect((await findCachedSnapshot({ repo: "org/llama", revision: OLD, cacheDir: cache })).commit).toBe(OLD);
    const viaEnv = await findCachedSnapshot({ repo: "org/llama", env: { HF_HUB_CACHE: cache } });
    expect(viaEnv.snapshotPath).toBe(snap);
  });

  it("a repo or revision not in the cache: HUB_OFFLINE_MISS saying to download it and where it looked", async () => {
    const { cache } = fakeCache();
    for (const [repo, revision] of [
      ["org/other", undefined],
      ["org/llama", "dev"],
      ["org/llama", "3".repeat(40)],
    ] as const) {
      const e = await veraError(
        findCachedSnapshot({ repo, cacheDir: cache, ...(revision !== undefined ? { revision } : {}) }),
      );
      expect(e.code).toBe(HubErrorCode.HUB_OFFLINE_MISS);
      expect(e.message).toContain(`huggingface-cli download ${repo}`);
      expect(e.message).toContain(cache);
    }
    expect((await veraError(findCachedSnapshot({ repo: "org/../x", cacheDir: cache }))).code).toBe(
      ErrorCode.ARG_INVALID,
    );
  });
});

describe("merging a Hub cache snapshot", () => {
  it("gives the same bytes as merging the checkpoint folder, as plain files", async () => {
    const { snap } = fakeCache();
    const fromCache = join(tempDir(), "out");
    const r = await mergeCheckpoint({ model: snap, adapter: ADAPTER, output: fromCache, durable: false });
    expect(r.weights).toBeGreaterThan(0);
    expect(plainFiles(fromCache)).toEqual(reference);
  });

  it("a single shard of a snapshot, named by its link, is read from its blob", async () => {
    const { snap } = fakeCache();
    const { adapter } = await loadAdapterFromPath({ path: ADAPTER, base: await readBaseShapes({ path: BASE }) });
    const shard = join(snap, "model-00001-of-00003.safetensors");
    const r = await mergeCheckpoint({ model: shard, adapter, dryRun: true, skipMissing: true });
    expect(r.weights).toBeGreaterThan(0);
    expect(basename(r.model)).toBe("model-00001-of-00003.safetensors");
  });

  it("refuses --in-place on a snapshot and leaves the cache as it was", async () => {
    const { snap } = fakeCache();
    const links = readdirSync(snap).map((f) => [f, readlinkSync(join(snap, f))]);
    const e = await veraError(mergeCheckpoint({ model: snap, adapter: ADAPTER, inPlace: true, durable: false }));
    expect(e.code).toBe(MergeErrorCode.MERGE_OUTPUT_CONFLICT);
    expect(readdirSync(snap).map((f) => [f, readlinkSync(join(snap, f))])).toEqual(links);
  });

  it("still refuses links that leave the folder other than the cache's own layout", async () => {
    const cache = tempDir();
    const files = baseFiles();
    // a link into another repo's blobs
    const other = cacheSnapshot(cache, "org/other", MAIN, new Map([["config.json", files.get("config.json")!]]));
    const snap = cacheSnapshot(cache, "org/llama", MAIN, new Map([...files].filter(([f]) => f !== "config.json")));
    const etag = basename(readlinkSync(join(other, "config.json")));
    symlinkSync(join("..", "..", "..", "models--org--other", "blobs", etag), join(snap, "config.json"));
    expect(readFileSync(join(snap, "config.json")).equals(files.get("config.json")!)).toBe(true);
    expect(lstatSync(join(snap, "config.json")).isSymbolicLink()).toBe(true);
    const out = join(tempDir(), "out");
    const e = await veraError(mergeCheckpoint({ model: snap, adapter: ADAPTER, output: out, durable: false }));
    expect(e.code).toBe(ErrorCode.IO_UNSAFE_PATH);
    expect(readdirSync(join(out, "..")).length).toBe(0);
    // the same layout in a folder that is not a cache snapshot
    const plain = tempDir();
    const copy = cacheSnapshot(plain, "org/llama", MAIN, files);
    const notSnap = join(plain, "models--org--llama", "checkpoint");
    mkdirSync(notSnap);
    for (const f of files.keys()) symlinkSync(join("..", "snapshots", MAIN, f), join(notSnap, f));
    expect(readdirSync(copy).length).toBe(files.size);
    expect((await veraError(mergeCheckpoint({ model: notSnap, adapter: ADAPTER, dryRun: true }))).code).toBe(
      ErrorCode.IO_UNSAFE_PATH,
    );
  });
});

describe("vera merge ORG/MODEL", () => {
  it("merges the cached snapshot without the network; a model not cached says to download it", async () => {
    vi.stubGlobal("fetch", () => {
      throw new Error("the network was used");
    });
    const { cache } = fakeCache();
    const env = { ...process.env, HF_HUB_CACHE: cache, HF_HUB_OFFLINE: undefined };
    const out = join(tempDir(), "merged");
    const ok = await runCli(
      ["merge", "org/llama@main", ADAPTER, "-o", out, "--backend", "reference", "--no-fsync", "--json"],
      env,
    );
    expect(ok.stderr).toBe("");
    expect(ok.status).toBe(0);
    expect(plainFiles(out)).toEqual(reference);
    const miss = await runCli(["merge", "org/missing", ADAPTER, "-o", join(tempDir(), "x"), "--json"], env);
    expect(miss.status).not.toBe(0);
    const text = miss.stdout + miss.stderr;
    expect(text).toContain(HubErrorCode.HUB_OFFLINE_MISS);
    expect(text).toContain("huggingface-cli download org/missing");
    const inPlace = await runCli(["merge", "org/llama", ADAPTER, "--in-place"], env);
    expect(inPlace.status).not.toBe(0);
    expect(inPlace.stderr + inPlace.stdout).toMatch(/--in-place cannot change a model in the Hub cache/);
  });
});

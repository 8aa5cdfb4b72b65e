// Fuzz targets for the file and network edges (test/fuzz.mjs runs them with the others): GGUF headers and
// split names, safetensors index JSON, Hub API answers, undo journals. Inputs include large ones (MBs) and
// sparse ones: a file whose `layout` is `sparse:N` is laid out with its bytes first and then extended to N
// bytes with a hole (no disk, no memory), so declared counts can be huge without the input being so.
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { crc32 } from "node:zlib";
import * as core from "../dist/index.js";
import * as gguf from "../dist/gguf/index.js";
import * as hub from "../dist/hub/index.js";
import * as merge from "../dist/merge/node/index.js";
import * as nodeEdge from "../dist/node/index.js";
import { damage, hostileInt, ROOT, scratchDir } from "./fuzz-targets.mjs";

const { DOMException, Headers, Response } = globalThis;
const enc = new TextEncoder();
const dec = new TextDecoder();
const MiB = 1024 * 1024;
const SPARSE_SIZES = [2 ** 30, 2 ** 36, 4 * 2 ** 40];

const u64At = (b, at, v) =>
  new DataView(b.buffer, b.byteOffset, b.byteLength).setBigUint64(at, BigInt.asUintN(64, BigInt(v)), true);
const u32At = (b, at, v) =>
  new DataView(b.buffer, b.byteOffset, b.byteLength).setUint32(at, Number(BigInt.asUintN(32, BigInt(v))), true);
const HOSTILE_U64 = [0, 1, 2, 8, 63, 64, 65535, 2 ** 20, 2 ** 31, 2 ** 32, 2 ** 40, 2 ** 53, 2n ** 63n, 2n ** 64n - 1n];
const HOSTILE_U32 = [0, 1, 4, 5, 7, 8, 9, 12, 13, 30, 31, 99, 2 ** 31, 2 ** 32 - 1];

/** Write the input's files into a fresh folder; a `sparse:N` layout extends the first file to N bytes. */
function layOut(ctx, files, layout) {
  const dir = scratchDir(ctx.tmp);
  for (const [name, bytes] of Object.entries(files)) {
    mkdirSync(join(dir, name, ".."), { recursive: true });
    writeFileSync(join(dir, name), bytes);
  }
  const m = /^sparse:(\d+)$/.exec(layout ?? "");
  if (m) {
    try {
      truncateSync(join(dir, Object.keys(files)[0]), Number(m[1]));
    } catch {
      /* a filesystem without holes that large: the file stays as it is */
    }
  }
  return dir;
}

let tinyAdapterCache;
const tinyAdapter = () =>
  (tinyAdapterCache ??= core.createAdapter({
    modules: [{ name: "model.layers.0.self_attn.q_proj", inFeatures: 32, outFeatures: 32 }],
    rank: 2,
  }));

// ------------------------------------------------------------------------------------------
// GGUF: header, metadata, tensor table, split names

const SCALAR = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };

/** Offsets of every count, length and type field of a GGUF header (for targeted mutations). */
function ggufFields(b) {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const fields = [
    { at: 8, size: 8 },
    { at: 16, size: 8 },
  ];
  let p = 24;
  const u64 = () => Number(dv.getBigUint64(p, true));
  const str = () => {
    fields.push({ at: p, size: 8 });
    p += 8 + u64();
  };
  const value = (t) => {
    if (t === 8) return str();
    if (t !== 9) return void (p += SCALAR[t]);
    fields.push({ at: p, size: 4 });
    const it = dv.getUint32(p, true);
    p += 4;
    fields.push({ at: p, size: 8 });
    const n = u64();
    p += 8;
    if (it === 8) for (let i = 0; i < n && p < b.length; i++) str();
    else p += n * SCALAR[it];
  };
  try {
    const nt = Number(dv.getBigUint64(8, true));
    const kv = Number(dv.getBigUint64(16, true));
    for (let i = 0; i < kv; i++) {
      str();
      fields.push({ at: p, size: 4 });
      const t = dv.getUint32(p, true);
      p += 4;
      value(t);
    }
    for (let i = 0; i < nt; i++) {
      str();
      fields.push({ at: p, size: 4 });
      const nd = dv.getUint32(p, true);
      p += 4;
      for (let d = 0; d < nd; d++) fields.push({ at: (p += 8) - 8, size: 8 });
      fields.push({ at: p, size: 4 }, { at: p + 4, size: 8 });
      p += 12;
    }
  } catch {
    /* walked as far as the bytes allow */
  }
  return fields.filter((f) => f.at + f.size <= b.length);
}

let ggufSeedsCache;
function ggufSeeds() {
  if (ggufSeedsCache) return ggufSeedsCache;
  const files = [
    "fixtures/gguf/llama/base-f32.gguf",
    "fixtures/gguf/qwen2/base-f32.gguf",
    "fixtures/gguf/writer-parity.gguf",
    "fixtures/gguf/out/adapter-rank4.gguf",
    "fixtures/gguf/llama-split/base-f32-00001-of-00003.gguf",
    "fixtures/gguf/llama-split/base-f32-00002-of-00003.gguf",
  ];
  ggufSeedsCache = files.map((f) => {
    const bytes = new Uint8Array(readFileSync(join(ROOT, f)));
    return { bytes, fields: ggufFields(bytes) };
  });
  return ggufSeedsCache;
}

const SPLIT_NAMES = [
  "model.gguf",
  "m-00001-of-00001.gguf",
  "m-00001-of-00003.gguf",
  "m-00002-of-00003.gguf",
  "m-00001-of-1000000.gguf",
  "m-00001-of-99999999999999999999.gguf",
  `m-00001-of-${"9".repeat(200)}.gguf`,
  "m-99999-of-00002.gguf",
  "m-00000-of-00002.gguf",
  "-00001-of-00002.gguf",
];

function genGguf(r) {
  const seed = r.pick(ggufSeeds());
  let b = seed.bytes.slice();
  const k = r.next();
  let kind;
  if (k < 0.45 && seed.fields.length > 0) {
    kind = "field";
    for (let i = 1 + r.int(3); i > 0; i--) {
      const f = r.pick(seed.fields);
      if (f.size === 8) u64At(b, f.at, r.chance(0.7) ? r.pick(HOSTILE_U64) : hostileInt(r));
      else u32At(b, f.at, r.chance(0.7) ? r.pick(HOSTILE_U32) : hostileInt(r));
    }
  } else if (k < 0.7) {
    kind = "damage";
    b = damage(r, b, 1 + r.int(4));
  } else if (k < 0.8) {
    kind = "truncate";
    b = b.slice(0, r.int(b.length));
  } else if (k < 0.9) {
    // a large input: the header followed by MBs (zeros or random), with a count pointing into them
    kind = "large";
    const extra = r.chance(0.5) ? new Uint8Array(1 + r.int(4 * MiB)) : r.bytes(1 + r.int(MiB));
    const out = new Uint8Array(b.length + extra.length);
    out.set(b);
    out.set(extra, b.length);
    b = out;
    if (seed.fields.length > 0) u64At(b, r.pick(seed.fields.filter((f) => f.size === 8)).at, r.pick(HOSTILE_U64));
  } else {
    kind = "sparse";
    const f = seed.fields.filter((x) => x.size === 8);
    if (f.length > 0) u64At(b, r.pick(f).at, r.pick([2 ** 20, 2 ** 26, 2 ** 32, 2 ** 36, 2 ** 40]));
    return { kind, layout: `sparse:${r.pick(SPARSE_SIZES)}`, files: { [r.pick(SPLIT_NAMES)]: b } };
  }
  const file = r.chance(0.3) ? r.pick(SPLIT_NAMES) : "model.gguf";
  return { kind, layout: "file", files: { [file]: b } };
}

/** readGguf over bytes (most inputs); a GGUF merge's reader over a file (every 4th input, and sparse ones). */
async function runGguf({ files, layout }, ctx) {
  const [name, bytes] = Object.entries(files)[0];
  if (ctx.index % 4 !== 0 && !layout?.startsWith("sparse")) {
    const f = await gguf.readGguf({ source: gguf.bytesSource(bytes), label: name });
    gguf.parseGgufSplitName(name);
    return f.tensors.length;
  }
  const dir = layOut(ctx, files, layout);
  try {
    const r = await merge.mergeGguf({ model: join(dir, name), adapter: tinyAdapter(), dryRun: true });
    return r.modules?.length ?? 0;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ------------------------------------------------------------------------------------------
// safetensors index JSON (model.safetensors.index.json) with its shards, read by the checkpoint merge

let shardCache;
const shardSeed = () =>
  (shardCache ??= new Uint8Array(readFileSync(join(ROOT, "fixtures/peft/bases/llama/model.safetensors"))));

const SHARD_NAMES = [
  "model-00001-of-00001.safetensors",
  "../model.safetensors",
  "/etc/passwd",
  "a/b.safetensors",
  "",
  ".",
  "model.safetensors.index.json",
  "x".repeat(5000) + ".safetensors",
  "model-00001-of-99999999999999999999.safetensors",
];
const JSON_JUNK = [null, true, 0, -1, 1e308, 2 ** 53 + 2, "", "x", [], {}, [[[[]]]], { weight_map: {} }];

function genIndex(r) {
  const shard = shardSeed();
  const header = core.parseSafetensorsHeader({ bytes: shard });
  const names = [...header.tensors.keys()];
  const map = {};
  for (const t of names) map[t] = "model-00001-of-00001.safetensors";
  const k = r.next();
  let text;
  let kind;
  if (k < 0.35) {
    kind = "fields";
    const idx = { metadata: { total_size: shard.length }, weight_map: map };
    for (let i = 1 + r.int(3); i > 0; i--) {
      const which = r.int(4);
      if (which === 0) map[r.pick(names)] = r.pick(SHARD_NAMES);
      else if (which === 1) map[r.chance(0.5) ? r.pick(names) : "x".repeat(r.int(2000))] = r.pick(JSON_JUNK);
      else if (which === 2) idx.metadata = r.pick(JSON_JUNK);
      else idx.weight_map = r.pick(JSON_JUNK);
    }
    text = JSON.stringify(idx);
  } else if (k < 0.6) {
    kind = "damage";
    text = dec.decode(damage(r, enc.encode(JSON.stringify({ weight_map: map })), 1 + r.int(4)));
  } else if (k < 0.7) {
    kind = "duplicate-key";
    text = `{"weight_map": {"${names[0]}": "a.safetensors", "${names[0]}": "model-00001-of-00001.safetensors"}}`;
  } else if (k < 0.85) {
    // large: MBs of entries, values, or nesting
    kind = "large";
    const n = 1000 + r.int(400_000);
    const shape = r.int(4);
    if (shape === 0)
      text = `{"weight_map": {${Array.from({ length: n }, (_, i) => `"t${i}": "s.safetensors"`).join(",")}}}`;
    else if (shape === 1) text = `{"weight_map": {}, "metadata": [${"0,".repeat(n * 4)}0]}`;
    else if (shape === 2) text = `{"weight_map": {}, "metadata": [${"{},".repeat(n)}{}]}`;
    else text = `{"weight_map": ${"[".repeat(1 + r.int(100_000))}`;
  } else {
    kind = "sparse";
    return {
      kind,
      layout: `sparse:${r.pick([17 * MiB, 300 * MiB, 2 ** 33])}`,
      files: {
        "model.safetensors.index.json": enc.encode('{"weight_map": {"a": "'),
        "model-00001-of-00001.safetensors": shard,
      },
    };
  }
  return {
    kind,
    files: { "model.safetensors.index.json": enc.encode(text), "model-00001-of-00001.safetensors": shard },
  };
}

/** The checkpoint merge's reader (a dry run), and on every other input the base-shape reader of the index. */
async function runIndex({ files, layout }, ctx) {
  const dir = layOut(ctx, files, layout);
  try {
    if (ctx.index % 2 === 0) {
      const s = await nodeEdge.readBaseShapes({ path: join(dir, "model.safetensors.index.json") });
      return s.modules.length;
    }
    const r = await merge.mergeCheckpoint({ model: dir, adapter: tinyAdapter(), dryRun: true });
    return r.modules?.length ?? 0;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ------------------------------------------------------------------------------------------
// Hub API answers: whoami-v2, the revision info, paths-info and a download, served by a fake fetch

const TOKEN = "hf_fuzzTokenAbCdEf0123456789abcdef";
const HUB = "http://hub.invalid";
let hubSeedCache;
function hubSeed() {
  if (hubSeedCache) return hubSeedCache;
  const bytes = core.writeVera({ adapter: tinyAdapter() });
  const sha256 = createHash("sha256").update(bytes).digest("hex");
  const sha1 = createHash("sha1").update(`blob ${bytes.length}\0`).update(bytes).digest("hex");
  hubSeedCache = { bytes, sha256, sha1, commit: "a".repeat(40) };
  return hubSeedCache;
}

function hubAnswers() {
  const s = hubSeed();
  return {
    whoami: {
      type: "user",
      id: "1",
      name: "alice",
      fullname: "Alice",
      orgs: [{ type: "org", name: "acme" }],
      auth: { type: "access_token", accessToken: { displayName: "t", role: "write" } },
    },
    info: { _id: "x", id: "alice/x", sha: s.commit, private: false },
    paths: [
      {
        type: "file",
        path: "adapter.vera.safetensors",
        size: s.bytes.length,
        oid: s.sha1,
        lfs: { oid: s.sha256, size: s.bytes.length, pointerSize: 134 },
      },
    ],
  };
}

const HUB_JUNK = [
  null,
  true,
  -1,
  2 ** 53,
  1e308,
  "",
  TOKEN,
  `hf_${"A".repeat(30)}`,
  "../../etc/passwd",
  "a".repeat(100_000),
  [],
  {},
  [[[[[]]]]],
  { name: TOKEN },
];
const HUB_KEYS = ["name", "type", "orgs", "auth", "fullname", "sha", "id", "path", "size", "oid", "lfs", "type"];

function mutateJson(r, v, depth = 0) {
  if (depth > 3 || v === null || typeof v !== "object") return r.pick(HUB_JUNK);
  const keys = Array.isArray(v) ? v.map((_, i) => i) : Object.keys(v);
  if (keys.length === 0 || r.chance(0.2)) {
    const k = Array.isArray(v) ? v.length : r.pick(HUB_KEYS);
    v[k] = r.pick(HUB_JUNK);
  } else {
    const k = r.pick(keys);
    v[k] = r.chance(0.5) ? mutateJson(r, v[k], depth + 1) : r.pick(HUB_JUNK);
  }
  return v;
}

function genHub(r) {
  const answers = hubAnswers();
  const route = r.pick(["whoami", "info", "paths", "download"]);
  const k = r.next();
  let body;
  let kind;
  const headers = {};
  if (route === "download") {
    const s = hubSeed();
    body = k < 0.5 ? damage(r, s.bytes, 1 + r.int(3)) : s.bytes;
    kind = "download";
    if (r.chance(0.5)) headers["content-length"] = String(r.pick(HOSTILE_U64));
  } else if (k < 0.5) {
    kind = "json-field";
    body = enc.encode(JSON.stringify(mutateJson(r, structuredClone(answers[route]))));
  } else if (k < 0.75) {
    kind = "damage";
    body = damage(r, enc.encode(JSON.stringify(answers[route])), 1 + r.int(4));
  } else if (k < 0.9) {
    kind = "large";
    const n = 1000 + r.int(1_600_000);
    body = enc.encode(
      r.chance(0.5)
        ? `[${"{},".repeat(n)}{}]`
        : `{"name": "alice", "x": "${"a".repeat(n)}", "orgs": [], "type": "user"}`,
    );
  } else {
    kind = "headers";
    body = enc.encode(JSON.stringify(answers[route]));
    headers["content-length"] = String(r.pick(HOSTILE_U64));
  }
  const status = r.chance(0.1) ? r.pick([200, 206, 301, 401, 404, 429, 500, 503, 599]) : 200;
  return {
    kind: `${route}-${kind}`,
    layout: JSON.stringify({ route, status, headers }),
    files: { body },
  };
}

/** A fetch answering the Hub calls of whoami and pull, with the input's answer for one route. */
function fakeFetch(route, status, headers, body) {
  const s = hubSeed();
  const answers = hubAnswers();
  return async (input, init) => {
    const url = new URL(typeof input === "string" ? input : input instanceof URL ? input.href : input.url);
    const p = url.pathname;
    const which =
      p === "/api/whoami-v2"
        ? "whoami"
        : p.includes("/paths-info/")
          ? "paths"
          : p.includes("/resolve/")
            ? "download"
            : "info";
    if (init?.signal?.aborted) throw new DOMException("aborted", "AbortError");
    const base = {
      "content-type": which === "download" ? "application/octet-stream" : "application/json",
      etag: `"${s.sha256}"`,
      "x-linked-etag": `"${s.sha256}"`,
      "x-linked-size": String(s.bytes.length),
      "x-repo-commit": s.commit,
      "accept-ranges": "bytes",
    };
    let bytes = which === "download" ? s.bytes : enc.encode(JSON.stringify(answers[which]));
    let st = 200;
    let extra = {};
    if (which === route) {
      bytes = body;
      st = status;
      extra = headers;
    }
    const range = new Headers(init?.headers ?? {}).get("range");
    if (which === "download" && range) {
      const m = /^bytes=(\d+)-(\d*)$/.exec(range);
      const a = m ? Number(m[1]) : 0;
      const e = m && m[2] ? Math.min(Number(m[2]), bytes.length - 1) : bytes.length - 1;
      base["content-range"] = `bytes ${a}-${e}/${bytes.length}`;
      bytes = bytes.subarray(a, e + 1);
      if (st === 200) st = 206;
    }
    const h = new Headers({ ...base, ...extra });
    const nullBody = st === 204 || st === 304 || (st >= 100 && st < 200);
    return new Response(nullBody ? null : bytes, { status: st, headers: h });
  };
}

/** whoami or a pull through the fake fetch: a result, or a typed error; never token material in either. */
async function runHub({ files, layout }) {
  const { route, status, headers } = JSON.parse(layout);
  const fetch = fakeFetch(route, status, headers, files.body);
  const retry = { maxRetries: 1, delayScale: 0, connectTimeoutMs: 2000, idleTimeoutMs: 2000 };
  const check = (text) => {
    if (text.includes(TOKEN)) throw new Error("token material in the output");
  };
  try {
    const out =
      route === "whoami"
        ? await hub.hubWhoAmI({ accessToken: TOKEN, hubUrl: HUB, fetch, retry })
        : await hub.fetchAdapter({ repo: "alice/x", hubUrl: HUB, accessToken: TOKEN, fetch, retry });
    check(JSON.stringify(out, (_, v) => (v instanceof Uint8Array ? v.length : typeof v === "bigint" ? String(v) : v)));
    if (route === "whoami" && /hf_[A-Za-z0-9]{8,}/.test(JSON.stringify(out))) throw new Error("a token-shaped field");
    return 1;
  } catch (e) {
    if (core.isVeraError(e)) check(JSON.stringify(e.toJSON()) + e.message);
    throw e;
  }
}

// ------------------------------------------------------------------------------------------
// undo journals (the in-place merge's rollback), applied by recoverMerge to a scratch model file

const JOURNAL_MAGIC = enc.encode("VERAUNDO");
const sha = (...parts) => {
  const h = createHash("sha256");
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
};
const cat = (parts) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) out.set(p, (o += p.length) - p.length);
  return out;
};

/** A record's CRC-32 (journal version 3), 4 bytes little-endian. */
const crc = (...parts) => {
  let c = 0;
  for (const p of parts) c = crc32(p, c);
  const out = new Uint8Array(4);
  u32At(out, 0, c);
  return out;
};

/**
 * A journal in layout `version`: magic, version, header length, JSON header, its digest; then (versions 2 and 3) two
 * record-count slots (count, chain over the header and the records, the slot's digest) and the records, each with its
 * CRC-32 (3) or SHA-256 (2); version 1 has no slots (it is refused).
 */
function journalBytes(header, entries, version = 3) {
  const json = enc.encode(typeof header === "string" ? header : JSON.stringify(header));
  const head = new Uint8Array(16);
  head.set(JOURNAL_MAGIC);
  u32At(head, 8, version);
  u32At(head, 12, json.length);
  const headerBytes = cat([head, json, sha(json)]);
  const records = [];
  let chain = sha(headerBytes);
  for (const e of entries) {
    const eh = new Uint8Array(24);
    u32At(eh, 0, 0x31455556);
    u32At(eh, 4, e.file);
    u64At(eh, 8, e.offset);
    u64At(eh, 16, e.length);
    const sum = version === 3 ? crc(eh, e.data) : sha(eh, e.data);
    chain = sha(chain, sum);
    records.push(eh, sum, e.data);
  }
  if (version === 1) return cat([headerBytes, ...records]);
  const slot = new Uint8Array(4 + 32 + 32);
  u32At(slot, 0, entries.length);
  slot.set(chain, 4);
  slot.set(sha(slot.subarray(0, 36)), 36);
  return cat([headerBytes, slot, slot, ...records]);
}

function genJournal(r) {
  const version = r.pick([3, 3, 3, 2, 1]);
  const size = 64 + r.int(4096);
  const model = r.bytes(size);
  const entries = [];
  for (let i = r.int(4); i > 0; i--) {
    const offset = r.int(size);
    const length = r.int(size - offset + 1);
    entries.push({ file: 0, offset, length, data: r.bytes(length) });
  }
  const header = { model: "model.bin", files: [{ path: "model.bin", size }], head: null };
  const k = r.next();
  let kind;
  let j;
  if (k < 0.3) {
    kind = "header";
    const h = structuredClone(header);
    const which = r.int(5);
    if (which === 0)
      h.files[0].path = r.pick(["../x", "/etc/passwd", "", "model.bin/..", "a\u0000b", ".", "x".repeat(5000)]);
    else if (which === 1) h.files[0].size = r.pick([-1, 2 ** 53, 1e308, "1", null, 0]);
    else if (which === 2) h.head = r.pick([{ path: "../model.bin" }, { path: "model.bin" }, "x", {}, 0]);
    else if (which === 3) h.files = r.pick([null, {}, [null], Array.from({ length: 1000 }, () => h.files[0])]);
    else h.files.push({ path: "missing.bin", size: 10 });
    j = journalBytes(h, entries, version);
  } else if (k < 0.55) {
    kind = "entry";
    const e = entries[0] ?? { file: 0, offset: 0, length: 4, data: r.bytes(4) };
    const bad = { ...e };
    const which = r.int(3);
    if (which === 0) bad.file = r.pick([1, 2 ** 31, 2 ** 32 - 1]);
    else if (which === 1) bad.offset = r.pick(HOSTILE_U64);
    else bad.length = r.pick(HOSTILE_U64);
    j = journalBytes(header, [bad, ...entries.slice(1)], version);
    if (which === 2) j = j.subarray(0, Math.min(j.length, 16 + 200 + r.int(200)));
  } else if (k < 0.8) {
    kind = "damage";
    j = damage(r, journalBytes(header, entries, version), 1 + r.int(4));
  } else if (k < 0.9) {
    kind = "truncate";
    const full = journalBytes(header, entries, version);
    j = full.subarray(0, r.int(full.length + 1));
  } else {
    kind = "large";
    const length = r.int(4 * MiB);
    const big = { file: 0, offset: 0, length, data: new Uint8Array(length) };
    j = journalBytes({ ...header, files: [{ path: "model.bin", size: length }] }, [big], version);
    if (r.chance(0.5)) {
      const head = j.subarray(0, 16 + 100);
      return {
        kind: "sparse",
        layout: `sparse:${r.pick(SPARSE_SIZES)}`,
        files: { ".model.bin.vera-undo": head, "model.bin": model },
      };
    }
  }
  return { kind, files: { ".model.bin.vera-undo": j, "model.bin": model } };
}

/** recoverMerge on a scratch folder holding the model file and the journal (the parse and the rollback). */
async function runJournal({ files, layout }, ctx) {
  const dir = layOut(ctx, files, layout);
  try {
    const r = await merge.recoverMerge({ model: join(dir, "model.bin"), durable: false });
    return r.journals?.length ?? 0;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The targets of this file: name -> {about, gen, run}. */
export const IO_TARGETS = {
  gguf: {
    about:
      "readGguf (header, metadata, tensor table) over bytes; mergeGguf's reader over files, split names, sparse files",
    gen: genGguf,
    run: runGguf,
  },
  "safetensors-index": {
    about: "model.safetensors.index.json + shards: the checkpoint merge's reader and readBaseShapes",
    gen: genIndex,
    run: runIndex,
  },
  "hub-responses": {
    about: "Hub API answers (whoami-v2, revision info, paths-info, downloads) through hubWhoAmI and fetchAdapter",
    gen: genHub,
    run: runHub,
  },
  "undo-journal": { about: "undo journals applied by recoverMerge", gen: genJournal, run: runJournal },
};

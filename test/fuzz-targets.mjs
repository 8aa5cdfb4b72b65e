// Fuzz targets of `npm run fuzz` (test/fuzz.mjs): one per parser that takes user input.
// A target has a generator (a seeded rng -> an input: named files of bytes) and a runner (input -> the
// parser's result, or a thrown error). The driver counts every throw that is not a typed VeraError.
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as core from "../dist/index.js";
import * as onnx from "../dist/onnx/index.js";
import * as nodeEdge from "../dist/node/index.js";
import { IO_TARGETS } from "./fuzz-targets-io.mjs";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const enc = new TextEncoder();
const dec = new TextDecoder();

// ------------------------------------------------------------------------------------------
// randomness and byte helpers

/** A seeded rng (mulberry32) with the helpers generators need. */
export function makeRng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n) => Math.floor(next() * n);
  return {
    next,
    int,
    pick: (arr) => arr[int(arr.length)],
    chance: (p) => next() < p,
    bytes: (n) => {
      const b = new Uint8Array(n);
      for (let i = 0; i < n; i++) b[i] = int(256);
      return b;
    },
  };
}

const concat = (parts) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
};
const splice = (b, start, end, data) => concat([b.subarray(0, start), data, b.subarray(end)]);

function varint(v) {
  let x = BigInt.asUintN(64, BigInt(v));
  const out = [];
  while (x >= 0x80n) {
    out.push(Number(x & 0x7fn) | 0x80);
    x >>= 7n;
  }
  out.push(Number(x));
  return Uint8Array.from(out);
}
const tagBytes = (field, wt) => varint(field * 8 + wt);
const lenField = (field, payload) => concat([tagBytes(field, 2), varint(payload.length), payload]);
const intField = (field, v) => concat([tagBytes(field, 0), varint(v)]);
const strField = (field, s) => lenField(field, typeof s === "string" ? enc.encode(s) : s);

/** Byte-level damage: set bytes, truncate, append, insert, delete. */
export function damage(r, b, rounds) {
  let out = b.slice();
  for (let k = 0; k < rounds; k++) {
    const op = r.int(6);
    if (out.length === 0) out = r.bytes(1 + r.int(8));
    const at = r.int(out.length);
    if (op <= 1) out[at] = r.chance(0.5) ? r.int(256) : r.pick([0x00, 0x0b, 0x0c, 0x7f, 0x80, 0xff]);
    else if (op === 2) out = out.slice(0, at);
    else if (op === 3) out = concat([out, r.bytes(1 + r.int(16))]);
    else if (op === 4) out = splice(out, at, at, r.bytes(1 + r.int(8)));
    else out = splice(out, at, Math.min(out.length, at + 1 + r.int(8)), new Uint8Array(0));
  }
  return out;
}

const HOSTILE_STRINGS = [
  "",
  "MatMul",
  "Gemm",
  "Transpose",
  "Cast",
  "MatMulNBits",
  "DequantizeLinear",
  "model.layers.0.self_attn.q_proj",
  "['', 'model', 'model.layers.0.self_attn.q_proj', 'linear']",
  "pkg.torch.onnx.name_scopes",
  "/model/layers.0/self_attn/q_proj/MatMul",
  "onnx::MatMul_1",
  "model.onnx.data",
  "../model.onnx.data",
  "/etc/passwd",
  "C:\\x",
  "a\u0000b",
  "-1",
  "18446744073709551616",
  "99999999999999999999",
  "1e3",
  " 7",
  "0x10",
  "9007199254740993",
  "location",
  "offset",
  "length",
  "checksum",
  "x".repeat(300),
  "['" + "\\'".repeat(20_000),
  "['', 'model', " + "'m', ".repeat(5_000) + "'linear']",
];
const hostileString = (r) =>
  r.chance(0.15) ? r.bytes(1 + r.int(12)) : r.chance(0.2) ? String(r.int(1 << 30)) : r.pick(HOSTILE_STRINGS);
const HOSTILE_INTS = [
  0,
  1,
  2,
  3,
  7,
  16,
  255,
  65535,
  2 ** 31 - 1,
  2 ** 31,
  2 ** 32,
  2 ** 40,
  2 ** 53 - 1,
  2 ** 53,
  -1,
  -2,
];
export const hostileInt = (r) => (r.chance(0.3) ? r.int(64) : r.pick(HOSTILE_INTS));

// ------------------------------------------------------------------------------------------
// ONNX: a schema-aware wire walker, so mutations can target fields and keep lengths consistent

/** Which LEN fields of each ONNX message are messages (and of which type). */
const MESSAGES = {
  model: { 7: "graph", 8: "opset", 14: "entry", 25: "function" },
  graph: { 1: "node", 5: "tensor", 11: "value", 12: "value", 13: "value", 15: "sparse" },
  node: { 5: "attr", 9: "entry" },
  attr: { 5: "tensor", 6: "graph", 10: "tensor", 11: "graph" },
  tensor: { 13: "entry" },
  sparse: { 1: "tensor", 2: "tensor" },
  function: { 7: "node", 11: "attr" },
  value: {},
  opset: {},
  entry: {},
};

function readVarintAt(b, p, end) {
  let v = 0;
  let mul = 1;
  for (let i = 0; i < 10 && p < end; i++) {
    const x = b[p++];
    v += (x & 0x7f) * mul;
    mul *= 128;
    if (x < 0x80) return { v, p };
  }
  return undefined;
}

/**
 * Every field of a well-formed model, depth first: {msg, field, wt, start, tagEnd, lenStart,
 * dataStart, end, span (the enclosing message, as applyEdits wants it), self (LEN messages)}.
 */
export function walkOnnx(b) {
  const out = [];
  const visit = (type, span, depth) => {
    let p = span.start;
    while (p < span.end) {
      const start = p;
      const t = readVarintAt(b, p, span.end);
      if (!t) return;
      const field = Math.floor(t.v / 8);
      const wt = t.v & 7;
      const rec = { msg: type, field, wt, start, tagEnd: t.p, lenStart: -1, dataStart: t.p, end: t.p, span };
      if (wt === 0) {
        const v = readVarintAt(b, t.p, span.end);
        if (!v) return;
        rec.end = v.p;
      } else if (wt === 1) rec.end = t.p + 8;
      else if (wt === 5) rec.end = t.p + 4;
      else if (wt === 2) {
        const l = readVarintAt(b, t.p, span.end);
        if (!l) return;
        rec.lenStart = t.p;
        rec.dataStart = l.p;
        rec.end = l.p + l.v;
      } else return;
      if (rec.end > span.end) return;
      out.push(rec);
      const sub = wt === 2 ? MESSAGES[type][field] : undefined;
      if (sub && depth < 40) {
        rec.self = { lenStart: rec.lenStart, start: rec.dataStart, end: rec.end, parent: span };
        rec.subType = sub;
        visit(sub, rec.self, depth + 1);
      }
      p = rec.end;
    }
  };
  visit("model", { lenStart: -1, start: 0, end: b.length, parent: null }, 0);
  return out;
}

/** Replace [start, end) inside `span`, re-encoding every enclosing length prefix. */
function fixedEdit(b, span, start, end, data) {
  return onnx.concatEdited(onnx.applyEdits({ bytes: b, edits: [{ start, end, data, span }] }));
}

/** Structure-aware mutations of a parsed fixture: each returns new bytes or undefined (not applicable). */
const ONNX_MUTATIONS = {
  // flip the wire type of a field's tag (lengths of the parents stay: the tag keeps its size)
  wireType(r, b, fs) {
    const f = r.pick(fs);
    const t = readVarintAt(b, f.start, f.tagEnd);
    const nt = varint(f.field * 8 + r.int(8));
    return t && nt.length === f.tagEnd - f.start ? splice(b, f.start, f.tagEnd, nt) : undefined;
  },
  // rewrite a LEN field's length varint: off by a little, beyond the end, huge, or over-long
  lengthVarint(r, b, fs) {
    const lens = fs.filter((f) => f.wt === 2);
    if (lens.length === 0) return undefined;
    const f = r.pick(lens);
    const len = f.end - f.dataStart;
    const v = r.pick([
      len + 1,
      len - 1,
      len + 1 + r.int(64),
      Math.max(0, len - 1 - r.int(64)),
      b.length,
      2 ** 31,
      2 ** 32 + len,
      2 ** 53,
      0,
    ]);
    const bytes = r.chance(0.1) ? Uint8Array.from([...Array(10).fill(0xff), 0x01]) : varint(Math.max(0, v));
    return splice(b, f.lenStart, f.dataStart, bytes);
  },
  // dims that disagree with the data (with consistent lengths, so the reader gets to the data)
  dims(r, b, fs) {
    const ts = fs.filter((f) => f.subType === "tensor");
    if (ts.length === 0) return undefined;
    const t = r.pick(ts);
    const dimFields = fs.filter((f) => f.span === t.self && f.field === 1);
    const n = r.int(4);
    const parts = [];
    for (let i = 0; i < n; i++) parts.push(intField(1, hostileInt(r)));
    if (r.chance(0.3))
      parts.push(lenField(1, concat(Array.from({ length: 1 + r.int(3) }, () => varint(hostileInt(r))))));
    const add = concat(parts);
    if (dimFields.length > 0 && r.chance(0.6)) {
      const d = r.pick(dimFields);
      return fixedEdit(b, t.self, d.start, d.end, add);
    }
    return fixedEdit(b, t.self, t.self.start, t.self.start, add);
  },
  // change a varint field's value (data_type, data_location, attribute ints, ir_version, ...)
  varintValue(r, b, fs) {
    const vs = fs.filter((f) => f.wt === 0);
    if (vs.length === 0) return undefined;
    const f = r.pick(vs);
    return fixedEdit(b, f.span, f.tagEnd, f.end, varint(r.chance(0.5) ? r.int(32) : hostileInt(r)));
  },
  // external_data entries (and data_location = EXTERNAL) on an initializer
  externalData(r, b, fs) {
    const ts = fs.filter((f) => f.subType === "tensor");
    if (ts.length === 0) return undefined;
    const t = r.pick(ts);
    const parts = [];
    const n = 1 + r.int(4);
    for (let i = 0; i < n; i++) {
      const key = r.chance(0.8) ? r.pick(["location", "offset", "length", "checksum"]) : hostileString(r);
      const value = r.chance(0.5) ? r.pick(["model.onnx.data", "0", "4", "16", "1024", "65536"]) : hostileString(r);
      parts.push(lenField(13, concat([strField(1, key), strField(2, value)])));
    }
    if (r.chance(0.9)) parts.push(intField(14, r.chance(0.9) ? 1 : hostileInt(r)));
    return fixedEdit(b, t.self, t.self.end, t.self.end, concat(parts));
  },
  // raw_data / float_data / int32_data payloads of another size
  tensorData(r, b, fs) {
    const ds = fs.filter((f) => f.msg === "tensor" && (f.field === 9 || f.field === 4 || f.field === 5));
    if (ds.length === 0) return undefined;
    const f = r.pick(ds);
    const len = f.end - f.dataStart;
    const newLen = r.pick([0, 1, 2, 3, Math.max(0, len - 1), len + 1, len + 2, len * 2, r.int(len + 8)]);
    if (f.wt !== 2) return fixedEdit(b, f.span, f.start, f.end, new Uint8Array(0));
    return fixedEdit(b, f.span, f.dataStart, f.end, r.bytes(Math.min(newLen, 1 << 16)));
  },
  // replace a string (names, op types, inputs, metadata keys and values) with a hostile one
  string(r, b, fs) {
    const ss = fs.filter((f) => f.wt === 2 && !f.subType && f.msg !== "tensor");
    if (ss.length === 0) return undefined;
    const f = r.pick(ss);
    const s = hostileString(r);
    const payload = typeof s === "string" ? enc.encode(s) : s;
    return fixedEdit(b, f.span, f.lenStart, f.end, concat([varint(payload.length), payload]));
  },
  // duplicate a field (inputs, initializers, nodes, attributes appear twice)
  duplicate(r, b, fs) {
    const f = r.pick(fs);
    return fixedEdit(b, f.span, f.end, f.end, b.slice(f.start, f.end));
  },
  // remove a field
  remove(r, b, fs) {
    const f = r.pick(fs);
    return fixedEdit(b, f.span, f.start, f.end, new Uint8Array(0));
  },
  // move a field into another message (a tensor in a node, a node in an attribute, ...)
  transplant(r, b, fs) {
    const f = r.pick(fs);
    const msgs = fs.filter((x) => x.self && (x.self.start > f.end || x.self.end < f.start));
    if (msgs.length === 0) return undefined;
    const to = r.pick(msgs);
    return fixedEdit(b, to.self, to.self.start, to.self.start, b.slice(f.start, f.end));
  },
  // deprecated groups, nested (up to past the reader's limit), inside a message
  groups(r, b, fs) {
    const msgs = fs.filter((x) => x.self);
    const depth = r.pick([1, 2, 10, 99, 100, 101, 1000]);
    const g = 1 + r.int(30);
    const body = concat([
      new Uint8Array(depth).fill(g * 8 + 3),
      r.chance(0.8) ? new Uint8Array(depth).fill(g * 8 + 4) : new Uint8Array(0),
    ]);
    if (msgs.length === 0 || r.chance(0.2)) return concat([b, body]);
    const to = r.pick(msgs);
    return fixedEdit(b, to.self, to.self.end, to.self.end, body);
  },
};
const MUTATION_NAMES = Object.keys(ONNX_MUTATIONS);

/** A random protobuf-shaped message: valid wire structure, random fields, nested where ONNX nests. */
function randomMessage(r, type, depth) {
  const parts = [];
  const n = r.int(6);
  const subs = Object.entries(MESSAGES[type] ?? {});
  for (let i = 0; i < n; i++) {
    if (subs.length > 0 && depth < 6 && r.chance(0.4)) {
      const [field, sub] = r.pick(subs);
      parts.push(lenField(Number(field), randomMessage(r, sub, depth + 1)));
    } else {
      const field = 1 + r.int(25);
      const k = r.int(4);
      if (k === 0) parts.push(intField(field, hostileInt(r)));
      else if (k === 1) parts.push(strField(field, hostileString(r)));
      else if (k === 2) parts.push(concat([tagBytes(field, r.chance(0.5) ? 1 : 5), r.bytes(r.chance(0.5) ? 8 : 4)]));
      else parts.push(lenField(field, r.bytes(r.int(16))));
    }
  }
  return concat(parts);
}

function listFiles(dir, pred, out = []) {
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) listFiles(p, pred, out);
    else if (pred(p)) out.push(p);
  }
  return out;
}

/**
 * A small model whose weights are stored inline in each way ONNX allows (the fixtures keep theirs in
 * external data): raw_data f32, float_data, int32_data fp16 patterns, raw f16, a Transpose-fed
 * weight, a Gemm, a weight shared by two nodes, and an If branch with its own weight.
 */
export function inlineModel() {
  const f32 = (n) => new Uint8Array(new Float32Array(Array.from({ length: n }, (_, i) => i / 7)).buffer);
  const tensor = (name, dims, type, data) =>
    concat([...dims.map((d) => intField(1, d)), intField(2, type), strField(8, name), data]);
  const node = (op, inputs, outputs, name, extra = new Uint8Array(0)) =>
    concat([
      ...inputs.map((i) => strField(1, i)),
      ...outputs.map((o) => strField(2, o)),
      strField(3, name),
      strField(4, op),
      extra,
    ]);
  const scopes = (path) =>
    lenField(9, concat([strField(1, "pkg.torch.onnx.name_scopes"), strField(2, `['', 'model', '${path}', 'linear']`)]));
  const packedF = lenField(4, f32(6));
  const int32 = lenField(5, concat(Array.from({ length: 6 }, (_, i) => varint(0x3c00 + i))));
  const branch = concat([
    lenField(1, node("MatMul", ["x", "wb"], ["yb"], "/model/layers.1/mlp/down_proj/MatMul")),
    strField(2, "then"),
    lenField(5, tensor("wb", [2, 3], 1, lenField(9, f32(6)))),
    lenField(12, strField(1, "yb")),
  ]);
  const graph = concat([
    lenField(1, node("MatMul", ["x", "w0"], ["y0"], "node_linear_0", scopes("model.layers.0.self_attn.q_proj"))),
    lenField(1, node("MatMul", ["x", "w1"], ["y1"], "/model/layers.0/self_attn/k_proj/MatMul")),
    lenField(1, node("MatMul", ["x", "w2"], ["y2"], "/model/layers.0/self_attn/v_proj/MatMul")),
    lenField(1, node("Transpose", ["model.layers.0.mlp.up_proj.weight"], ["t3"], "t3")),
    lenField(1, node("MatMul", ["x", "t3"], ["y3"], "/model/layers.0/mlp/up_proj/MatMul")),
    lenField(
      1,
      node(
        "Gemm",
        ["x", "w4"],
        ["y4"],
        "/model/layers.0/mlp/gate_proj/Gemm",
        lenField(5, concat([strField(1, "transB"), intField(3, 1), intField(20, 2)])),
      ),
    ),
    lenField(1, node("MatMul", ["x", "w4"], ["y5"], "/lm_head/MatMul")),
    lenField(
      1,
      node(
        "If",
        ["c"],
        ["yb"],
        "if0",
        lenField(5, concat([strField(1, "then_branch"), lenField(6, branch), intField(20, 5)])),
      ),
    ),
    strField(2, "inline"),
    lenField(5, tensor("w0", [2, 3], 1, lenField(9, f32(6)))),
    lenField(5, tensor("w1", [2, 3], 1, packedF)),
    lenField(5, tensor("w2", [2, 3], 10, int32)),
    lenField(5, tensor("model.layers.0.mlp.up_proj.weight", [3, 2], 10, lenField(9, new Uint8Array(12).fill(0x3c)))),
    lenField(5, tensor("w4", [3, 2], 16, lenField(9, new Uint8Array(12).fill(0x3f)))),
    lenField(11, strField(1, "x")),
    lenField(12, strField(1, "y0")),
  ]);
  return concat([
    intField(1, 8),
    strField(2, "fuzz"),
    lenField(7, graph),
    lenField(8, concat([strField(1, ""), intField(2, 17)])),
  ]);
}

/** A seed model; its fields are walked the first time a mutation needs them. */
function seedOf(name, bytes) {
  let fields;
  return {
    name,
    bytes,
    get fields() {
      return (fields ??= walkOnnx(bytes));
    },
  };
}

let onnxSeedsCache;
let smallSeedsCache;
function onnxSeeds() {
  onnxSeedsCache ??= listFiles(join(ROOT, "fixtures"), (p) => p.endsWith(".onnx"))
    .sort()
    .map((p) => {
      const bytes = new Uint8Array(readFileSync(p));
      return seedOf(p.slice(ROOT.length + 1), bytes);
    });
  onnxSeedsCache.push(seedOf("inline (built here)", inlineModel()));
  return onnxSeedsCache;
}

function genOnnx(r) {
  const k = r.next();
  if (k < 0.1) return { kind: "bytes", files: { "model.onnx": r.bytes(r.int(512)) } };
  if (k < 0.25) return { kind: "random-message", files: { "model.onnx": randomMessage(r, "model", 0) } };
  const seeds = onnxSeeds();
  // Small seeds (< 10 KB: a fused genai model with external data, the inline model built above) 95 times
  // in 100: the exported fixtures (legacy and dynamo exports with metadata_props, fp16, quantized; 22-345 KB)
  // cost 10-100 times more per input and reach the same code with the same kinds of fields.
  const small = (smallSeedsCache ??= seeds.filter((x) => x.bytes.length < 10_000));
  const seed = r.chance(0.95) && small.length > 0 ? r.pick(small) : r.pick(seeds);
  if (k < 0.35) return { kind: "damaged", files: { "model.onnx": damage(r, seed.bytes, 1 + r.int(4)) } };
  const name = r.pick(MUTATION_NAMES);
  let b = ONNX_MUTATIONS[name](r, seed.bytes, seed.fields) ?? seed.bytes;
  if (r.chance(0.15)) b = damage(r, b, 1);
  return { kind: `mutated-${name}`, files: { "model.onnx": b } };
}

/** The reader, the locator, the merge planner and the inline value reader, as `vera merge` uses them. */
function runOnnx({ files }) {
  const bytes = files["model.onnx"];
  const model = onnx.readOnnxModel({ bytes });
  const weights = onnx.listLinearWeights({ model });
  for (const g of model.graphs)
    for (const t of g.initializers) {
      if (t.storage.kind === "external") onnx.checkExternalLocation({ location: t.storage.location, tensor: t.name });
      const dtype = onnx.weightDtypeOf(t.dataType);
      if (dtype && t.storage.kind !== "external" && t.storage.kind !== "other" && t.storage.kind !== "empty")
        try {
          onnx.readInlineValues(bytes, t, dtype);
        } catch (e) {
          if (!core.isVeraError(e)) throw e;
        }
    }
  const modules = weights.map((w) => ({ name: w.module, inFeatures: w.inFeatures, outFeatures: w.outFeatures }));
  const plan = onnx.planOnnxMerge({ model, weights, modules, skipMissing: true, untie: true });
  // the byte edits a merge makes (a weight untied for two modules is written once here)
  const edits = [];
  const seen = new Set();
  for (const w of plan.weights)
    if (w.tensor.storage.kind !== "external" && !seen.has(w.tensor) && seen.add(w.tensor))
      edits.push(...onnx.inlineValueEdits(w.tensor, w.dtype, onnx.readInlineValues(bytes, w.tensor, w.dtype)));
  if (edits.length > 0) onnx.applyEdits({ bytes, edits });
  core.baseShapesFromOnnx({ weights });
  return weights.length;
}

// ------------------------------------------------------------------------------------------
// PEFT folders: adapter_config.json (JSON and Python-JSON) + adapter_model.safetensors

let peftSeedsCache;
function peftSeeds() {
  peftSeedsCache ??= readdirSync(join(ROOT, "fixtures/peft/adapters"))
    .sort()
    .map((d) => join(ROOT, "fixtures/peft/adapters", d))
    .filter((d) => statSync(join(d, "adapter_config.json"), { throwIfNoEntry: false }))
    .map((d) => ({
      config: new Uint8Array(readFileSync(join(d, "adapter_config.json"))),
      weights: new Uint8Array(readFileSync(join(d, "adapter_model.safetensors"))),
    }));
  return peftSeedsCache;
}

const PY_VALUES = [
  "null",
  "true",
  "NaN",
  "Infinity",
  "-Infinity",
  "1e400",
  "-0.0",
  "0.0",
  "18446744073709551617",
  "-9223372036854775809",
  "1.5",
  "0",
  "-3",
  '""',
  '"q_proj"',
  '["q_proj", "v_proj"]',
  '".*\\\\.q_proj"',
  "[]",
  "{}",
  '{"a": 1, "a": 2}',
  "[".repeat(70) + "]".repeat(70),
  '"\\ud800"',
  '"\\u0000"',
  "1_000",
  "0x10",
  "01",
  "'single'",
];
const CONFIG_KEYS = [
  "r",
  "projection_prng_key",
  "target_modules",
  "peft_type",
  "fan_in_fan_out",
  "save_projection",
  "d_initial",
  "bias",
  "modules_to_save",
  "layers_to_transform",
  "layers_pattern",
  "base_model_name_or_path",
  "task_type",
  "peft_version",
  "vera_dropout",
  "init_weights",
  "rank_pattern",
  "unknown_key",
];

/** Edit one key of a JSON object text (a textual edit, so Python-JSON values survive). */
function editConfig(r, text) {
  const key = r.pick(CONFIG_KEYS);
  const value = r.pick(PY_VALUES);
  const re = new RegExp(`("${key}"\\s*:\\s*)([^,\\n}]*(\\[[^\\]]*\\])?)`);
  if (re.test(text) && r.chance(0.7)) return text.replace(re, `$1${value}`);
  return text.replace(/^\s*\{/, `{"${key}": ${value},`);
}

function safetensorsMutation(r, weights) {
  const k = r.int(4);
  if (k === 0) return weights;
  if (k === 1) return damage(r, weights, 1 + r.int(3));
  // edit the header JSON: shapes, dtypes, offsets, names
  const n = new DataView(weights.buffer, weights.byteOffset).getUint32(0, true);
  let header;
  try {
    header = JSON.parse(dec.decode(weights.subarray(8, 8 + n)));
  } catch {
    return weights;
  }
  const names = Object.keys(header).filter((x) => x !== "__metadata__");
  const t = header[r.pick(names)];
  if (t) {
    const what = r.int(4);
    if (what === 0) t.shape = [hostileInt(r), ...(r.chance(0.5) ? [hostileInt(r)] : [])];
    else if (what === 1) t.dtype = r.pick(["F32", "F16", "BF16", "F64", "I64", "U8", "BOOL", "F8_E4M3", "X"]);
    else if (what === 2) t.data_offsets = [hostileInt(r), hostileInt(r)];
    else header[r.pick(["base_model.model.x.vera_lambda_d", "vera_A", "vera_B", "base_model.vera_A", "x"])] = t;
  }
  const h = enc.encode(JSON.stringify(header));
  const len = new Uint8Array(8);
  new DataView(len.buffer).setUint32(0, h.length, true);
  return concat([len, h, weights.subarray(8 + n)]);
}

function genPeft(r) {
  const seed = r.pick(peftSeeds());
  let config = seed.config;
  const k = r.next();
  if (k < 0.1) config = r.bytes(r.int(256));
  else if (k < 0.25) config = damage(r, config, 1 + r.int(3));
  else if (k < 0.85) {
    let text = dec.decode(config);
    for (let i = 1 + r.int(3); i > 0; i--) text = editConfig(r, text);
    config = enc.encode(text);
  }
  const weights = safetensorsMutation(r, seed.weights);
  const layout = r.chance(0.9) ? "flat" : r.pick(["sub", "pickle", "no-weights", "two-subs"]);
  return {
    kind: `peft-${layout}`,
    files: { "adapter_config.json": config, "adapter_model.safetensors": weights },
    layout,
  };
}

let tmpCounter = 0;
export function scratchDir(tmp) {
  const d = join(tmp, `in-${process.pid}-${tmpCounter++}`);
  mkdirSync(d, { recursive: true });
  return d;
}

/** Lay an input's files out in a folder (for the readers that take a path). */
function writeInput(tmp, files, sub) {
  const d = scratchDir(tmp);
  const where = sub ? join(d, sub) : d;
  mkdirSync(where, { recursive: true });
  for (const [name, bytes] of Object.entries(files)) writeFileSync(join(where, name), bytes);
  return d;
}

let baseCache;
function llamaBase() {
  baseCache ??= core.baseShapesFromConfig({
    config: JSON.parse(readFileSync(join(ROOT, "fixtures/peft/bases/llama/config.json"), "utf8")),
  });
  return baseCache;
}

/** The folder reader (every 16th input, through real files) and the importer. */
async function runPeft(input, ctx) {
  const { files, layout } = input;
  let config;
  let weights;
  if (ctx.index % 16 === 0 || layout !== "flat") {
    const f = { ...files };
    if (layout === "pickle") {
      f["adapter_model.bin"] = f["adapter_model.safetensors"];
      delete f["adapter_model.safetensors"];
    }
    if (layout === "no-weights") delete f["adapter_model.safetensors"];
    const dir = writeInput(ctx.tmp, f, layout === "sub" || layout === "two-subs" ? "a" : undefined);
    if (layout === "two-subs") writeInput(join(dir, "b"), f);
    try {
      const folder = await nodeEdge.readPeftFolder({ dir });
      config = folder.configText;
      weights = folder.weights;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  } else {
    config = dec.decode(files["adapter_config.json"]);
    weights = core.parseSafetensors(files["adapter_model.safetensors"]);
  }
  const withBase = ctx.index % 2 === 0;
  const r = core.importPeft({ config, weights, ...(withBase ? { base: llamaBase() } : {}) });
  return r.adapter.modules.length;
}

// ------------------------------------------------------------------------------------------
// base shapes: config.json, a sharded checkpoint's index (+ shard headers), a safetensors header, ONNX

let baseSeedsCache;
function baseSeeds() {
  if (baseSeedsCache) return baseSeedsCache;
  const configs = listFiles(join(ROOT, "fixtures/peft"), (p) => p.endsWith("config.json") && !p.includes("adapter"))
    .sort()
    .map((p) => new Uint8Array(readFileSync(p)));
  const weights = listFiles(join(ROOT, "fixtures/peft/bases"), (p) => p.endsWith("model.safetensors"))
    .sort()
    .map((p) => new Uint8Array(readFileSync(p)));
  baseSeedsCache = { configs, weights };
  return baseSeedsCache;
}

const CONFIG_FIELDS = [
  "model_type",
  "hidden_size",
  "intermediate_size",
  "num_attention_heads",
  "num_key_value_heads",
  "head_dim",
  "num_hidden_layers",
  "n_embd",
  "n_layer",
  "n_inner",
  "vocab_size",
  "architectures",
  "num_labels",
  "id2label",
  "tie_word_embeddings",
  "text_config",
];
const JSON_VALUES = [
  null,
  true,
  0,
  1,
  -1,
  2.5,
  1e300,
  2 ** 53,
  65536,
  2 ** 31,
  "llama",
  "gpt2",
  "bert",
  "",
  [],
  {},
  [1],
  { a: 1 },
];

function genBase(r) {
  const { configs, weights } = baseSeeds();
  const k = r.next();
  if (k < 0.45) {
    let cfg = r.pick(configs);
    if (r.chance(0.2)) cfg = damage(r, cfg, 1 + r.int(3));
    else {
      let obj;
      try {
        obj = JSON.parse(dec.decode(cfg));
      } catch {
        obj = {};
      }
      for (let i = 1 + r.int(4); i > 0; i--) {
        const target = r.chance(0.2) && obj.text_config && typeof obj.text_config === "object" ? obj.text_config : obj;
        target[r.pick(CONFIG_FIELDS)] = structuredClone(r.pick(JSON_VALUES)); // fresh: no shared or circular values
      }
      cfg = enc.encode(JSON.stringify(obj));
    }
    return { kind: "config", files: { "config.json": cfg } };
  }
  if (k < 0.75) {
    const shard = safetensorsMutation(r, r.pick(weights));
    const shardName = r.chance(0.9)
      ? "model-00001-of-00001.safetensors"
      : r.pick(["../x.safetensors", "/etc/passwd", "a/b.safetensors", "", "x.bin", ".."]);
    const map = { "model.embed_tokens.weight": shardName, "lm_head.weight": shardName };
    const index = r.chance(0.2)
      ? r.pick([{ weight_map: null }, { weight_map: [] }, { weight_map: { a: 1 } }, { weight_map: "x" }, []])
      : { metadata: { total_size: 1 }, weight_map: map };
    let indexBytes = enc.encode(JSON.stringify(index));
    if (r.chance(0.1)) indexBytes = damage(r, indexBytes, 1);
    return {
      kind: "index",
      files: { "model.safetensors.index.json": indexBytes, "model-00001-of-00001.safetensors": shard },
    };
  }
  if (k < 0.9) return { kind: "safetensors", files: { "model.safetensors": safetensorsMutation(r, r.pick(weights)) } };
  const o = genOnnx(r);
  return { kind: `onnx-${o.kind}`, files: o.files };
}

/** readBaseShapes on a folder holding the input's files (the path the CLI's --base takes). */
async function runBase({ files }, ctx) {
  const dir = writeInput(ctx.tmp, files);
  try {
    const first = Object.keys(files)[0];
    const shapes = await nodeEdge.readBaseShapes({ path: ctx.index % 2 === 0 ? dir : join(dir, first) });
    return shapes.modules.length;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ------------------------------------------------------------------------------------------
// safetensors and the verakit format (the original fuzz target)

let veraSeedsCache;
function veraSeeds() {
  if (veraSeedsCache) return veraSeedsCache;
  const base = core.createAdapter({
    rank: 3,
    seed: "4294967301",
    modules: [
      { name: "model.layers.0.self_attn.q_proj", inFeatures: 5, outFeatures: 4 },
      { name: "transformer.h.0.attn.c_attn", inFeatures: 4, outFeatures: 6, layout: "conv1d" },
    ],
  });
  veraSeedsCache = [
    core.writeVera({ adapter: base }),
    core.writeVera({ adapter: base, vectorDtype: "BF16" }),
    core.writeVera({
      adapter: {
        ...base,
        storedProjections: { A: new Float32Array(15).fill(0.5), B: new Float32Array(18).fill(-0.5) },
      },
    }),
  ];
  return veraSeedsCache;
}
const META_TOP = ["format_version", "prng", "projections", "modules", "digest", "base_model", "training", "extra", "x"];
const META_KEYS = [
  "rank",
  "max_in",
  "max_out",
  "seed",
  "arithmetic",
  "rounding",
  "storage",
  "name",
  "in_features",
  "out_features",
  "layout",
];
const META_VALUES = [null, true, false, 0, -1, 2 ** 31, 3, 1.5, "", "x", "18446744073709551616", "F32"];

function genVera(r) {
  const seeds = veraSeeds();
  const k = r.next();
  if (k < 0.3) return { kind: "bytes", files: { "adapter.vera": r.bytes(r.int(512)) } };
  const seed = r.pick(seeds);
  if (k < 0.65) return { kind: "damaged", files: { "adapter.vera": damage(r, seed, 1 + r.int(6)) } };
  // metadata edits, re-packed with a correct digest so the deep checks run
  const n = new DataView(seed.buffer, seed.byteOffset).getUint32(0, true);
  const header = JSON.parse(dec.decode(seed.subarray(8, 8 + n)));
  const meta = JSON.parse(header.__metadata__.vera);
  const data = seed.subarray(8 + n);
  for (let i = 1 + r.int(4); i > 0; i--) {
    const top = r.pick(META_TOP);
    const key = r.chance(0.7) ? r.pick(META_KEYS) : undefined;
    const val = r.pick(META_VALUES);
    const t = meta[top];
    if (key !== undefined && Array.isArray(t) && t.length) t[0][key] = val;
    else if (key !== undefined && t && typeof t === "object") t[key] = val;
    else meta[top] = val;
  }
  meta.digest = { algorithm: "sha256", data: core.sha256Hex(data) };
  const tensors = Object.entries(header)
    .filter(([name]) => name !== "__metadata__")
    .map(([name, t]) => ({
      name,
      dtype: t.dtype,
      shape: t.shape,
      data: data.subarray(t.data_offsets[0], t.data_offsets[1]),
    }));
  let text;
  try {
    text = core.canonicalJson(meta);
  } catch {
    text = "{}";
  }
  return {
    kind: "metadata",
    files: { "adapter.vera": core.writeSafetensors({ tensors, metadata: { format: "vera", vera: text } }) },
  };
}

function runVera({ files }) {
  const b = files["adapter.vera"];
  let firstError;
  for (const f of [() => core.parseSafetensors(b), () => core.readVera(b)])
    try {
      f();
    } catch (e) {
      if (!core.isVeraError(e)) throw e;
      firstError ??= e;
    }
  const v = core.validateVera(b);
  if (!v.ok && v.issues.length === 0) throw new Error("validateVera: not ok but no issue");
  if (firstError) throw firstError; // counted as a typed error
  return v.ok;
}

/** Every target: name -> {about, gen, run}. */
export const TARGETS = {
  onnx: {
    about: "readOnnxModel + listLinearWeights + planOnnxMerge + inline values + external locations",
    gen: genOnnx,
    run: runOnnx,
  },
  peft: { about: "readPeftFolder (adapter_config.json, Python-JSON) + importPeft", gen: genPeft, run: runPeft },
  "base-shapes": {
    about: "readBaseShapes: config.json, safetensors index + shard headers, safetensors, ONNX",
    gen: genBase,
    run: runBase,
  },
  format: { about: "parseSafetensors + readVera + validateVera", gen: genVera, run: runVera },
  ...IO_TARGETS,
};

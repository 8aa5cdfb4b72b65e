/**
 * Test helpers for the ONNX merge tests: a tiny protobuf ENCODER for hand-made ONNX models
 * (independent of src/onnx's reader), fixture loading, and running models in onnxruntime-node.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";

export const FIXTURES = join(__dirname, "../fixtures/onnx");

// ------------------------------------------------------------------------------------------
// protobuf encoding

export function varint(v: number | bigint): number[] {
  let x = BigInt(v);
  if (x < 0n) x += 1n << 64n;
  const out: number[] = [];
  while (x >= 0x80n) {
    out.push(Number(x & 0x7fn) | 0x80);
    x >>= 7n;
  }
  out.push(Number(x));
  return out;
}

export function tag(field: number, wire: number): number[] {
  return varint(field * 8 + wire);
}

export function lenField(field: number, payload: Uint8Array | number[]): number[] {
  const p = Array.from(payload);
  return [...tag(field, 2), ...varint(p.length), ...p];
}

export function strField(field: number, s: string): number[] {
  return lenField(field, new TextEncoder().encode(s));
}

export function intField(field: number, v: number | bigint): number[] {
  return [...tag(field, 0), ...varint(v)];
}

/** An initializer (TensorProto). */
export interface TensorSpec {
  name: string;
  dims: number[];
  /** TensorProto.DataType. */
  dataType: number;
  raw?: Uint8Array;
  /** float32 values in float_data (packed unless `unpacked`). */
  floatData?: number[];
  /** int32_data values (packed unless `unpacked`). */
  int32Data?: number[];
  unpacked?: boolean;
  external?: Array<[string, string]>;
}

export function tensorProto(t: TensorSpec): number[] {
  const out: number[] = [];
  if (t.dims.length > 0)
    out.push(
      ...lenField(
        1,
        t.dims.flatMap((d) => varint(d)),
      ),
    );
  out.push(...intField(2, t.dataType));
  if (t.floatData) {
    if (t.unpacked) {
      for (const v of t.floatData) {
        const b = new Uint8Array(4);
        new DataView(b.buffer).setFloat32(0, v, true);
        out.push(...tag(4, 5), ...b);
      }
    } else {
      const b = new Uint8Array(t.floatData.length * 4);
      const dv = new DataView(b.buffer);
      t.floatData.forEach((v, i) => dv.setFloat32(i * 4, v, true));
      out.push(...lenField(4, b));
    }
  }
  if (t.int32Data) {
    if (t.unpacked) for (const v of t.int32Data) out.push(...intField(5, v));
    else
      out.push(
        ...lenField(
          5,
          t.int32Data.flatMap((v) => varint(v)),
        ),
      );
  }
  out.push(...strField(8, t.name));
  if (t.raw) out.push(...lenField(9, t.raw));
  if (t.external) {
    for (const [k, v] of t.external) out.push(...lenField(13, [...strField(1, k), ...strField(2, v)]));
    out.push(...intField(14, 1));
  }
  return out;
}

export interface AttrSpec {
  name: string;
  i?: number;
  ints?: number[];
  g?: GraphSpec;
}

export interface NodeSpec {
  opType: string;
  inputs: string[];
  outputs: string[];
  name?: string;
  domain?: string;
  attributes?: AttrSpec[];
  metadata?: Record<string, string>;
}

export interface ValueSpec {
  name: string;
  elemType: number;
  shape?: Array<number | string>;
}

export interface GraphSpec {
  name?: string;
  nodes: NodeSpec[];
  initializers?: TensorSpec[];
  inputs?: ValueSpec[];
  outputs: ValueSpec[];
}

function valueInfo(v: ValueSpec): number[] {
  const tensorType: number[] = [...intField(1, v.elemType)];
  if (v.shape) {
    const dims = v.shape.flatMap((d) => lenField(1, typeof d === "number" ? intField(1, d) : strField(2, d)));
    tensorType.push(...lenField(2, dims));
  }
  return [...strField(1, v.name), ...lenField(2, lenField(1, tensorType))];
}

function attribute(a: AttrSpec): number[] {
  const out = strField(1, a.name);
  if (a.i !== undefined) out.push(...intField(3, a.i), ...intField(20, 2));
  if (a.ints) out.push(...a.ints.flatMap((v) => intField(8, v)), ...intField(20, 7));
  if (a.g) out.push(...lenField(6, graphProto(a.g)), ...intField(20, 5));
  return out;
}

function nodeProto(n: NodeSpec): number[] {
  const out: number[] = [];
  for (const i of n.inputs) out.push(...strField(1, i));
  for (const o of n.outputs) out.push(...strField(2, o));
  if (n.name) out.push(...strField(3, n.name));
  out.push(...strField(4, n.opType));
  for (const a of n.attributes ?? []) out.push(...lenField(5, attribute(a)));
  if (n.domain) out.push(...strField(7, n.domain));
  for (const [k, v] of Object.entries(n.metadata ?? {}))
    out.push(...lenField(9, [...strField(1, k), ...strField(2, v)]));
  return out;
}

export function graphProto(g: GraphSpec): number[] {
  const out: number[] = [];
  for (const n of g.nodes) out.push(...lenField(1, nodeProto(n)));
  out.push(...strField(2, g.name ?? "g"));
  for (const t of g.initializers ?? []) out.push(...lenField(5, tensorProto(t)));
  for (const v of g.inputs ?? []) out.push(...lenField(11, valueInfo(v)));
  for (const v of g.outputs) out.push(...lenField(12, valueInfo(v)));
  return out;
}

/** Encode a ModelProto (IR 8, opset 17 unless given). Unknown fields can be appended with `extra`. */
export function modelProto(
  g: GraphSpec,
  opts: { irVersion?: number; opset?: number; extra?: number[] } = {},
): Uint8Array {
  const out: number[] = [
    ...intField(1, opts.irVersion ?? 8),
    ...strField(2, "verakit-test"),
    ...lenField(7, graphProto(g)),
    ...lenField(8, [...strField(1, ""), ...intField(2, opts.opset ?? 17)]),
    ...(opts.extra ?? []),
  ];
  return Uint8Array.from(out);
}

// ------------------------------------------------------------------------------------------
// numbers

export function f32Bytes(values: ArrayLike<number>): Uint8Array {
  const b = new Uint8Array(values.length * 4);
  const dv = new DataView(b.buffer);
  for (let i = 0; i < values.length; i++) dv.setFloat32(i * 4, values[i]!, true);
  return b;
}

/** A seeded uniform generator in [-1, 1) (xorshift), for test data. */
export function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return (s / 2 ** 32) * 2 - 1;
  };
}

// ------------------------------------------------------------------------------------------
// fixtures

export interface FixtureReference {
  case: string;
  model: string;
  adapter: string;
  inputs: Array<{ name: string; dtype: "int64" | "float32"; shape: number[]; data: number[] }>;
  outputs: string[];
  /** One output: flat values; several: one flat array per output. */
  reference: number[] | number[][];
  base: number[] | number[][];
  peft_reference?: number[];
  storage?: Record<string, { kind: string; module: string }>;
}

export function loadReference(name: string): FixtureReference {
  return JSON.parse(readFileSync(join(FIXTURES, name, "reference.json"), "utf8")) as FixtureReference;
}

export function fixtureManifest(): {
  cases: Record<string, { exporter: string; adapter: string; notes: string; files: string[] }>;
  tools: Record<string, string>;
} {
  return JSON.parse(readFileSync(join(FIXTURES, "MANIFEST.json"), "utf8"));
}

type Ort = typeof import("onnxruntime-node");
let ortPromise: Promise<Ort> | undefined;
export function loadOrt(): Promise<Ort> {
  ortPromise ??= import("onnxruntime-node").then((m) => ((m as unknown as { default?: Ort }).default ?? m) as Ort);
  return ortPromise;
}

/** Run a model file in onnxruntime-node (CPU, graph optimizations off) on a fixture's inputs; flat outputs by name. */
export async function runModel(
  path: string,
  ref: Pick<FixtureReference, "inputs" | "outputs">,
): Promise<Float32Array[]> {
  const ort = await loadOrt();
  const session = await ort.InferenceSession.create(path, {
    graphOptimizationLevel: "disabled",
    executionProviders: ["cpu"],
  });
  try {
    const feeds: Record<string, import("onnxruntime-node").Tensor> = {};
    for (const i of ref.inputs)
      feeds[i.name] =
        i.dtype === "int64"
          ? new ort.Tensor("int64", BigInt64Array.from(i.data.map((x) => BigInt(x))), i.shape)
          : new ort.Tensor("float32", Float32Array.from(i.data), i.shape);
    const out = await session.run(feeds);
    return ref.outputs.map((n) => out[n]!.data as Float32Array);
  } finally {
    await session.release();
  }
}

/** max |a - b| over paired flat arrays. */
export function maxAbsDiff(a: ArrayLike<number>[], b: ArrayLike<number>[]): number {
  let m = 0;
  a.forEach((x, k) => {
    const y = b[k]!;
    if (x.length !== y.length) throw new Error(`length ${x.length} != ${y.length}`);
    for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]! - y[i]!));
  });
  return m;
}

/** The reference (or base) values of a fixture as one array per output. */
export function perOutput(ref: FixtureReference, which: "reference" | "base"): number[][] {
  const v = ref[which];
  return ref.outputs.length > 1 ? (v as number[][]) : [v as number[]];
}

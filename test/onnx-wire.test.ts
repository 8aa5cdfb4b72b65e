/**
 * The protobuf wire reader and the byte editor: varints, hand-made malformed bytes, arbitrary
 * bytes, and length-changing edits re-encoding nested length prefixes (checked against an
 * independent encoder and against onnxruntime running a model with a subgraph).
 */
import fc from "fast-check";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { createReferenceBackend } from "../src/compute/reference-backend.js";
import { isVeraError } from "../src/errors.js";
import { createAdapter } from "../src/format/create.js";
import { mergeOnnx } from "../src/merge/index.js";
import { f16BitsToF32, f32ArrayToF16 } from "../src/numeric/half.js";
import { projectionsFor } from "../src/projections/for-adapter.js";
import { sliceA, sliceB } from "../src/projections/generate.js";
import {
  applyEdits,
  concatEdited,
  inlineValueEdits,
  moduleFromNameScopes,
  OnnxErrorCode,
  readInlineValues,
  readOnnxModel,
} from "../src/onnx/index.js";
import { MAX_SUBGRAPH_DEPTH } from "../src/onnx/read-onnx-model.js";
import {
  encodePackedVarints,
  encodeVarint,
  MAX_GROUP_DEPTH,
  ProtoWriter,
  readVarint,
  varintLength,
} from "../src/onnx/wire.js";
import { intField, lenField, loadOrt, modelProto, rng, strField, tensorProto, varint } from "./onnx-helpers.js";

const work = mkdtempSync(join(tmpdir(), "vera-onnx-wire-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe("varints", () => {
  it("encode/decode round trip and length", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), (v) => {
        const b = encodeVarint(v);
        expect(b.length).toBe(varintLength(v));
        expect(Uint8Array.from(varint(v))).toEqual(b);
        const r = readVarint(b, 0, b.length);
        expect([r.value, r.next]).toEqual([v, b.length]);
      }),
    );
  });
  it("reads 10-byte negative int64 varints as bigints", () => {
    const b = Uint8Array.from(varint(-1));
    expect(b.length).toBe(10);
    expect(readVarint(b, 0, b.length).value).toBe((1n << 64n) - 1n);
  });
});

describe("malformed models are refused with ONNX_PARSE / ONNX_NO_GRAPH", () => {
  const cases: Array<[string, number[], string]> = [
    ["truncated varint", [0x08, 0x80], OnnxErrorCode.ONNX_PARSE],
    ["length beyond the end", [0x3a, 0x05, 0x01], OnnxErrorCode.ONNX_PARSE],
    ["unknown wire type 7", [0x0f], OnnxErrorCode.ONNX_PARSE],
    ["field number 0", [0x00, 0x01], OnnxErrorCode.ONNX_PARSE],
    ["over-long varint", [0x08, ...Array(10).fill(0xff), 0x01], OnnxErrorCode.ONNX_PARSE],
    ["no graph", [0x08, 0x08], OnnxErrorCode.ONNX_NO_GRAPH],
    ["node name not UTF-8", lenField(7, lenField(1, lenField(3, [0xff, 0xfe]))), OnnxErrorCode.ONNX_PARSE],
    [
      "negative dims",
      lenField(7, lenField(5, [...lenField(1, varint(-2)), ...strField(8, "w")])),
      OnnxErrorCode.ONNX_INVALID,
    ],
    [
      "external data without location",
      lenField(7, lenField(5, [...strField(8, "w"), ...lenField(13, strField(1, "offset")), 0x70, 0x01])),
      OnnxErrorCode.ONNX_EXTERNAL_DATA,
    ],
    [
      "external offset not a number",
      lenField(
        7,
        lenField(
          5,
          tensorProto({
            name: "w",
            dims: [1],
            dataType: 1,
            external: [
              ["location", "d"],
              ["offset", "-1"],
            ],
          }),
        ),
      ),
      OnnxErrorCode.ONNX_EXTERNAL_DATA,
    ],
  ];
  for (const [what, bytes, code] of cases) {
    it(what, () => {
      try {
        readOnnxModel({ bytes: Uint8Array.from(bytes) });
        expect.unreachable();
      } catch (e) {
        expect(isVeraError(e) && e.code).toBe(code);
      }
    });
  }
  it("arbitrary bytes never crash the reader with anything but a VeraError", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        try {
          readOnnxModel({ bytes });
        } catch (e) {
          expect(isVeraError(e)).toBe(true);
        }
      }),
      { numRuns: 2000 },
    );
  });
  it("mutated real models never crash the reader with anything but a VeraError", () => {
    const good = new Uint8Array(readFileSync(join(__dirname, "../fixtures/onnx/legacy-gpt2-folded/model.onnx")));
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: good.length - 1 }),
        fc.integer({ min: 0, max: 255 }),
        fc.integer({ min: 1, max: good.length }),
        (at, v, cut) => {
          const b = good.slice(0, cut);
          if (at < b.length) b[at] = v;
          try {
            readOnnxModel({ bytes: b });
          } catch (e) {
            expect(isVeraError(e)).toBe(true);
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe("nesting is bounded: no input overflows the stack", () => {
  const codeOf = (f: () => unknown): string | undefined => {
    try {
      f();
      return undefined;
    } catch (e) {
      return isVeraError(e) ? e.code : `untyped ${(e as Error).name}`;
    }
  };
  // A group of field 15 (tag 0x7b = 15 << 3 | 3) opened `open` times and closed `close` times.
  const groups = (open: number, close: number): number[] => [
    ...Array<number>(open).fill(0x7b),
    ...Array<number>(close).fill(0x7c),
  ];
  const model = (unknown: number[]): Uint8Array =>
    modelProto({ nodes: [{ opType: "Relu", inputs: ["x"], outputs: ["y"] }], outputs: [] }, { extra: unknown });

  it("200 KB of start-group tags give ONNX_PARSE, not a stack overflow", () => {
    const bytes = new Uint8Array(200 * 1024).fill(0x0b);
    expect(codeOf(() => readOnnxModel({ bytes }))).toBe(OnnxErrorCode.ONNX_PARSE);
    // the same inside a graph and inside a node (unknown fields of nested messages)
    const inGraph = Uint8Array.from(lenField(7, Array<number>(100_000).fill(0x0b)));
    expect(codeOf(() => readOnnxModel({ bytes: inGraph }))).toBe(OnnxErrorCode.ONNX_PARSE);
  });

  it(`groups nested ${MAX_GROUP_DEPTH} deep still read; one more is ONNX_PARSE`, () => {
    const ok = readOnnxModel({ bytes: model(groups(MAX_GROUP_DEPTH, MAX_GROUP_DEPTH)) });
    expect(ok.graphs[0]!.nodes[0]!.opType).toBe("Relu");
    expect(codeOf(() => readOnnxModel({ bytes: model(groups(MAX_GROUP_DEPTH + 1, MAX_GROUP_DEPTH + 1)) }))).toBe(
      OnnxErrorCode.ONNX_PARSE,
    );
    // fields inside groups are skipped, end-groups must match
    expect(readOnnxModel({ bytes: model([0x7b, ...intField(3, 7), ...strField(4, "s"), 0x7c]) }).graphs).toHaveLength(
      1,
    );
    expect(codeOf(() => readOnnxModel({ bytes: model([0x7b, 0x6c]) }))).toBe(OnnxErrorCode.ONNX_PARSE);
    expect(codeOf(() => readOnnxModel({ bytes: model([0x7b, 0x7b, 0x7c]) }))).toBe(OnnxErrorCode.ONNX_PARSE);
  });

  // A Relu graph inside `levels` If nodes (then_branch), encoded with the package's writer.
  const nested = (levels: number): Uint8Array => {
    let g = new ProtoWriter().msg(1, new ProtoWriter().str(1, "x").str(2, "y").str(4, "Relu")).str(2, "g");
    for (let i = 0; i < levels; i++) {
      const attr = new ProtoWriter().str(1, "then_branch").msg(6, g).int(20, 5);
      g = new ProtoWriter().msg(1, new ProtoWriter().str(1, "c").str(2, "y").str(4, "If").msg(5, attr)).str(2, "g");
    }
    return new ProtoWriter().int(1, 8).msg(7, g).finish();
  };
  it("subgraphs nested to maxDepth read; deeper is ONNX_PARSE; maxDepth is capped", () => {
    expect(readOnnxModel({ bytes: nested(64) }).graphs).toHaveLength(65);
    expect(codeOf(() => readOnnxModel({ bytes: nested(65) }))).toBe(OnnxErrorCode.ONNX_PARSE);
    expect(codeOf(() => readOnnxModel({ bytes: nested(3), maxDepth: 2 }))).toBe(OnnxErrorCode.ONNX_PARSE);
    const deep = nested(MAX_SUBGRAPH_DEPTH + 1);
    expect(codeOf(() => readOnnxModel({ bytes: deep, maxDepth: 1e9 }))).toBe(OnnxErrorCode.ONNX_PARSE);
    expect(readOnnxModel({ bytes: nested(MAX_SUBGRAPH_DEPTH), maxDepth: 1e9 }).graphs).toHaveLength(
      MAX_SUBGRAPH_DEPTH + 1,
    );
  });
});

describe("inline values", () => {
  it("dims that disagree with the data are ONNX_STORAGE before anything is allocated", () => {
    const bytes = modelProto({
      nodes: [],
      initializers: [{ name: "w", dims: [2, 3], dataType: 1, raw: new Uint8Array(24) }],
      outputs: [],
    });
    const t = readOnnxModel({ bytes }).graphs[0]!.initializers[0]!;
    for (const dims of [[2 ** 40, 2 ** 20], [2 ** 29, 2], [7]])
      try {
        readInlineValues(bytes, { ...t, dims }, "F32");
        expect.unreachable();
      } catch (e) {
        expect(isVeraError(e) && e.code).toBe(OnnxErrorCode.ONNX_STORAGE);
      }
    expect(readInlineValues(bytes, t, "F32")).toHaveLength(24);
  });
});

describe("name_scopes values", () => {
  it("are read in one pass: Python list literals, escapes kept, unterminated items ignored", () => {
    const scopes = "['', 'model', 'model.layers.0.self_attn.q_proj', 'linear']";
    expect(moduleFromNameScopes(scopes)).toBe("model.layers.0.self_attn.q_proj");
    expect(moduleFromNameScopes(`["m", "a\\"b", "linear"]`)).toBe('a\\"b');
    expect(moduleFromNameScopes("['a', 'b', 'linear")).toBe("a"); // items: a, b
    expect(moduleFromNameScopes("")).toBe(undefined);
    // 400 KB of escaped quotes that never close: the old regular expression took minutes here
    expect(moduleFromNameScopes("['" + "\\'".repeat(200_000))).toBe(undefined);
  });
});

describe("protobuf writer", () => {
  it("encodes int64 bigints as two's complement and matches an independent encoder", () => {
    fc.assert(
      fc.property(fc.bigInt({ min: -(1n << 63n), max: (1n << 63n) - 1n }), (v) => {
        expect(encodeVarint(v)).toEqual(Uint8Array.from(varint(v)));
      }),
    );
    expect(encodeVarint(-1n)).toHaveLength(10);
    expect(() => encodeVarint(-1)).toThrow(RangeError);
  });
  it("packed varints and ProtoWriter fields are what the wire reader reads back", () => {
    expect(encodePackedVarints(5, [1, 300, 2 ** 40])).toEqual(
      Uint8Array.from(lenField(5, [...varint(1), ...varint(300), ...varint(2 ** 40)])),
    );
    const w = new ProtoWriter().int(1, 8).str(2, "p").msg(7, new ProtoWriter().str(2, "g")).int(9, -5n);
    expect(w.finish()).toEqual(
      Uint8Array.from([...intField(1, 8), ...strField(2, "p"), ...lenField(7, strField(2, "g")), ...intField(9, -5n)]),
    );
  });
});

describe("applyEdits", () => {
  it("re-encodes every enclosing length prefix when a nested field changes length", () => {
    // ModelProto.graph -> node -> attribute(g) -> graph -> initializer (int32_data), plus unknown fields.
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 65535 }), { minLength: 1, maxLength: 300 }),
        fc.array(fc.integer({ min: 0, max: 65535 }), { minLength: 1, maxLength: 300 }),
        (before, after) => {
          const n = Math.min(before.length, after.length);
          const b0 = before.slice(0, n);
          const a0 = after.slice(0, n);
          const mk = (vals: number[]): Uint8Array =>
            modelProto(
              {
                nodes: [
                  {
                    opType: "If",
                    inputs: ["c"],
                    outputs: ["y"],
                    attributes: [
                      {
                        name: "then_branch",
                        g: {
                          nodes: [],
                          initializers: [{ name: "w", dims: [n], dataType: 10, int32Data: vals }],
                          outputs: [],
                        },
                      },
                      { name: "else_branch", g: { nodes: [], outputs: [] } },
                    ],
                  },
                ],
                outputs: [],
              },
              { extra: [...strField(99, "unknown field kept")] },
            );
          const src = mk(b0);
          const model = readOnnxModel({ bytes: src });
          const t = model.graphs[1]!.initializers[0]!;
          const values = new Uint8Array(n * 2);
          a0.forEach((v, i) => {
            values[2 * i] = v & 0xff;
            values[2 * i + 1] = v >> 8;
          });
          const out = concatEdited(applyEdits({ bytes: src, edits: inlineValueEdits(t, "F16", values) }));
          expect(out).toEqual(mk(a0)); // exactly what an encoder writes for the new values
          const again = readOnnxModel({ bytes: out });
          expect(readInlineValues(out, again.graphs[1]!.initializers[0]!, "F16")).toEqual(values);
        },
      ),
      { numRuns: 200 },
    );
  });

  it("refuses overlapping edits and results above the size limit", () => {
    const src = modelProto({
      nodes: [],
      initializers: [{ name: "w", dims: [2], dataType: 1, raw: new Uint8Array(8) }],
      outputs: [],
    });
    const m = readOnnxModel({ bytes: src });
    const span = m.graphs[0]!.initializers[0]!.span;
    expect(() =>
      applyEdits({
        bytes: src,
        edits: [
          { start: 5, end: 9, data: new Uint8Array(4), span },
          { start: 8, end: 10, data: new Uint8Array(2), span },
        ],
      }),
    ).toThrow(/overlapping/);
    try {
      applyEdits({
        bytes: src,
        edits: [{ start: 5, end: 5, data: new Uint8Array(100), span }],
        maxBytes: src.length + 50,
      });
      expect.unreachable();
    } catch (e) {
      expect(isVeraError(e) && e.code).toBe(OnnxErrorCode.ONNX_TOO_LARGE);
    }
  });
});

describe("weights inside subgraphs, in every inline storage", () => {
  it("merges an fp16 int32_data weight inside an If branch; onnxruntime runs the result", async () => {
    const inF = 8;
    const outF = 6;
    const r = rng(7);
    const w32 = Array.from({ length: inF * outF }, () => r() * 0.5);
    const w16 = Array.from(f32ArrayToF16(Float32Array.from(w32)));
    const w2 = Array.from({ length: inF * outF }, () => r());
    const adapter = createAdapter({
      modules: [
        { name: "proj", inFeatures: inF, outFeatures: outF },
        { name: "other", inFeatures: inF, outFeatures: outF },
      ],
      rank: 4,
      seed: 5,
    });
    for (const m of adapter.modules) {
      m.lambdaB.forEach((_, i) => (m.lambdaB[i] = r()));
      m.lambdaD.forEach((_, i) => (m.lambdaD[i] = r()));
    }
    const graph = (wVals: { f16: number[]; f32: number[] }, f32Unpacked: boolean) => ({
      nodes: [
        {
          opType: "If",
          inputs: ["cond"],
          outputs: ["y"],
          name: "if",
          attributes: [
            {
              name: "then_branch",
              g: {
                nodes: [
                  {
                    opType: "Cast",
                    inputs: ["proj.weight"],
                    outputs: ["w32"],
                    name: "/proj/Cast",
                    attributes: [{ name: "to", i: 1 }],
                  },
                  { opType: "MatMul", inputs: ["x", "w32"], outputs: ["t"], name: "/proj/MatMul" },
                ],
                initializers: [{ name: "proj.weight", dims: [inF, outF], dataType: 10, int32Data: wVals.f16 }],
                outputs: [{ name: "t", elemType: 1, shape: [1, 3, outF] }],
              },
            },
            {
              name: "else_branch",
              g: {
                nodes: [{ opType: "MatMul", inputs: ["x", "other.weight"], outputs: ["e"], name: "/other/MatMul" }],
                initializers: [
                  { name: "other.weight", dims: [inF, outF], dataType: 1, floatData: wVals.f32, unpacked: f32Unpacked },
                ],
                outputs: [{ name: "e", elemType: 1, shape: [1, 3, outF] }],
              },
            },
          ],
        },
      ],
      inputs: [
        { name: "x", elemType: 1, shape: [1, 3, inF] },
        { name: "cond", elemType: 9, shape: [] },
      ],
      outputs: [{ name: "y", elemType: 1, shape: [1, 3, outF] }],
    });
    for (const unpacked of [false, true]) {
      const src = join(work, `sub-${unpacked}.onnx`);
      writeFileSync(src, modelProto(graph({ f16: w16, f32: w2 }, unpacked)));
      const out = join(work, `sub-${unpacked}-merged.onnx`);
      const report = await mergeOnnx({ model: src, adapter, output: out, durable: false });
      expect(report.modules.map((m) => m.storage)).toEqual(["float_data", "int32_data"]);
      // expected weights: the reference backend on the same bytes
      const exp16 = new Uint8Array(Uint16Array.from(w16).buffer.slice(0));
      const exp32 = new Uint8Array(Float32Array.from(w2).buffer.slice(0));
      const ref = createReferenceBackend();
      const p = projectionsFor(adapter);
      const a = sliceA(p.A, { rank: 4, maxIn: adapter.maxIn, inFeatures: inF });
      const b = sliceB(p.B, { rank: 4, outFeatures: outF });
      const byName = new Map(adapter.modules.map((m) => [m.name, m]));
      await ref.merge([
        {
          name: "proj",
          dtype: "F16",
          layout: "in_out",
          outFeatures: outF,
          inFeatures: inF,
          rank: 4,
          weight: exp16,
          a,
          b,
          lambdaD: byName.get("proj")!.lambdaD,
          lambdaB: byName.get("proj")!.lambdaB,
        },
        {
          name: "other",
          dtype: "F32",
          layout: "in_out",
          outFeatures: outF,
          inFeatures: inF,
          rank: 4,
          weight: exp32,
          a,
          b,
          lambdaD: byName.get("other")!.lambdaD,
          lambdaB: byName.get("other")!.lambdaB,
        },
      ]);
      const expected = modelProto(
        graph(
          { f16: Array.from(new Uint16Array(exp16.buffer)), f32: Array.from(new Float32Array(exp32.buffer)) },
          unpacked,
        ),
      );
      expect(new Uint8Array(readFileSync(out))).toEqual(expected);
      // onnxruntime agrees that the merged model computes x @ W_merged in both branches
      const x = Array.from({ length: 3 * inF }, () => r());
      for (const cond of [true, false]) {
        const o = await loadOrt();
        const s = await o.InferenceSession.create(out);
        const res = await s.run({
          x: new o.Tensor("float32", Float32Array.from(x), [1, 3, inF]),
          cond: new o.Tensor("bool", Uint8Array.from([cond ? 1 : 0]), []),
        });
        const wm = cond
          ? Array.from(new Uint16Array(exp16.buffer), f16BitsToF32)
          : Array.from(new Float32Array(exp32.buffer));
        const y = res.y!.data as Float32Array;
        for (let t = 0; t < 3; t++)
          for (let j = 0; j < outF; j++) {
            let acc = 0;
            for (let k = 0; k < inF; k++) acc += Math.fround(x[t * inF + k]!) * wm[k * outF + j]!;
            expect(Math.abs(y[t * outF + j]! - acc)).toBeLessThan(1e-5);
          }
        await s.release();
      }
    }
  });
});

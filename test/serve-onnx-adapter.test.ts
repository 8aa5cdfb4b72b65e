/**
 * The `.onnx_adapter` codec against onnxruntime itself (fixtures/serve/check_onnx_adapter.py: onnxruntime 1.30 read
 * verakit's file and ran a model with it as the active adapter; onnxruntime's own writer made ort-written.onnx_adapter),
 * plus round trips and one hand-made bad file per refusal.
 */
import { readFileSync } from "node:fs";
import { createHash } from "node:crypto";
import fc from "fast-check";
import { Builder } from "flatbuffers";
import { describe, expect, it } from "vitest";
import {
  readOnnxAdapterFile,
  writeOnnxAdapterFile,
  type OnnxAdapterParameter,
} from "../src/serve/onnx-adapter-file.js";
import { errorCode as code } from "./error-helpers.js";

const dir = new URL("../fixtures/serve/", import.meta.url);
interface SpecParam {
  name: string;
  dims: number[];
  dtype: "float32" | "float16";
  values: number[];
}
const check = JSON.parse(readFileSync(new URL("onnx-adapter-check.json", dir), "utf8")) as {
  spec: { adapterVersion: number; modelVersion: number; parameters: SpecParam[] };
  verakit_written_sha256: string;
  ort_read_back: {
    format_version: number;
    adapter_version: number;
    model_version: number;
    parameters: SpecParam[];
    identical_to_spec: boolean;
  };
  ort_run_with_adapter: { max_abs_diff_y32_vs_numpy: number; base_outputs_all_zero: boolean };
};
const toParam = (p: SpecParam): OnnxAdapterParameter => ({
  name: p.name,
  dims: p.dims,
  dtype: p.dtype,
  data: p.dtype === "float16" ? new Uint16Array(p.values) : new Float32Array(p.values),
});
const plain = (ps: OnnxAdapterParameter[]) =>
  ps.map((p) => ({ name: p.name, dims: p.dims, dtype: p.dtype, values: Array.from(p.data) }));

describe(".onnx_adapter files and onnxruntime", () => {
  it("writes the exact bytes onnxruntime 1.30 loaded, read back and applied", () => {
    const bytes = writeOnnxAdapterFile({
      adapterVersion: check.spec.adapterVersion,
      modelVersion: check.spec.modelVersion,
      parameters: check.spec.parameters.map(toParam),
    });
    expect(createHash("sha256").update(bytes).digest("hex")).toBe(check.verakit_written_sha256);
    expect(Buffer.from(bytes).equals(readFileSync(new URL("verakit-written.onnx_adapter", dir)))).toBe(true);
    // what onnxruntime read from that file: the same parameters, bit for bit, and the versions
    expect(check.ort_read_back.format_version).toBe(1);
    expect(check.ort_read_back.adapter_version).toBe(check.spec.adapterVersion);
    expect(check.ort_read_back.model_version).toBe(check.spec.modelVersion);
    expect(check.ort_read_back.parameters).toEqual(plain(check.spec.parameters.map(toParam)));
    expect(check.ort_read_back.identical_to_spec).toBe(true);
    expect(check.ort_run_with_adapter.max_abs_diff_y32_vs_numpy).toBe(0);
    expect(check.ort_run_with_adapter.base_outputs_all_zero).toBe(true);
  });

  it("reads the file onnxruntime's own writer made", () => {
    const file = readOnnxAdapterFile(new Uint8Array(readFileSync(new URL("ort-written.onnx_adapter", dir))));
    expect(file.formatVersion).toBe(1);
    expect(file.adapterVersion).toBe(check.spec.adapterVersion);
    expect(file.modelVersion).toBe(check.spec.modelVersion);
    const byName = [...file.parameters].sort((a, b) => (a.name < b.name ? -1 : 1));
    expect(plain(byName)).toEqual(plain(check.spec.parameters.map(toParam)));
  });

  it("round-trips any float32/float16 parameters, canonically (order-independent bytes)", () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(
          fc.record({
            name: fc.string({ minLength: 1, maxLength: 12 }),
            dims: fc.array(fc.integer({ min: 0, max: 4 }), { maxLength: 3 }),
            half: fc.boolean(),
            seed: fc.integer(),
          }),
          { selector: (p) => p.name, maxLength: 5 },
        ),
        fc.integer({ min: -5, max: 5 }),
        (specs, version) => {
          const params: OnnxAdapterParameter[] = specs.map((s) => {
            const n = s.dims.reduce((a, b) => a * b, 1);
            const data = s.half ? new Uint16Array(n) : new Float32Array(n);
            for (let i = 0; i < n; i++) data[i] = s.half ? (s.seed + i * 7919) & 0xffff : Math.fround(s.seed / (i + 3));
            return { name: s.name, dims: s.dims, dtype: s.half ? "float16" : "float32", data };
          });
          const bytes = writeOnnxAdapterFile({ parameters: params, adapterVersion: version });
          const again = writeOnnxAdapterFile({ parameters: [...params].reverse(), adapterVersion: version });
          expect(Buffer.from(again).equals(Buffer.from(bytes))).toBe(true);
          const read = readOnnxAdapterFile(bytes);
          expect(read.adapterVersion).toBe(version);
          expect(read.modelVersion).toBe(0);
          const sorted = [...params].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
          expect(plain(read.parameters)).toEqual(plain(sorted));
        },
      ),
      { numRuns: 60 },
    );
  });

  it("aligns every raw_data to 8 bytes (force_align: 8)", () => {
    const bytes = writeOnnxAdapterFile({
      parameters: [
        { name: "a", dims: [3], dtype: "float16", data: new Uint16Array([1, 2, 3]) },
        { name: "bb", dims: [1], dtype: "float32", data: new Float32Array([4]) },
      ],
    });
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (const [value, size] of [
      [[1, 0, 2, 0, 3, 0], 6],
      [[0, 0, 0x80, 0x40], 4],
    ] as const) {
      const at = Buffer.from(bytes).indexOf(Buffer.from(value));
      expect(at % 8).toBe(0);
      expect(dv.getUint32(at - 4, true)).toBe(size);
    }
  });

  it("refuses bad parameters when writing", () => {
    const f = (p: Partial<OnnxAdapterParameter>[]) => () =>
      writeOnnxAdapterFile({
        parameters: p.map((x) => ({ name: "a", dims: [1], dtype: "float32", data: new Float32Array(1), ...x })),
      });
    expect(code(f([{}, {}]))).toBe("SERVE_ADAPTER_FILE");
    expect(code(f([{ name: "" }]))).toBe("SERVE_ADAPTER_FILE");
    expect(code(f([{ dims: [2] }]))).toBe("SERVE_ADAPTER_FILE");
    expect(code(f([{ dims: [-1] }]))).toBe("SERVE_ADAPTER_FILE");
    expect(code(f([{ dtype: "float16" }]))).toBe("SERVE_ADAPTER_FILE");
    expect(code(f([{ dtype: "bfloat16" as "float16", data: new Uint16Array(1) }]))).toBe("SERVE_ADAPTER_FILE");
    expect(code(() => writeOnnxAdapterFile({ parameters: [], modelVersion: 2 ** 31 }))).toBe("SERVE_ADAPTER_FILE");
    expect(code(f([{}]))).toBe("OK");
  });
});

/** Hand-made files: a flatbuffer with chosen fields left out or set wrong. */
function handMade(o: {
  ident?: string;
  formatVersion?: number;
  params?: { name?: string | null; dims?: number[] | null; type?: number; raw?: number[] | null }[];
}): Uint8Array {
  const b = new Builder(256);
  const offs = (o.params ?? []).map((p) => {
    const name = p.name === null ? 0 : b.createString(p.name ?? "p");
    let dims = 0;
    if (p.dims !== null) {
      const d = p.dims ?? [1];
      b.startVector(8, d.length, 8);
      for (let i = d.length - 1; i >= 0; i--) b.addInt64(BigInt(d[i]!));
      dims = b.endVector();
    }
    const raw = p.raw === null ? 0 : b.createByteVector(new Uint8Array(p.raw ?? [0, 0, 0x80, 0x3f]));
    b.startObject(4);
    if (name) b.addFieldOffset(0, name, 0);
    if (dims) b.addFieldOffset(1, dims, 0);
    b.addFieldInt32(2, p.type ?? 1, 0);
    if (raw) b.addFieldOffset(3, raw, 0);
    return b.endObject();
  });
  b.startVector(4, offs.length, 4);
  for (let i = offs.length - 1; i >= 0; i--) b.addOffset(offs[i]!);
  const list = b.endVector();
  b.startObject(4);
  b.addFieldInt32(0, o.formatVersion ?? 1, 0);
  b.addFieldOffset(3, list, 0);
  b.finish(b.endObject(), o.ident ?? "TORT");
  return b.asUint8Array().slice();
}

describe(".onnx_adapter reader refusals (SERVE_ADAPTER_FILE, one per check)", () => {
  const read = (bytes: Uint8Array) => () => readOnnxAdapterFile(bytes);
  it("accepts the hand-made baseline", () => {
    const f = readOnnxAdapterFile(handMade({ params: [{}] }));
    expect(plain(f.parameters)).toEqual([{ name: "p", dims: [1], dtype: "float32", values: [1] }]);
  });
  it("refuses each malformed file", () => {
    const cases: [string, Uint8Array][] = [
      ["shorter than 8 bytes", new Uint8Array(7)],
      ["wrong identifier", handMade({ ident: "ORTM", params: [{}] })],
      ["format_version 2", handMade({ formatVersion: 2, params: [{}] })],
      ["no name", handMade({ params: [{ name: null }] })],
      ["empty name", handMade({ params: [{ name: "" }] })],
      ["no dims", handMade({ params: [{ dims: null }] })],
      ["negative dim", handMade({ params: [{ dims: [-1] }] })],
      ["no raw_data", handMade({ params: [{ raw: null }] })],
      ["raw_data too short", handMade({ params: [{ dims: [2] }] })],
      ["raw_data too long", handMade({ params: [{ raw: [0, 0, 0, 0, 0] }] })],
      ["element type int64", handMade({ params: [{ type: 7, raw: [0, 0, 0, 0, 0, 0, 0, 0] }] })],
      ["duplicate names", handMade({ params: [{}, {}] })],
      ["root offset out of bounds", Uint8Array.from([0xff, 0xff, 0, 0, 0x54, 0x4f, 0x52, 0x54])],
    ];
    for (const [what, bytes] of cases) expect([what, code(read(bytes))]).toEqual([what, "SERVE_ADAPTER_FILE"]);
  });
  it("refuses every truncation of a valid file and never throws anything but a VeraError on mutations", () => {
    const good = writeOnnxAdapterFile({
      parameters: [{ name: "m.vera_lambda_d", dims: [2], dtype: "float32", data: new Float32Array([1, 2]) }],
    });
    // a cut either is refused or only dropped the final alignment padding (then the content is the same)
    const whole = plain(readOnnxAdapterFile(good).parameters);
    let refused = 0;
    for (let n = 0; n < good.length; n++) {
      const c = code(read(good.subarray(0, n)));
      if (c === "OK") expect(plain(readOnnxAdapterFile(good.subarray(0, n)).parameters)).toEqual(whole);
      else refused++;
      expect(["OK", "SERVE_ADAPTER_FILE"]).toContain(c);
    }
    expect(refused).toBeGreaterThan(good.length - 8);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: good.length - 1 }), fc.integer({ min: 0, max: 255 }), (at, v) => {
        const bad = good.slice();
        bad[at] = v;
        expect(["OK", "SERVE_ADAPTER_FILE"]).toContain(code(read(bad)));
      }),
      { numRuns: 300 },
    );
  });
});

/**
 * Merging into split GGUF models (llama.cpp's gguf-split layout: fixtures/gguf/llama-split, the tiny Llama base of
 * fixtures/gguf/llama written by gguf-py's GGUFWriter in 3 parts): every part's merged tensors have the bytes of the
 * single-file merge, every other byte is the part's, both -o forms and --in-place give the same parts, and parts that
 * do not form one model are refused before anything is written. llama.cpp runs the merged parts in
 * test/gguf-llama-cpp.test.ts.
 */
import { copyFileSync, existsSync, readdirSync, readFileSync, renameSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { beforeAll, describe, expect, it } from "vitest";
import mergeCommand from "../src/cli/commands/merge.js";
import { createAdapter } from "../src/format/create.js";
import {
  bytesSource,
  checkGgufSplit,
  decodeTensor,
  encodeTensor,
  GgmlType,
  GgufErrorCode,
  ggufSplitName,
  parseGgufSplitName,
  readGguf,
  writeGguf,
  type GgufFile,
  type GgufValue,
} from "../src/gguf/index.js";
import { mergeGguf, MergeErrorCode } from "../src/merge/index.js";
import { veraError } from "./error-helpers.js";
import { useTempDirs } from "./temp-helpers.js";

const FIX = join(import.meta.dirname, "..", "fixtures", "gguf");
const SINGLE = join(FIX, "llama", "base-f32.gguf");
const SPLIT = join(FIX, "llama-split");
const VERA = join(FIX, "vera");
const NAMES = [1, 2, 3].map((k) => `base-f32-0000${k}-of-00003.gguf`);
const tmp = useTempDirs("vera-merge-gguf-split-");

const read = (bytes: Uint8Array): Promise<GgufFile> => readGguf({ source: bytesSource(bytes) });
const bytesOf = (path: string): Uint8Array => new Uint8Array(readFileSync(path));

/** Each tensor's bytes of a GGUF file. */
async function tensorBytes(bytes: Uint8Array): Promise<Map<string, Uint8Array>> {
  const file = await read(bytes);
  return new Map(
    file.tensors.map((t) => [
      t.name,
      bytes.subarray(file.dataOffset + t.offset, file.dataOffset + t.offset + t.byteLength),
    ]),
  );
}

/** A folder holding copies of the fixture's parts (all of them, or those named). */
function copyParts(names = NAMES): string {
  const dir = tmp();
  for (const n of names) copyFileSync(join(SPLIT, n), join(dir, n));
  return dir;
}

let singleMerged: Map<string, Uint8Array>;
let merged: string;
let report: Awaited<ReturnType<typeof mergeGguf>>;
beforeAll(async () => {
  const out = join(tmp(), "single.gguf");
  await mergeGguf({ model: SINGLE, adapter: VERA, output: out, durable: false });
  singleMerged = await tensorBytes(bytesOf(out));
  merged = tmp();
  report = await mergeGguf({ model: join(SPLIT, NAMES[0]!), adapter: VERA, output: merged, durable: false });
});

describe("vera merge into a split GGUF model", () => {
  it("the fixture is the single-file base in 3 parts (metadata in the first), tensor for tensor", async () => {
    const single = await tensorBytes(bytesOf(SINGLE));
    const seen = new Map<string, Uint8Array>();
    for (const [k, name] of NAMES.entries()) {
      const file = await read(bytesOf(join(SPLIT, name)));
      expect(file.metadata.get("split.no")?.value).toBe(k);
      expect(file.metadata.get("split.count")?.value).toBe(3);
      expect(file.metadata.has("general.architecture")).toBe(k === 0);
      for (const [t, b] of await tensorBytes(bytesOf(join(SPLIT, name)))) seen.set(t, b);
    }
    expect([...seen.keys()].sort()).toEqual([...single.keys()].sort());
    for (const [t, b] of single) expect(Buffer.compare(seen.get(t)!, b), t).toBe(0);
  });

  it("-o DIR: every part written under its name; merged tensors are the single-file merge's bytes, every other byte the part's", async () => {
    expect(readdirSync(merged).sort()).toEqual(NAMES);
    expect(report.weights).toBe(14);
    expect(report.output).toBe(join(merged, NAMES[0]!));
    expect(report.files.sort()).toEqual(NAMES.map((n) => join(merged, n)));
    expect(new Set(report.modules.map((m) => m.storage.split("@")[0]))).toEqual(new Set(NAMES));
    let changedTensors = 0;
    for (const name of NAMES) {
      const input = bytesOf(join(SPLIT, name));
      const output = bytesOf(join(merged, name));
      expect(output.byteLength).toBe(input.byteLength);
      const file = await read(input);
      const mask = new Uint8Array(input.byteLength);
      for (const t of file.tensors) {
        const start = file.dataOffset + t.offset;
        const got = output.subarray(start, start + t.byteLength);
        expect(Buffer.compare(got, singleMerged.get(t.name)!), t.name).toBe(0);
        if (Buffer.compare(got, input.subarray(start, start + t.byteLength)) !== 0) {
          changedTensors++;
          mask.fill(1, start, start + t.byteLength);
        }
      }
      let other = 0;
      for (let i = 0; i < input.byteLength; i++) if (!mask[i] && input[i] !== output[i]) other++;
      expect(other, name).toBe(0);
    }
    expect(changedTensors).toBe(14);
  });

  it("-o PREFIX-00001-of-00003.gguf names the parts PREFIX-0000k-of-00003.gguf, with the same bytes", async () => {
    const dir = tmp();
    await mergeGguf({
      model: join(SPLIT, NAMES[0]!),
      adapter: VERA,
      output: join(dir, "sub", "merged-00001-of-00003.gguf"),
      durable: false,
    });
    const names = [1, 2, 3].map((k) => `merged-0000${k}-of-00003.gguf`);
    expect(readdirSync(join(dir, "sub")).sort()).toEqual(names);
    for (const [k, n] of names.entries())
      expect(Buffer.compare(readFileSync(join(dir, "sub", n)), readFileSync(join(merged, NAMES[k]!)))).toBe(0);
  });

  it("any part names the model: given the last part, -o a new folder gives the same parts", async () => {
    const out = join(tmp(), "new-folder");
    await mergeGguf({ model: join(SPLIT, NAMES[2]!), adapter: VERA, output: out, durable: false });
    for (const n of NAMES) expect(Buffer.compare(readFileSync(join(out, n)), readFileSync(join(merged, n)))).toBe(0);
  });

  it("--in-place (given the second part) gives the -o parts and leaves no other file", async () => {
    const dir = copyParts();
    const r = await mergeGguf({ model: join(dir, NAMES[1]!), adapter: VERA, inPlace: true, durable: false });
    expect(r.inPlace).toBe(true);
    expect(readdirSync(dir).sort()).toEqual(NAMES);
    for (const n of NAMES) expect(Buffer.compare(readFileSync(join(dir, n)), readFileSync(join(merged, n)))).toBe(0);
  });

  it("an adapter on one part's weights: that part changes, the others are copied byte for byte (in place: only it is rewritten)", async () => {
    const only = createAdapter({
      modules: [{ name: "model.layers.1.self_attn.v_proj", inFeatures: 32, outFeatures: 16 }],
      rank: 4,
      seed: 3,
    });
    only.modules[0]!.lambdaB.fill(0.5);
    const out = tmp();
    const r = await mergeGguf({ model: join(SPLIT, NAMES[0]!), adapter: only, output: out, durable: false });
    expect(r.modules.map((m) => m.storage.split("@")[0])).toEqual([NAMES[1]]);
    expect(readdirSync(out).sort()).toEqual(NAMES);
    const same = NAMES.map((n) => Buffer.compare(readFileSync(join(out, n)), readFileSync(join(SPLIT, n))) === 0);
    expect(same).toEqual([true, false, true]);
    const dir = copyParts();
    const inPlace = await mergeGguf({ model: join(dir, NAMES[0]!), adapter: only, inPlace: true, durable: false });
    expect(inPlace.files).toEqual([join(dir, NAMES[1]!)]);
    for (const n of NAMES) expect(Buffer.compare(readFileSync(join(dir, n)), readFileSync(join(out, n)))).toBe(0);
  });

  it("parts that are symlinks to blobs without part names (a Hub cache snapshot) are found and named by their links", async () => {
    const blobs = tmp();
    const snapshot = tmp();
    for (const [k, n] of NAMES.entries()) {
      copyFileSync(join(SPLIT, n), join(blobs, `blob${k}`));
      symlinkSync(join(blobs, `blob${k}`), join(snapshot, n));
    }
    const out = tmp();
    const r = await mergeGguf({ model: join(snapshot, NAMES[0]!), adapter: VERA, output: out, durable: false });
    expect(r.modules.every((m) => NAMES.includes(m.storage.split("@")[0]!))).toBe(true);
    for (const n of NAMES) expect(Buffer.compare(readFileSync(join(out, n)), readFileSync(join(merged, n)))).toBe(0);
  });

  it("a dry run reports every part's weights and writes nothing (not even the new output folder)", async () => {
    const out = join(tmp(), "not-made");
    const r = await mergeGguf({ model: join(SPLIT, NAMES[0]!), adapter: VERA, output: out, dryRun: true });
    expect(r.weights).toBe(14);
    expect(r.bytesMerged).toBe(2 * 4 * (32 * 32 * 2 + 16 * 32 * 2 + 48 * 32 * 3));
    expect(existsSync(out)).toBe(false);
  });

  it("-o must be a folder or the first part's name with the same count: ARG_INVALID naming both forms", async () => {
    const dir = tmp();
    writeFileSync(join(dir, "file"), "x");
    for (const bad of ["file", "merged.gguf", "m-00002-of-00003.gguf", "m-00001-of-00004.gguf"]) {
      const e = await veraError(
        mergeGguf({ model: join(SPLIT, NAMES[0]!), adapter: VERA, output: join(dir, bad), durable: false }),
      );
      expect(e.code, bad).toBe("ARG_INVALID");
      expect(e.message).toContain("folder");
      expect(e.message).toContain("<name>-00001-of-00003.gguf");
    }
    expect(readdirSync(dir)).toEqual(["file"]);
  });

  it("-o the parts' own folder: MERGE_OUTPUT_CONFLICT, nothing written", async () => {
    const dir = copyParts();
    const e = await veraError(mergeGguf({ model: join(dir, NAMES[0]!), adapter: VERA, output: dir, durable: false }));
    expect(e.code).toBe(MergeErrorCode.MERGE_OUTPUT_CONFLICT);
    expect(readdirSync(dir).sort()).toEqual(NAMES);
  });
});

describe("split parts that do not form one model: typed errors naming the part, nothing written", () => {
  /** Merge the parts of `dir` (given by `given`) into a fresh folder; both folders must be left as they were. */
  async function refused(dir: string, given = NAMES[0]!) {
    const before = readdirSync(dir).sort();
    const out = tmp();
    const e = await veraError(mergeGguf({ model: join(dir, given), adapter: VERA, output: out, durable: false }));
    expect(readdirSync(out)).toEqual([]);
    expect(readdirSync(dir).sort()).toEqual(before);
    return e;
  }

  /** Replace `from` by `to` (same length) in the header of part `k` of a copy. */
  function patchHeader(dir: string, k: number, from: Uint8Array, to: Uint8Array): void {
    const path = join(dir, NAMES[k]!);
    const bytes = bytesOf(path);
    const at = Buffer.from(bytes).indexOf(Buffer.from(from));
    expect(at).toBeGreaterThan(0);
    bytes.set(to, at);
    writeFileSync(path, bytes);
  }

  it("a missing part: GGUF_SPLIT naming the missing file", async () => {
    const e = await refused(copyParts([NAMES[0]!, NAMES[2]!]), NAMES[2]);
    expect(e.code).toBe(GgufErrorCode.GGUF_SPLIT);
    expect(e.message).toContain(NAMES[1]);
    expect(e.message).toContain("missing");
  });

  it("a part whose split.count disagrees with the names: GGUF_SPLIT naming the part", async () => {
    const dir = copyParts();
    // key "split.count", type UINT16 (2), value 3 -> 4
    const key = Buffer.from("split.count");
    const tail = (v: number) => new Uint8Array([...key, 2, 0, 0, 0, v, 0]);
    patchHeader(dir, 1, tail(3), tail(4));
    const e = await refused(dir);
    expect(e.code).toBe(GgufErrorCode.GGUF_SPLIT);
    expect(e.message).toContain(NAMES[1]);
    expect(e.message).toContain("split.count is 4");
  });

  it("parts under each other's names (split.no disagrees): GGUF_SPLIT", async () => {
    const dir = copyParts();
    renameSync(join(dir, NAMES[1]!), join(dir, "x"));
    renameSync(join(dir, NAMES[2]!), join(dir, NAMES[1]!));
    renameSync(join(dir, "x"), join(dir, NAMES[2]!));
    const e = await refused(dir);
    expect(e.code).toBe(GgufErrorCode.GGUF_SPLIT);
    expect(e.message).toContain("split.no is 2");
  });

  it("a tensor in two parts: GGUF_DUPLICATE naming both files", async () => {
    const dir = copyParts();
    patchHeader(dir, 1, Buffer.from("blk.1.attn_v.weight"), Buffer.from("blk.0.attn_v.weight"));
    const e = await refused(dir);
    expect(e.code).toBe(GgufErrorCode.GGUF_DUPLICATE);
    expect(e.message).toContain("blk.0.attn_v.weight");
    expect(e.message).toContain(NAMES[0]);
    expect(e.message).toContain(NAMES[1]);
  });

  /** Rewrite part `k` of a copy with verakit's writer: metadata edited, a tensor dropped or re-encoded. */
  async function rewritePart(
    dir: string,
    k: number,
    edit: { metadata?: (m: Map<string, GgufValue>) => void; drop?: string; q8_0?: string },
  ): Promise<void> {
    const path = join(dir, NAMES[k]!);
    const bytes = bytesOf(path);
    const file = await read(bytes);
    const metadata = new Map(file.metadata);
    edit.metadata?.(metadata);
    const tensors = file.tensors
      .filter((t) => t.name !== edit.drop)
      .map((t) => {
        const data = bytes.subarray(file.dataOffset + t.offset, file.dataOffset + t.offset + t.byteLength);
        return t.name === edit.q8_0
          ? {
              name: t.name,
              ne: t.ne,
              type: GgmlType.Q8_0,
              data: encodeTensor(decodeTensor(data, t.type), t.ne[0]!, "q8_0", t.name),
            }
          : { name: t.name, ne: t.ne, type: t.type, data };
      });
    writeFileSync(path, writeGguf({ metadata, tensors, alignment: file.alignment }));
  }

  it("a quantized weight in a later part: GGUF_QUANTIZED naming the tensor", async () => {
    const dir = copyParts();
    await rewritePart(dir, 2, { q8_0: "blk.1.ffn_up.weight" });
    const e = await refused(dir);
    expect(e.code).toBe("GGUF_QUANTIZED");
    expect(e.message).toContain("blk.1.ffn_up.weight (Q8_0)");
  });

  it("lm_head on a split model whose output is tied to token_embd (no output.weight in any part): GGUF_MODULE_UNSUPPORTED", async () => {
    const dir = copyParts();
    await rewritePart(dir, 2, { drop: "output.weight" });
    const e0 = await refused(dir);
    expect(e0.code).toBe(GgufErrorCode.GGUF_SPLIT); // split.tensors.count still says 21
    expect(e0.message).toContain("split.tensors.count is 21, but the 3 parts hold 20 tensors");
    await rewritePart(dir, 0, { metadata: (m) => m.set("split.tensors.count", { type: 5, value: 20 }) });
    const tied = createAdapter({ modules: [{ name: "lm_head", inFeatures: 32, outFeatures: 288 }], rank: 4 });
    const out = tmp();
    const e = await veraError(mergeGguf({ model: join(dir, NAMES[0]!), adapter: tied, output: out, durable: false }));
    expect(e.code).toBe("GGUF_MODULE_UNSUPPORTED");
    expect(e.message).toContain("tied to token_embd");
    expect(readdirSync(out)).toEqual([]);
  });

  it("a truncated part: the single-file errors, naming the part", async () => {
    for (const cut of [100, -1000]) {
      const dir = copyParts();
      const path = join(dir, NAMES[2]!);
      const bytes = bytesOf(path);
      writeFileSync(path, bytes.subarray(0, cut < 0 ? bytes.byteLength + cut : cut));
      const e = await refused(dir);
      expect(["GGUF_TRUNCATED", "GGUF_TENSOR_RANGE", "GGUF_COUNT"]).toContain(e.code);
      expect(e.message).toContain(NAMES[2]);
    }
  });

  it("split.count over 1 on a file without a part's name: GGUF_SPLIT", async () => {
    const dir = tmp();
    copyFileSync(join(SPLIT, NAMES[0]!), join(dir, "model.gguf"));
    const e = await refused(dir, "model.gguf");
    expect(e.code).toBe(GgufErrorCode.GGUF_SPLIT);
    expect(e.message).toContain("split.count 3");
  });
});

describe("vera merge PART.gguf ADAPTER -o DIR (the merge command, in process)", () => {
  it("writes the parts mergeGguf writes", async () => {
    const out = join(tmp(), "cli-out");
    const argv = [join(SPLIT, NAMES[0]!), VERA, "-o", out, "--backend", "reference", "--no-fsync", "--json"];
    const { values, positionals } = parseArgs({
      args: argv,
      options: { ...mergeCommand.options, json: { type: "boolean" }, debug: { type: "boolean" } },
      allowPositionals: true,
    });
    const lines: string[] = [];
    const ctx = { out: (l: string) => lines.push(l), err: () => {}, json: true, debug: false, isTTY: false, env: {} };
    const code = await mergeCommand.run({ values: values as Record<string, unknown>, positionals }, ctx);
    expect(code).toBe(0);
    expect((JSON.parse(lines.join("\n")) as { files: string[] }).files.length).toBe(3);
    for (const n of NAMES) expect(Buffer.compare(readFileSync(join(out, n)), readFileSync(join(merged, n)))).toBe(0);
  });
});

describe("split names and checks (pure)", () => {
  it("parseGgufSplitName reads llama.cpp's part names and nothing else; ggufSplitName writes them", () => {
    expect(parseGgufSplitName("m-00002-of-00003.gguf")).toEqual({ prefix: "m", no: 2, count: 3 });
    expect(parseGgufSplitName("a-b-00001-of-00001.gguf")).toEqual({ prefix: "a-b", no: 1, count: 1 });
    for (const bad of [
      "m.gguf",
      "-00001-of-00002.gguf",
      "m-00000-of-00002.gguf",
      "m-00003-of-00002.gguf",
      "m-1-of-2.gguf",
      "m-00001-of-00002.bin",
    ])
      expect(parseGgufSplitName(bad), bad).toBeUndefined();
    expect(ggufSplitName({ prefix: "x/y", no: 7, count: 12 })).toBe("x/y-00007-of-00012.gguf");
  });

  it("checkGgufSplit: split.tensors.count missing or wrong is GGUF_SPLIT naming the first part", async () => {
    const parts = await Promise.all(NAMES.map(async (n) => ({ file: await read(bytesOf(join(SPLIT, n))), label: n })));
    expect(() => checkGgufSplit({ parts })).not.toThrow();
    const first = { ...parts[0]!.file, metadata: new Map(parts[0]!.file.metadata) };
    first.metadata.set("split.tensors.count", { type: 5, value: 20 });
    let e = await veraError(
      Promise.resolve().then(() => checkGgufSplit({ parts: [{ ...parts[0]!, file: first }, ...parts.slice(1)] })),
    );
    expect(e.code).toBe(GgufErrorCode.GGUF_SPLIT);
    expect(e.message).toContain(`${NAMES[0]}: split.tensors.count is 20, but the 3 parts hold 21 tensors`);
    first.metadata.delete("split.tensors.count");
    e = await veraError(
      Promise.resolve().then(() => checkGgufSplit({ parts: [{ ...parts[0]!, file: first }, ...parts.slice(1)] })),
    );
    expect(e.message).toContain("split.tensors.count is missing");
  });
});

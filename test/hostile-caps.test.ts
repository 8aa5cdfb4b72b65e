/**
 * Caps before work: size bombs (made sparse on disk with truncate, so the tests stay small and fast) end
 * in typed errors that arrive before the bytes are read; inputs that are not regular files are refused
 * at once; crafted counts, lengths and split names never reach an allocation.
 */
import { execFileSync } from "node:child_process";
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  rmSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { createAdapter } from "../src/format/create.js";
import { writeVera } from "../src/format/write.js";
import { GGUF_LIMITS } from "../src/gguf/read-gguf.js";
import { parseGgufSplitName } from "../src/gguf/split-name.js";
import { mergeOnnx } from "../src/merge/index.js";
import { readCheckpoint } from "../src/merge/read-checkpoint.js";
import { readGgufModel } from "../src/merge/read-gguf-model.js";
import { readFileBytes } from "../src/node/files.js";
import { readGgufFile } from "../src/node/read-gguf-file.js";
import { readPeftFolder } from "../src/node/peft-folder.js";
import { readBaseShapes } from "../src/node/read-base-shapes.js";
import { DEFAULT_MAX_HEADER_BYTES } from "../src/safetensors/parse.js";
import { INPUT_LIMITS } from "../src/util/input-limits.js";
import { runCli } from "./cli-helpers.js";
import { errorCode, veraError } from "./error-helpers.js";
import { modelProto } from "./onnx-helpers.js";

const root = mkdtempSync(join(tmpdir(), "vera-hostile-caps-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const fresh = (): string => {
  const d = join(root, `c${n++}`);
  mkdirSync(d, { recursive: true });
  return d;
};

/** A file of `size` bytes that starts with `head` and is a hole after it (no disk, no memory). */
function sparse(path: string, size: number, head: Uint8Array = new Uint8Array(0)): string {
  const fd = openSync(path, "w");
  writeSync(fd, head);
  closeSync(fd);
  truncateSync(path, size);
  return path;
}

/** A sparse file, or undefined where the filesystem refuses that size (then the case is skipped). */
function sparseOrSkip(path: string, size: number, head?: Uint8Array): string | undefined {
  try {
    return sparse(path, size, head);
  } catch {
    return undefined;
  }
}

const MB = 1024 * 1024;

// ---- GGUF headers, written by hand so that counts can lie ----
const u32 = (v: number): number[] => [v & 255, (v >>> 8) & 255, (v >>> 16) & 255, (v >>> 24) & 255];
const u64 = (v: number | bigint): number[] => {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(v), true);
  return [...b];
};
const gstr = (s: string): number[] => [...u64(Buffer.byteLength(s)), ...Buffer.from(s)];
/** GGUF v3 header: magic, version, tensor count, kv count, then the given bytes. */
const gguf = (tensors: number | bigint, kvs: number | bigint, rest: number[] = []): Uint8Array =>
  Uint8Array.from([...Buffer.from("GGUF"), ...u32(3), ...u64(tensors), ...u64(kvs), ...rest]);
/** A valid empty GGUF: no tensors, general.architecture = llama. */
const emptyGguf = (): Uint8Array => gguf(0, 1, [...gstr("general.architecture"), ...u32(8), ...gstr("llama")]);

describe("only regular files are inputs", () => {
  it("vera validate /dev/zero ends at once in IO_NOT_A_FILE (it grew without bound)", async () => {
    if (!existsSync("/dev/zero")) return;
    const r = await runCli(["validate", "/dev/zero"]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain("IO_NOT_A_FILE");
    expect((await veraError(readFileBytes("/dev/zero"))).code).toBe("IO_NOT_A_FILE");
  });

  it("a FIFO is refused without opening it (an open would wait for a writer forever)", async () => {
    const fifo = join(fresh(), "adapter.vera.safetensors");
    try {
      execFileSync("mkfifo", [fifo]);
    } catch {
      return; // no mkfifo here
    }
    expect((await veraError(readFileBytes(fifo))).code).toBe("IO_NOT_A_FILE");
    expect((await veraError(readGgufFile(fifo))).code).toBe("IO_NOT_A_FILE");
  });

  it("a folder given where a file is read is IO_NOT_A_FILE", async () => {
    expect((await veraError(readFileBytes(fresh()))).code).toBe("IO_NOT_A_FILE");
  });
});

describe("JSON size bombs end before they are read", () => {
  it("a 300 MB adapter_config.json: IO_TOO_LARGE naming the file, the limit and the size", async () => {
    const dir = fresh();
    const cfg = sparse(join(dir, "adapter_config.json"), 300 * MB, Buffer.from('{"peft_type": "VERA", "x": "'));
    writeFileSync(join(dir, "adapter_model.safetensors"), new Uint8Array(16));
    const e = await veraError(readPeftFolder({ dir }));
    expect(e.code).toBe("IO_TOO_LARGE");
    expect(e.message).toContain(cfg);
    expect(e.message).toContain(String(INPUT_LIMITS.jsonBytes));
    expect(e.received).toBe(300 * MB);
    const r = await runCli(["import-peft", dir, "-o", join(dir, "out.vera.safetensors")]);
    expect(r.stderr).toContain("IO_TOO_LARGE");
    expect(r.stderr).not.toContain("INTERNAL");
  });

  it("a 300 MB model.safetensors.index.json: IO_TOO_LARGE for the merge and the base-shape reader", async () => {
    const dir = fresh();
    sparse(join(dir, "model.safetensors.index.json"), 300 * MB, Buffer.from('{"weight_map": {"a": "'));
    expect((await veraError(readCheckpoint({ path: dir }))).code).toBe("IO_TOO_LARGE");
    expect((await veraError(readBaseShapes({ path: join(dir, "model.safetensors.index.json") }))).code).toBe(
      "IO_TOO_LARGE",
    );
  });

  it("a JSON file under the size limit but with millions of values is refused by the value count", async () => {
    const dir = fresh();
    const text = `[${"0,".repeat(INPUT_LIMITS.jsonValues + 10)}0]`;
    expect(text.length).toBeLessThan(INPUT_LIMITS.jsonBytes);
    writeFileSync(join(dir, "config.json"), text);
    const e = await veraError(readBaseShapes({ path: join(dir, "config.json") }));
    expect(e.code).toBe("PEFT_CONFIG_INVALID");
    expect(e.message).toContain(`more than ${INPUT_LIMITS.jsonValues} values`);
  });
});

describe("safetensors headers", () => {
  it("a 97 MB header is ST_HEADER_TOO_LARGE before the header is read (base shapes and merge)", async () => {
    const dir = fresh();
    const len = 97 * MB;
    const head = new Uint8Array(8);
    new DataView(head.buffer).setBigUint64(0, BigInt(len), true);
    const path = sparse(join(dir, "model.safetensors"), 8 + len + 64, head);
    const e = await veraError(readBaseShapes({ path }));
    expect(e.code).toBe("ST_HEADER_TOO_LARGE");
    expect(e.received).toBe(len);
    expect(e.expected).toBe(`<= ${DEFAULT_MAX_HEADER_BYTES}`);
    expect((await veraError(readCheckpoint({ path }))).code).toBe("ST_HEADER_TOO_LARGE");
  });
});

describe("GGUF counts and split names are bounded before anything is allocated", () => {
  it("split counts in names: -of-1000000 and -of-99999999999999999999 are GGUF_LIMIT (was minutes, 4 GB, INTERNAL)", async () => {
    expect(errorCode(() => parseGgufSplitName("x-00001-of-1000000.gguf"))).toBe("GGUF_LIMIT");
    expect(errorCode(() => parseGgufSplitName("x-00001-of-99999999999999999999.gguf"))).toBe("GGUF_LIMIT");
    expect(errorCode(() => parseGgufSplitName(`x-00001-of-${"9".repeat(5000)}.gguf`))).toBe("GGUF_LIMIT");
    expect(parseGgufSplitName(`x-00002-of-${String(GGUF_LIMITS.maxSplitCount).padStart(5, "0")}.gguf`)).toEqual({
      prefix: "x",
      no: 2,
      count: GGUF_LIMITS.maxSplitCount,
    });
    const dir = fresh();
    for (const name of ["x-00001-of-1000000.gguf", "x-00001-of-99999999999999999999.gguf"]) {
      writeFileSync(join(dir, name), emptyGguf());
      const e = await veraError(readGgufModel({ model: join(dir, name) }));
      expect(e.code).toBe("GGUF_LIMIT");
      expect(e.message.length).toBeLessThan(1000);
      const adapter = join(dir, "a.vera.safetensors");
      writeFileSync(
        adapter,
        writeVera({ adapter: createAdapter({ modules: [{ name: "m", inFeatures: 4, outFeatures: 4 }], rank: 2 }) }),
      );
      const r = await runCli(["merge", join(dir, name), adapter, "-o", join(dir, "out.gguf")]);
      expect(r.stderr).toContain("GGUF_LIMIT");
      expect(r.stderr).not.toContain("INTERNAL");
    }
  });

  it("millions of metadata entries, tensors, or array items in a sparse file: GGUF_LIMIT", async () => {
    const dir = fresh();
    const size = 2 ** 36; // 64 GiB of holes: every count below fits in the bytes left
    const cases: Array<[string, Uint8Array]> = [
      ["kv", gguf(0, 5_000_000)],
      ["tensors", gguf(10_000_000, 0)],
      // one key holding an array of a billion uint8 (type 9 = array, item type 0 = uint8)
      ["array", gguf(0, 1, [...gstr("tokenizer.ggml.scores"), ...u32(9), ...u32(0), ...u64(1_000_000_000)])],
      // arrays of arrays: each inner array counts its items against the one total
      [
        "nested",
        gguf(0, 1, [...gstr("a"), ...u32(9), ...u32(9), ...u64(2), ...u32(0), ...u64(GGUF_LIMITS.maxArrayItems)]),
      ],
      // a 100 MB string value (type 8)
      ["string", gguf(0, 1, [...gstr("general.name"), ...u32(8), ...u64(100 * MB)])],
    ];
    for (const [name, head] of cases) {
      const path = sparseOrSkip(join(dir, `${name}.gguf`), size, head);
      if (!path) continue;
      const e = await veraError(readGgufFile(path));
      expect([name, e.code]).toEqual([name, "GGUF_LIMIT"]);
    }
  });

  it("a header longer than GGUF_LIMITS.maxHeaderBytes ends at the limit, not at the end of the file", async () => {
    const dir = fresh();
    // three 60 MB strings: each under the string limit, together over the header limit; made of holes
    const s = 60 * MB;
    const head = gguf(0, 3, [...gstr("k0"), ...u32(8), ...u64(s)]);
    const path = join(dir, "big.gguf");
    const fd = openSync(path, "w");
    writeSync(fd, head);
    let at = head.length + s;
    for (const k of ["k1", "k2"]) {
      const kv = Uint8Array.from([...gstr(k), ...u32(8), ...u64(s)]);
      writeSync(fd, kv, 0, kv.length, at);
      at += kv.length + s;
    }
    closeSync(fd);
    truncateSync(path, at + 1024);
    const e = await veraError(readGgufFile(path));
    expect(e.code).toBe("GGUF_LIMIT");
    expect(e.message).toContain(String(GGUF_LIMITS.maxHeaderBytes));
  });
});

describe("no INTERNAL error for a crafted ONNX weight", () => {
  it("a 4 TiB external weight (dims 2^20 x 2^20 float32, its data file a 4 TiB hole) is a typed error", async () => {
    const dir = fresh();
    const side = 2 ** 20;
    const bytes = side * side * 4;
    if (!sparseOrSkip(join(dir, "w.bin"), bytes + 4096)) return; // the filesystem cannot hold the hole
    writeFileSync(
      join(dir, "model.onnx"),
      modelProto({
        nodes: [
          { opType: "MatMul", inputs: ["x", "layers.0.proj.weight"], outputs: ["y"], name: "/layers.0/proj/MatMul" },
        ],
        initializers: [
          {
            name: "layers.0.proj.weight",
            dims: [side, side],
            dataType: 1,
            external: [
              ["location", "w.bin"],
              ["offset", "0"],
              ["length", String(bytes)],
            ],
          },
        ],
        inputs: [{ name: "x", elemType: 1, shape: [1, side] }],
        outputs: [{ name: "y", elemType: 1, shape: [1, side] }],
      }),
    );
    const adapter = createAdapter({
      modules: [{ name: "layers.0.proj", inFeatures: side, outFeatures: side }],
      rank: 2,
      seed: 1,
    });
    adapter.modules[0]!.lambdaB.fill(0.5);
    for (const output of [join(dir, "out", "model.onnx"), undefined]) {
      const e = await veraError(
        mergeOnnx({
          model: join(dir, "model.onnx"),
          adapter,
          ...(output ? { output } : { inPlace: true }),
          durable: false,
        }),
      );
      expect(e.code).toBe("IO_TOO_LARGE");
      expect(e.message).toContain("w.bin");
    }
  });
});

/**
 * The merge core without a file system (mergeModelFiles of verakit/merge, what the page runs): its output files,
 * assembled from their segments, equal `vera merge`'s byte for byte on the same backend, tensors the adapter
 * carries (a classifier head) included; the container is found from the content, never the name.
 */
import { spawnSync } from "node:child_process";
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { createReferenceBackend } from "../src/compute/reference-backend.js";
import { isVeraError } from "../src/errors.js";
import { detectModelContainer, mergeModelFiles, type MergedModelFile } from "../src/merge/core/index.js";
import { mergeModel } from "../src/merge/index.js";
import { nodeFileAccess } from "../src/node/node-file-access.js";
import { readOnnxModel } from "../src/onnx/read-onnx-model.js";
import type { OnnxModel } from "../src/onnx/types.js";
import { parseSafetensors, tensorBytes } from "../src/safetensors/parse.js";
import { readInlineValues } from "../src/onnx/inline-values.js";
import { pathFileAccess, type PathFile } from "../src/peft/load/memory-file-access.js";
import type { FileAccess } from "../src/peft/load/file-access.js";

const ROOT = join(__dirname, "..");
const ONNX = join(ROOT, "fixtures", "onnx");
const ZOO = join(ROOT, "fixtures", "zoo");
const CLI = join(ROOT, "dist", "cli", "index.js");
const work = mkdtempSync(join(tmpdir(), "vera-merge-files-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));
let n = 0;
const fresh = (): string => {
  const d = join(work, String(n++));
  mkdirSync(d);
  return d;
};

/** Every file under `dir`, by `/`-separated path relative to it. */
function readTree(dir: string, base = dir, out = new Map<string, Uint8Array>()): Map<string, Uint8Array> {
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) readTree(p, base, out);
    else out.set(relative(base, p).split("\\").join("/"), new Uint8Array(readFileSync(p)));
  }
  return out;
}

/** The files of a folder as a page gets them: Blobs by relative path. */
function blobFiles(dir: string): PathFile[] {
  return [...readTree(dir)].map(([path, bytes]) => ({ path, file: new Blob([bytes as BlobPart]) }));
}

/** An output file's bytes, its segments read back to back through `files`. */
async function assemble(files: FileAccess, f: MergedModelFile): Promise<Uint8Array> {
  const out = new Uint8Array(f.size);
  let pos = 0;
  for (const s of f.segments) {
    const bytes = s.kind === "bytes" ? s.bytes : await files.read(s.path, { offset: s.offset, length: s.length });
    out.set(bytes, pos);
    pos += bytes.byteLength;
  }
  expect(pos).toBe(f.size);
  return out;
}

/** `vera merge MODEL ADAPTER -o OUT/<name> --backend reference`, then the files it wrote. */
function veraMerge(model: string, adapter: string, extra: string[] = []): Map<string, Uint8Array> {
  const out = fresh();
  const name = model.split(/[\\/]/).pop()!;
  const r = spawnSync(
    process.execPath,
    [CLI, "merge", model, adapter, "-o", join(out, name), "--backend", "reference", "--no-fsync", ...extra],
    { encoding: "utf8" },
  );
  expect(r.stderr + r.stdout).not.toMatch(/^vera: /m);
  expect(r.status).toBe(0);
  return readTree(out);
}

interface Case {
  name: string;
  dir: string;
  model: string;
  adapter: string;
  untie?: boolean;
  /** Through Blobs (as the page), else through the disk's FileAccess. */
  blobs?: boolean;
}

const CASES: Case[] = [
  {
    name: "external data, PEFT folder",
    dir: join(ONNX, "llama-dynamo"),
    model: "model.onnx",
    adapter: join(ONNX, "adapters", "llama"),
    blobs: true,
  },
  {
    name: "inline weights (legacy export)",
    dir: join(ONNX, "legacy-llama-folded"),
    model: "model.onnx",
    adapter: join(ONNX, "adapters", "tiny-llama"),
  },
  {
    name: "tied weights untied into appended copies",
    dir: join(ONNX, "legacy-llama-unfolded-wrapped"),
    model: "model.onnx",
    adapter: join(ONNX, "adapters", "tiny-llama-head"),
    untie: true,
    blobs: true,
  },
  {
    name: "zoo roberta: a classifier head (modules_to_save) carried",
    dir: join(ZOO, "roberta"),
    model: "model.onnx",
    adapter: join(ZOO, "roberta", "adapter"),
    blobs: true,
  },
  {
    name: "zoo roberta, legacy export",
    dir: join(ZOO, "roberta"),
    model: "legacy.onnx",
    adapter: join(ZOO, "roberta", "adapter"),
  },
  {
    name: "zoo distilbert: a classifier head carried",
    dir: join(ZOO, "distilbert"),
    model: "model.onnx",
    adapter: join(ZOO, "distilbert", "adapter"),
  },
];

describe("mergeModelFiles: the bytes of vera merge", () => {
  for (const c of CASES)
    it(c.name, async () => {
      const want = veraMerge(join(c.dir, c.model), c.adapter, c.untie ? ["--untie"] : []);
      const files = c.blobs ? pathFileAccess(blobFiles(c.dir)) : nodeFileAccess();
      const model = c.blobs ? c.model : join(c.dir, c.model);
      const adapterFiles = c.blobs ? pathFileAccess(blobFiles(c.adapter)) : nodeFileAccess();
      const events: string[] = [];
      const got = await mergeModelFiles({
        files,
        model,
        adapter: { source: { files: adapterFiles, path: c.blobs ? "" : c.adapter } },
        backend: createReferenceBackend(),
        ...(c.untie ? { untie: true } : {}),
        onProgress: (e) => events.push(e.type),
      });
      expect(got.container).toBe("onnx");
      expect(events[0]).toBe("planned");
      expect(events.at(-1)).toBe("done");
      expect(got.files.map((f) => f.path).sort()).toEqual([...want.keys()].sort());
      // models with external data: the data file's unchanged bytes are ranges of the input, never copied
      if (c.dir.endsWith("llama-dynamo"))
        expect(got.files[1]!.segments.some((s) => s.kind === "input" && s.length > 0)).toBe(true);
      for (const f of got.files) {
        const bytes = await assemble(files, f);
        const w = want.get(f.path)!;
        expect(bytes.length, f.path).toBe(w.length);
        expect(Buffer.compare(Buffer.from(bytes), Buffer.from(w)), f.path).toBe(0);
      }
      expect(got.report.backend).toBe("reference");
      expect(got.report.modules.length).toBeGreaterThan(0);
    });

  it("the classifier head in the merged model is the adapter's (roberta), as the report says", async () => {
    const dir = join(ZOO, "roberta");
    const got = await mergeModelFiles({
      files: pathFileAccess(blobFiles(dir)),
      model: "model.onnx",
      adapter: { source: { files: pathFileAccess(blobFiles(join(dir, "adapter"))), path: "" } },
      backend: createReferenceBackend(),
    });
    const heads = got.report.carried.filter((c) => c.kind === "modules_to_save");
    expect(heads.length).toBeGreaterThan(0);
    const head = await assemble(pathFileAccess(blobFiles(dir)), got.files[0]!);
    const merged = readOnnxModel({ bytes: head });
    const baseBytes = new Uint8Array(readFileSync(join(dir, "model.onnx")));
    const base = readOnnxModel({ bytes: baseBytes });
    const adapter = parseSafetensors(new Uint8Array(readFileSync(join(dir, "adapter", "adapter_model.safetensors"))));
    const valuesOf = (m: OnnxModel, bytes: Uint8Array, name: string): number[] | undefined => {
      const t = m.graphs[0]!.initializers.find((x) => x.name === name);
      return t && [...new Float32Array(readInlineValues(bytes, t, "F32").slice().buffer)];
    };
    expect(heads.map((h) => h.param).sort()).toEqual([
      "classifier.dense.bias",
      "classifier.dense.weight",
      "classifier.out_proj.bias",
      "classifier.out_proj.weight",
    ]);
    for (const h of heads) {
      expect(h.transposed).toBe(false);
      const want = [...new Float32Array(tensorBytes(adapter, h.tensor).slice().buffer)];
      expect(valuesOf(merged, head, h.target), h.tensor).toEqual(want);
      // the exporter dropped the biases (added to the model); the weights were the base's, now the adapter's
      if (h.added) expect(valuesOf(base, baseBytes, h.target)).toBeUndefined();
      else expect(valuesOf(base, baseBytes, h.target)).not.toEqual(want);
    }
  });
});

describe("mergeModelFiles into GGUF: the bytes of vera merge", () => {
  const GGUF = join(ROOT, "fixtures", "gguf");
  const cases = [
    {
      name: "llama (q/k rows permuted)",
      dir: join(GGUF, "llama"),
      model: "base-f32.gguf",
      adapter: join(GGUF, "vera"),
    },
    { name: "qwen2", dir: join(GGUF, "qwen2"), model: "base-f32.gguf", adapter: join(GGUF, "qwen2", "vera") },
    { name: "zoo llama", dir: join(ZOO, "llama"), model: "base.gguf", adapter: join(ZOO, "llama", "adapter") },
  ];
  for (const c of cases)
    it(c.name, async () => {
      const want = veraMerge(join(c.dir, c.model), c.adapter);
      const files = pathFileAccess([{ path: c.model, file: new Blob([readFileSync(join(c.dir, c.model))]) }]);
      const got = await mergeModelFiles({
        files,
        model: c.model,
        adapter: { source: { files: pathFileAccess(blobFiles(c.adapter)), path: "" } },
        backend: createReferenceBackend(),
      });
      expect(got.container).toBe("gguf");
      expect(got.files.map((f) => f.path)).toEqual([...want.keys()]);
      const bytes = await assemble(files, got.files[0]!);
      expect(Buffer.compare(Buffer.from(bytes), Buffer.from(want.get(c.model)!))).toBe(0);
      expect(got.report.weights).toBeGreaterThan(0);
    });

  it("refuses --untie for GGUF (ARG_INVALID) instead of ignoring it", async () => {
    const e = await mergeModelFiles({
      files: nodeFileAccess(),
      model: join(GGUF, "llama", "base-f32.gguf"),
      adapter: { source: { files: nodeFileAccess(), path: join(GGUF, "vera") } },
      backend: createReferenceBackend(),
      untie: true,
    }).catch((x: unknown) => x);
    expect(isVeraError(e) && e.code).toBe("ARG_INVALID");
  });
});

describe("mergeModelFiles into safetensors checkpoints: the bytes of vera merge", () => {
  const ST = join(ROOT, "fixtures", "safetensors");
  const cases = [
    {
      name: "llama, 3 shards and an index (f32)",
      dir: join(ST, "llama-f32", "base"),
      adapter: join(ST, "llama-f32", "adapter"),
    },
    { name: "llama (bf16)", dir: join(ST, "llama-bf16", "base"), adapter: join(ST, "llama-bf16", "adapter") },
    { name: "gpt2 (Conv1D)", dir: join(ST, "gpt2-f32", "base"), adapter: join(ST, "gpt2-f32", "adapter") },
    {
      name: "zoo roberta: the classifier head carried",
      dir: join(ZOO, "roberta", "base"),
      adapter: join(ZOO, "roberta", "adapter"),
    },
  ];
  for (const c of cases)
    it(c.name, async () => {
      const out = fresh();
      const r = spawnSync(
        process.execPath,
        [CLI, "merge", c.dir, c.adapter, "-o", join(out, "m"), "--backend", "reference", "--no-fsync"],
        { encoding: "utf8" },
      );
      expect(r.status, r.stderr).toBe(0);
      const want = readTree(join(out, "m"));
      const files = pathFileAccess(blobFiles(c.dir));
      const got = await mergeModelFiles({
        files,
        model: "",
        adapter: { source: { files: pathFileAccess(blobFiles(c.adapter)), path: "" } },
        backend: createReferenceBackend(),
      });
      expect(got.container).toBe("checkpoint");
      expect(got.files.map((f) => f.path).sort()).toEqual([...want.keys()].sort());
      for (const f of got.files) {
        const bytes = await assemble(files, f);
        expect(Buffer.compare(Buffer.from(bytes), Buffer.from(want.get(f.path)!)), f.path).toBe(0);
      }
      if (c.dir.includes("roberta"))
        expect(got.report.carried.map((x) => x.param)).toContain("classifier.out_proj.weight");
    });

  it("a single .safetensors file", async () => {
    const dir = join(ZOO, "roberta", "base");
    const out = fresh();
    const model = join(dir, "model.safetensors");
    const adapter = join(ZOO, "roberta", "adapter");
    const r = spawnSync(
      process.execPath,
      [CLI, "merge", model, adapter, "-o", join(out, "merged.safetensors"), "--backend", "reference", "--no-fsync"],
      { encoding: "utf8" },
    );
    expect(r.status, r.stderr).toBe(0);
    const got = await mergeModelFiles({
      files: nodeFileAccess(),
      model,
      adapter: { source: { files: nodeFileAccess(), path: adapter } },
      backend: createReferenceBackend(),
    });
    expect(got.files.map((f) => f.path)).toEqual(["model.safetensors"]);
    const bytes = await assemble(nodeFileAccess(), got.files[0]!);
    expect(Buffer.compare(Buffer.from(bytes), readFileSync(join(out, "merged.safetensors")))).toBe(0);
  });
});

describe("the container is found from the content, not the name", () => {
  const fa = nodeFileAccess();
  it("ONNX, GGUF, a safetensors file and a checkpoint folder; a name that lies changes nothing", async () => {
    const dir = fresh();
    copyFileSync(join(ONNX, "legacy-llama-folded", "model.onnx"), join(dir, "model.gguf"));
    copyFileSync(join(ZOO, "roberta", "base", "model.safetensors"), join(dir, "weights.onnx"));
    const gguf = readdirSync(join(ROOT, "fixtures", "gguf")).find((f) => f.endsWith(".gguf"))!;
    copyFileSync(join(ROOT, "fixtures", "gguf", gguf), join(dir, "model.safetensors"));
    writeFileSync(join(dir, "notes.onnx"), "just text");
    expect(await detectModelContainer({ files: fa, path: join(dir, "model.gguf") })).toBe("onnx");
    expect(await detectModelContainer({ files: fa, path: join(dir, "weights.onnx") })).toBe("checkpoint");
    expect(await detectModelContainer({ files: fa, path: join(dir, "model.safetensors") })).toBe("gguf");
    expect(await detectModelContainer({ files: fa, path: join(ZOO, "roberta", "base") })).toBe("checkpoint");
    expect(await detectModelContainer({ files: fa, path: join(dir, "notes.onnx") })).toBeUndefined();
    await expect(detectModelContainer({ files: fa, path: join(dir, "missing") })).rejects.toMatchObject({
      code: "IO_NOT_FOUND",
    });
  });

  it("mergeModel merges an ONNX model whatever its name, into vera merge's bytes", async () => {
    const dir = fresh();
    for (const f of readdirSync(join(ONNX, "llama-dynamo")))
      copyFileSync(join(ONNX, "llama-dynamo", f), join(dir, f === "model.onnx" ? "model.bin" : f));
    const out = fresh();
    const report = await mergeModel({
      model: join(dir, "model.bin"),
      adapter: join(ONNX, "adapters", "llama"),
      output: join(out, "model.onnx"),
      backend: createReferenceBackend(),
      durable: false,
    });
    expect(report.weights).toBe(14);
    const want = veraMerge(join(ONNX, "llama-dynamo", "model.onnx"), join(ONNX, "adapters", "llama"));
    for (const [name, bytes] of want)
      expect(Buffer.compare(Buffer.from(readFileSync(join(out, name))), Buffer.from(bytes)), name).toBe(0);
  });

  it("refuses what it cannot merge with a typed error, producing nothing", async () => {
    const dir = fresh();
    writeFileSync(join(dir, "notes.onnx"), "just text");
    const e = await mergeModelFiles({
      files: nodeFileAccess(),
      model: join(dir, "notes.onnx"),
      adapter: { source: { files: nodeFileAccess(), path: join(ZOO, "roberta", "adapter") } },
      backend: createReferenceBackend(),
    }).catch((x: unknown) => x);
    expect(isVeraError(e) && e.code).toBe("MERGE_CONTAINER_UNKNOWN");
    const u = await mergeModel({
      model: join(ZOO, "roberta", "base"),
      adapter: join(ZOO, "roberta", "adapter"),
      output: join(fresh(), "out"),
      untie: true,
    }).catch((x: unknown) => x);
    expect(isVeraError(u) && u.code).toBe("ARG_INVALID");
    // a file whose content is no container, whatever its name: refused as such, nothing written
    writeFileSync(join(dir, "weights.bin"), "neither ONNX, safetensors nor GGUF");
    const outDir = fresh();
    const k = await mergeModel({
      model: join(dir, "weights.bin"),
      adapter: join(ZOO, "roberta", "adapter"),
      output: join(outDir, "merged.bin"),
    }).catch((x: unknown) => x);
    expect(isVeraError(k) && k.code).toBe("MERGE_CONTAINER_UNKNOWN");
    expect(isVeraError(k) && k.message).toContain("no ONNX model, safetensors file or GGUF file");
    expect(readdirSync(outDir)).toEqual([]);
  });
});

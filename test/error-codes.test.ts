/**
 * The error codes are one closed set: every layer's code table (src/errors.ts, src/hub/errors.ts and each
 * src/<layer>/error-codes.ts), each code documented, listed in the README, and given an exit status by the
 * CLI's table (src/cli/exit-codes.ts), which must compile for every code.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import ts from "typescript";
import { describe, expect, it } from "vitest";
import { EXIT_CODES, exitCodeOf } from "../src/cli/exit-codes.js";

const ROOT = resolve(__dirname, "..");
const SRC = join(ROOT, "src");

/** Every file holding a code table: the core's, the Hub's and each layer's error-codes.ts. */
function tableFiles(dir: string = SRC): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) out.push(...tableFiles(p));
    else if (e === "error-codes.ts") out.push(p);
  }
  return dir === SRC ? [join(SRC, "errors.ts"), join(SRC, "hub", "errors.ts"), ...out].sort() : out;
}

interface Table {
  file: string;
  name: string;
  codes: Record<string, string>;
}

async function loadTables(): Promise<Table[]> {
  const tables: Table[] = [];
  for (const file of tableFiles()) {
    const mod = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
    for (const [name, value] of Object.entries(mod))
      if (/ErrorCode$/.test(name) && typeof value === "object" && value !== null)
        tables.push({ file: relative(ROOT, file), name, codes: value as Record<string, string> });
  }
  return tables;
}

/** The codes of a table that carry a JSDoc comment, read from the table's source. */
function documentedInSource(file: string, table: string): Set<string> {
  const sf = ts.createSourceFile(file, readFileSync(join(ROOT, file), "utf8"), ts.ScriptTarget.ES2022, true);
  const out = new Set<string>();
  const visit = (n: ts.Node): void => {
    if (ts.isVariableDeclaration(n) && ts.isIdentifier(n.name) && n.name.text === table && n.initializer) {
      let init: ts.Expression = n.initializer;
      while (ts.isAsExpression(init) || ts.isSatisfiesExpression(init)) init = init.expression;
      if (ts.isObjectLiteralExpression(init))
        for (const p of init.properties)
          if (ts.isPropertyAssignment(p) && ts.getJSDocCommentsAndTags(p).length > 0) out.add(p.name.getText(sf));
    }
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return out;
}

/** The codes spec/FORMAT.md section 9 lists. */
function specCodes(): Set<string> {
  const spec = readFileSync(join(ROOT, "spec", "FORMAT.md"), "utf8");
  const s9 = spec.slice(spec.indexOf("## 9."), spec.indexOf("## 10."));
  return new Set(s9.match(/\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b/g) ?? []);
}

/** The README's "Error codes" section. */
function readmeSection(): string {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  const start = readme.indexOf("### Error codes");
  expect(start, "README.md has an '### Error codes' section").toBeGreaterThan(0);
  const end = readme.indexOf("\n## ", start);
  return readme.slice(start, end < 0 ? undefined : end);
}

/**
 * Every code released in 0.1.0. A released code never disappears and never changes its string; new
 * codes need no line here.
 */
const RELEASED = `ST_TRUNCATED ST_HEADER_TOO_LARGE ST_HEADER_UTF8 ST_HEADER_JSON ST_HEADER_START ST_DUPLICATE_KEY
ST_METADATA ST_TENSOR_ENTRY ST_DTYPE ST_SHAPE ST_SIZE_OVERFLOW ST_OFFSETS ST_SIZE_MISMATCH ST_COVERAGE VERA_NOT_VERA
VERA_METADATA_JSON VERA_VERSION VERA_MAJOR_UNSUPPORTED VERA_SCHEMA VERA_PRNG_UNKNOWN VERA_ARITHMETIC VERA_SEED
VERA_ROUNDING VERA_RANK VERA_MODULE_NAME VERA_MODULE_DUPLICATE VERA_MODULE_ORDER VERA_MODULE_DIMS VERA_MODULE_RANGE
VERA_MAX_DIMS VERA_LAYOUT VERA_TENSOR_MISSING VERA_TENSOR_UNEXPECTED VERA_TENSOR_DTYPE VERA_VECTOR_LENGTH VERA_NONFINITE
VERA_PROJECTION_SHAPE VERA_DIGEST_FORMAT VERA_DIGEST_MISMATCH VERA_NOT_CANONICAL ARG_INVALID IO_ERROR IO_NOT_FOUND
IO_UNSAFE_PATH PEFT_CONFIG_MISSING PEFT_CONFIG_INVALID PEFT_NOT_VERA PEFT_PICKLE_REFUSED PEFT_WEIGHTS_MISSING
PEFT_LAMBDA_UNPAIRED PEFT_VECTOR_LENGTH PEFT_TENSOR_DTYPE PEFT_TENSOR_UNEXPECTED PEFT_PROJECTION_SHAPE
PEFT_PROJECTION_MISSING PEFT_PROJECTION_NOT_REGENERABLE PEFT_BASE_REQUIRED PEFT_BASE_MODULE_MISSING PEFT_BASE_AMBIGUOUS
PEFT_BASE_SHAPE PEFT_BASE_UNSUPPORTED PEFT_MODULE_NAME PEFT_ADAPTER_NOT_FOUND PEFT_COMPAT PEFT_LORA_RANK ONNX_PARSE
ONNX_NO_GRAPH ONNX_INVALID ONNX_MODULE_NOT_FOUND ONNX_AMBIGUOUS ONNX_SHARED_WEIGHT ONNX_QUANTIZED ONNX_SHAPE_MISMATCH
ONNX_DTYPE_UNSUPPORTED ONNX_STORAGE ONNX_EXTERNAL_DATA ONNX_FUSED_SPLIT ONNX_OVERLAP ONNX_MAPPING ONNX_TOO_LARGE
SERVE_NOT_GRAFTED SERVE_SPEC_MISMATCH SERVE_MODULE_NOT_GRAFTED SERVE_GRAPH_UNSUPPORTED SERVE_FEEDS SERVE_ADAPTER_FILE
GGUF_TRUNCATED GGUF_MAGIC GGUF_VERSION GGUF_COUNT GGUF_VALUE_TYPE GGUF_STRING GGUF_DUPLICATE GGUF_ALIGNMENT
GGUF_TENSOR_TYPE GGUF_TENSOR_SHAPE GGUF_TENSOR_RANGE GGUF_UNKNOWN_ARCHITECTURE GGUF_MAPPING GGUF_MODULE_UNSUPPORTED
GGUF_BASE_MISMATCH GGUF_QUANT_BLOCK GGUF_QUANTIZED GGUF_SPLIT MERGE_OVERFLOW COMPUTE_TASK_INVALID
COMPUTE_UNKNOWN_BACKEND COMPUTE_UNAVAILABLE COMPUTE_FAILED MERGE_OUTPUT_CONFLICT MERGE_ABORTED MERGE_DATA_OVERLAP
MERGE_DATA_RANGE MERGE_COPY_RACE MERGE_CHECKPOINT_INDEX MERGE_CONTAINER_UNKNOWN MERGE_WEIGHT_NOT_FOUND MERGE_WEIGHT_SHAPE
MERGE_WEIGHT_DTYPE MERGE_INTERRUPTED MERGE_JOURNAL_CORRUPT HUB_TOKEN_MISSING HUB_TOKEN_INVALID HUB_UNAUTHORIZED
HUB_FORBIDDEN HUB_GATED HUB_REPO_NOT_FOUND HUB_REVISION_NOT_FOUND HUB_FILE_NOT_FOUND HUB_CONFLICT HUB_RATE_LIMITED
HUB_SERVER_ERROR HUB_HTTP_ERROR HUB_NETWORK HUB_INTEGRITY HUB_BAD_RESPONSE HUB_COMMIT_UNCERTAIN HUB_OFFLINE_MISS HUB_CACHE
HUB_PEFT_UNAVAILABLE HUB_ABORTED`.split(/\s+/);

/** Type-check src/cli/exit-codes.ts (and what it imports), its text optionally replaced. */
function typeCheckExitTable(replace?: (text: string) => string): string[] {
  const file = join(SRC, "cli", "exit-codes.ts");
  const options: ts.CompilerOptions = {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    lib: ["lib.es2022.d.ts"],
    strict: true,
    noEmit: true,
    types: [],
    skipLibCheck: true,
  };
  const host = ts.createCompilerHost(options);
  const readFile = host.readFile.bind(host);
  const getSourceFile = host.getSourceFile.bind(host);
  const patched = (name: string): string | undefined =>
    replace && resolve(name) === file ? replace(readFileSync(file, "utf8")) : undefined;
  host.readFile = (name) => patched(name) ?? readFile(name);
  host.getSourceFile = (name, lang, onError, create) => {
    const text = patched(name);
    return text !== undefined
      ? ts.createSourceFile(name, text, lang, true)
      : getSourceFile(name, lang, onError, create);
  };
  const program = ts.createProgram([file], options, host);
  return ts
    .getPreEmitDiagnostics(program)
    .map(
      (d) =>
        `${d.file ? relative(ROOT, d.file.fileName) : ""}: ${ts.flattenDiagnosticMessageText(d.messageText, "\n")}`,
    );
}

describe("error codes", () => {
  it("finds every code table (one per layer that throws)", async () => {
    const tables = await loadTables();
    expect(tables.map((t) => t.name).sort()).toEqual(
      expect.arrayContaining([
        "ComputeErrorCode",
        "ErrorCode",
        "GgufErrorCode",
        "HubErrorCode",
        "MergeErrorCode",
        "OnnxErrorCode",
        "PeftErrorCode",
        "ServeErrorCode",
      ]),
    );
    for (const f of tableFiles()) expect(existsSync(f)).toBe(true);
  });

  it("each code's string is its name, and no code is in two tables", async () => {
    const seen = new Map<string, string>();
    for (const t of await loadTables())
      for (const [k, v] of Object.entries(t.codes)) {
        expect(v, `${t.name}.${k}`).toBe(k);
        expect(seen.get(k), `${k} is in ${seen.get(k)} and ${t.name}`).toBeUndefined();
        seen.set(k, t.name);
      }
  });

  it("every released code still exists", async () => {
    const all = new Set((await loadTables()).flatMap((t) => Object.keys(t.codes)));
    expect(RELEASED.filter((c) => !all.has(c))).toEqual([]);
  });

  it("every code is documented: a JSDoc comment in its table, or a rule in spec/FORMAT.md section 9", async () => {
    const spec = specCodes();
    const missing: string[] = [];
    for (const t of await loadTables()) {
      const doc = documentedInSource(t.file, t.name);
      for (const k of Object.keys(t.codes)) if (!doc.has(k) && !spec.has(k)) missing.push(`${t.file}: ${k}`);
    }
    expect(missing, "codes without a JSDoc comment in their table").toEqual([]);
  });

  it("the README's error code section lists every code (ST_* and VERA_* through the spec) and no other", async () => {
    const section = readmeSection();
    const all = (await loadTables()).flatMap((t) => Object.keys(t.codes));
    const listed = new Set(section.match(/\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b/g) ?? []);
    const spec = specCodes();
    expect(
      all.filter((c) => !listed.has(c) && !(/^(ST|VERA)_/.test(c) && spec.has(c))),
      "codes to add to the table under README.md's '### Error codes'",
    ).toEqual([]);
    expect(
      [...listed].filter((c) => !all.includes(c)),
      "README.md names codes no table has",
    ).toEqual([]);
  });

  it("the exit-code table has exactly the codes of the tables, each exiting 1 or 2", async () => {
    const all = (await loadTables()).flatMap((t) => Object.keys(t.codes)).sort();
    expect(Object.keys(EXIT_CODES).sort(), "src/cli/exit-codes.ts needs one line per code").toEqual(all);
    for (const [k, v] of Object.entries(EXIT_CODES)) expect([1, 2], k).toContain(v);
  });

  it("the README names exactly the codes that exit 2", () => {
    const section = readmeSection();
    const sentence = section.slice(section.indexOf("`vera` exits 2"));
    const named = (sentence.slice(0, sentence.indexOf("every other")).match(/`([A-Z][A-Z0-9_]+)`/g) ?? []).map((s) =>
      s.slice(1, -1),
    );
    const two = Object.entries(EXIT_CODES)
      .filter(([, v]) => v === 2)
      .map(([k]) => k);
    expect(named.sort()).toEqual(two.sort());
  });

  it("exitCodeOf reads the table, and an unknown code (another copy of verakit) is invalid input", () => {
    expect(exitCodeOf("IO_NOT_FOUND")).toBe(2);
    expect(exitCodeOf("HUB_NETWORK")).toBe(2);
    expect(exitCodeOf("VERA_DIGEST_MISMATCH")).toBe(1);
    expect(exitCodeOf("MERGE_INTERRUPTED")).toBe(1);
    expect(exitCodeOf("NOT_A_CODE")).toBe(1);
    expect(exitCodeOf("toString")).toBe(1);
  });

  it("the exit-code table type-checks, and fails to when a code has no exit status", () => {
    expect(typeCheckExitTable()).toEqual([]);
    const without = typeCheckExitTable((text) => text.replace(/^ {2}HUB_ABORTED: INPUT,\n/m, ""));
    expect(without.join("\n")).toMatch(/HUB_ABORTED/);
    const extra = typeCheckExitTable((text) =>
      text.replace(/^ {2}HUB_ABORTED: INPUT,\n/m, "$&  HUB_NOT_A_CODE: IO,\n"),
    );
    expect(extra.join("\n")).toMatch(/HUB_NOT_A_CODE/);
  }, 120_000);
});

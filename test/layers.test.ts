/**
 * The layer rules, checked on the real import graph of src/ (every import, export-from and import() that
 * TypeScript's own scanner finds, type-only imports included). One table, {@link LAYERS}, says what each layer
 * may import and whether it runs in a browser; the tests check every edge of the graph against it, that src
 * has no import cycle, that every package imported is declared in package.json, that the build's entries and
 * package.json `sideEffects` agree with the table and with the modules' top-level code.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { builtinModules } from "node:module";
import { dirname, join, relative, resolve } from "node:path";
import { build } from "esbuild";
import ts from "typescript";
import { describe, expect, it } from "vitest";
import { useTempDirs } from "./temp-helpers.js";
import { browserEntries, cliEntry, entries } from "../tsup.config.js";

const ROOT = resolve(__dirname, "..");
const SRC = join(ROOT, "src");

interface LayerRule {
  /** Runs in a browser: imports no Node built-in and only the packages below. */
  browser: boolean;
  /** The layers it may import besides itself (every layer may import errors.ts, dtypes.ts and any code table). */
  imports: string[];
  /** The packages it may import. */
  packages?: string[];
}

/**
 * The layers of src/: a folder, a folder's `node/` subfolder (its Node edge), a folder's `core/` subfolder (its
 * browser-safe core, where the folder itself is the Node edge: merge), or a file at the root. Dependencies
 * point downwards: the pure core (util, numeric, wasm, safetensors, projections, format, onnx, peft, gguf, serve)
 * imports no edge; nothing imports cli.
 */
const LAYERS: Record<string, LayerRule> = {
  errors: { browser: true, imports: [] },
  dtypes: { browser: true, imports: [] },
  util: { browser: true, imports: [] },
  numeric: { browser: true, imports: [] },
  wasm: { browser: true, imports: [] },
  locate: { browser: true, imports: [] },
  safetensors: { browser: true, imports: ["util"] },
  projections: { browser: true, imports: ["format", "numeric", "wasm", "util"] },
  format: { browser: true, imports: ["safetensors", "projections", "numeric", "util"] },
  onnx: { browser: true, imports: ["locate", "util"] },
  peft: { browser: true, imports: ["format", "locate", "safetensors", "projections", "onnx", "numeric", "util"] },
  gguf: { browser: true, imports: ["format", "locate", "peft", "numeric", "util"] },
  serve: {
    browser: true,
    imports: ["format", "locate", "onnx", "peft", "projections", "numeric", "util"],
    packages: ["flatbuffers"],
  },
  index: { browser: true, imports: ["format", "numeric", "peft", "projections", "safetensors", "util"] },
  compute: { browser: true, imports: ["format", "onnx", "projections", "numeric", "wasm"] },
  hub: { browser: true, imports: ["format", "peft", "safetensors", "util"], packages: ["@huggingface/hub"] },
  "compute/node": { browser: false, imports: ["compute"], packages: ["onnxruntime-node", "webgpu"] },
  node: { browser: false, imports: ["compute/node", "format", "gguf", "onnx", "peft", "safetensors", "util"] },
  "merge/core": {
    browser: true,
    imports: ["compute", "format", "gguf", "locate", "numeric", "onnx", "peft", "safetensors", "util"],
  },
  merge: {
    browser: false,
    imports: [
      "compute",
      "format",
      "gguf",
      "locate",
      "merge/core",
      "node",
      "numeric",
      "onnx",
      "peft",
      "safetensors",
      "util",
    ],
  },
  "serve/node": { browser: false, imports: ["format", "merge", "merge/core", "node", "onnx", "peft", "serve"] },
  "hub/node": { browser: false, imports: ["format", "hub", "node", "util"] },
  cli: {
    browser: false,
    imports: [
      "compute",
      "compute/node",
      "format",
      "gguf",
      "hub",
      "hub/node",
      "merge",
      "merge/core",
      "node",
      "onnx",
      "peft",
      "projections",
      "safetensors",
      "serve",
      "serve/node",
    ],
    packages: ["onnxruntime-node"],
  },
};
/** Files every layer may import: leaves that import nothing of src (checked below). */
const LEAF_FILES = /^(errors\.ts|dtypes\.ts|[a-z]+\/error-codes\.ts|hub\/errors\.ts)$/;
/**
 * Modules with top-level code other than declarations whose effect needs no `sideEffects` entry, each with why.
 * A build entry with such code is listed in package.json `sideEffects` instead (checked below).
 */
const EFFECTS_KEPT_WITH_EXPORTS: Record<string, string> = {
  "node/files.ts": "registers node:crypto's SHA-256, as node/index.ts does; runs whenever its exports are used",
};
/** Known violations, each to be removed when its fix lands. An entry is `from -> to` (paths under src/). */
const ALLOWED: ReadonlyArray<string> = [];
/** Known cycles (the files of each, sorted), each to be removed when its fix lands. */
const ALLOWED_CYCLES: ReadonlyArray<string> = [];

function walk(dir: string, exts: RegExp, skip: RegExp = /node_modules|dist/): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    if (skip.test(e)) continue;
    if (statSync(p).isDirectory()) out.push(...walk(p, exts, skip));
    else if (exts.test(e)) out.push(p);
  }
  return out;
}

/** Every module specifier a file imports (static, re-export, dynamic, import types). */
function importsOf(file: string): string[] {
  const info = ts.preProcessFile(readFileSync(file, "utf8"), true, true);
  return info.importedFiles.map((f) => f.fileName);
}

/** A relative specifier to the file it names (`./x.js` is `./x.ts` in source). */
function resolveLocal(from: string, spec: string): string | undefined {
  const base = resolve(dirname(from), spec);
  const stem = base.replace(/\.(js|mjs|cjs|ts)$/, "");
  for (const c of [base, `${stem}.ts`, `${stem}.mjs`, `${stem}.js`, join(base, "index.ts")])
    if (existsSync(c) && statSync(c).isFile()) return c;
  return undefined;
}

/** The package a bare specifier belongs to (`@scope/name/sub` -> `@scope/name`), or undefined for built-ins. */
function packageOf(spec: string): string | undefined {
  if (spec.startsWith("node:") || builtinModules.includes(spec.split("/")[0]!)) return undefined;
  const parts = spec.split("/");
  return spec.startsWith("@") ? `${parts[0]}/${parts[1]}` : parts[0];
}

const rel = (p: string) => relative(SRC, p).split("\\").join("/");
const srcFiles = walk(SRC, /\.ts$/);
const graph = new Map<string, string[]>();
const bare = new Map<string, string[]>();
for (const f of srcFiles) {
  const local: string[] = [];
  const ext: string[] = [];
  for (const spec of importsOf(f)) {
    if (spec.startsWith(".")) {
      const to = resolveLocal(f, spec);
      if (!to) throw new Error(`${rel(f)} imports ${spec}, which is not a file`);
      local.push(rel(to));
    } else ext.push(spec);
  }
  graph.set(rel(f), local);
  bare.set(rel(f), ext);
}
const top = (p: string) => p.split("/")[0]!;
/**
 * The layer of a file under src/: its folder, `<folder>/node` for a folder's Node edge, `<folder>/core` for a
 * folder's pure core, or the root file's stem.
 */
const layerOf = (p: string): string => {
  const parts = p.split("/");
  if (parts.length === 1) return parts[0]!.replace(/\.ts$/, "");
  return (parts[1] === "node" || parts[1] === "core") && parts.length > 2 ? `${parts[0]}/${parts[1]}` : parts[0]!;
};

/** The import cycles of src/: Tarjan's strongly connected components of more than one file, as sorted lists. */
function findCycles(): string[] {
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const on = new Set<string>();
  const cycles: string[] = [];
  const visit = (v: string): void => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    on.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const comp: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        on.delete(w);
        comp.push(w);
      } while (w !== v);
      if (comp.length > 1 || (graph.get(v) ?? []).includes(v)) cycles.push(comp.sort().join(", "));
    }
  };
  for (const v of graph.keys()) if (!idx.has(v)) visit(v);
  return cycles;
}

describe("layer rules from the import graph of src/", () => {
  it("sees the whole graph (a sanity check of the scanner)", () => {
    expect(graph.size).toBeGreaterThan(100);
    expect(graph.get("index.ts")!.length).toBeGreaterThan(3);
    expect(bare.get("node/files.ts")!.some((s) => s.startsWith("node:"))).toBe(true);
  });

  it("every layer of src is in the table", () => {
    expect([...new Set([...graph.keys()].map(layerOf))].filter((l) => !(l in LAYERS)).sort()).toEqual([]);
    for (const [name, rule] of Object.entries(LAYERS))
      for (const to of rule.imports) expect(LAYERS, `${name} -> ${to}`).toHaveProperty([to]);
  });

  it("every import follows the table (layers, Node built-ins, packages)", () => {
    const bad: string[] = [];
    for (const [from, tos] of graph) {
      const layer = layerOf(from);
      for (const to of tos) {
        const target = layerOf(to);
        if (target === layer || LEAF_FILES.test(to) || LAYERS[layer]?.imports.includes(target)) continue;
        if (!ALLOWED.includes(`${from} -> ${to}`)) bad.push(`${from} -> ${to}`);
      }
    }
    for (const [from, specs] of bare) {
      const rule = LAYERS[layerOf(from)];
      for (const s of specs) {
        const pkg = packageOf(s);
        if (pkg === undefined ? rule?.browser !== false : !rule?.packages?.includes(pkg)) bad.push(`${from} -> ${s}`);
      }
    }
    expect(bad).toEqual([]);
  });

  it("the files every layer may import are leaves (they import nothing of src)", () => {
    const leaves = [...graph.keys()].filter((f) => LEAF_FILES.test(f));
    expect(leaves.length).toBeGreaterThan(7);
    for (const f of leaves)
      expect(
        graph.get(f)!.filter((to) => !LEAF_FILES.test(to)),
        f,
      ).toEqual([]);
  });

  it("the build's browser entries are exactly the entries of browser layers", () => {
    for (const [name, file] of Object.entries(entries)) {
      const rule = LAYERS[layerOf(relative(SRC, join(ROOT, file)).split("\\").join("/"))];
      expect(rule, name).toBeDefined();
      expect(browserEntries.includes(name), `${name} (${file})`).toBe(rule!.browser);
    }
  });

  it("every allowed violation still exists (remove it from the list when it is fixed)", () => {
    for (const a of ALLOWED) {
      const [from, to] = a.split(" -> ");
      expect(graph.get(from!) ?? [], a).toContain(to);
    }
    for (const c of ALLOWED_CYCLES) expect(findCycles(), c).toContain(c);
  });

  it("nothing outside src/cli imports src/cli", () => {
    expect(Object.entries(LAYERS).filter(([n, r]) => n !== "cli" && r.imports.includes("cli"))).toEqual([]);
    const bad = [...graph].flatMap(([from, tos]) =>
      top(from) === "cli" ? [] : tos.filter((t) => top(t) === "cli").map((t) => `${from} -> ${t}`),
    );
    expect(bad).toEqual([]);
  });

  it("src has no import cycle", () => {
    expect(findCycles().filter((c) => !ALLOWED_CYCLES.includes(c))).toEqual([]);
  });

  it("every package imported by src/, test/, bench/ or a config file is declared in package.json", () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as Record<string, Record<string, string>>;
    const declared = new Set(
      ["dependencies", "devDependencies", "optionalDependencies", "peerDependencies"].flatMap((k) =>
        Object.keys(pkg[k] ?? {}),
      ),
    );
    const files = [
      ...walk(SRC, /\.(ts|mjs|js)$/),
      ...walk(join(ROOT, "test"), /\.(ts|mjs|js)$/),
      ...walk(join(ROOT, "bench"), /\.(ts|mjs|js)$/, /node_modules|dist|results|out/),
      ...readdirSync(ROOT)
        .filter((f) => /\.config\.(ts|js|mjs)$/.test(f))
        .map((f) => join(ROOT, f)),
    ];
    const missing = new Set<string>();
    for (const f of files)
      for (const spec of importsOf(f)) {
        if (spec.startsWith(".") || spec.startsWith("/")) continue;
        const name = packageOf(spec);
        if (name !== undefined && name !== "verakit" && !declared.has(name))
          missing.add(`${name} (${relative(ROOT, f)})`);
      }
    expect([...missing]).toEqual([]);
  });
});

/** The files of src/ with top-level statements other than declarations (imports, exports, functions, ...). */
function filesWithTopLevelEffects(): string[] {
  const out: string[] = [];
  for (const f of srcFiles) {
    const sf = ts.createSourceFile(f, readFileSync(f, "utf8"), ts.ScriptTarget.Latest);
    const effect = sf.statements.some(
      (st) =>
        !(
          ts.isImportDeclaration(st) ||
          ts.isImportEqualsDeclaration(st) ||
          ts.isExportDeclaration(st) ||
          ts.isExportAssignment(st) ||
          ts.isFunctionDeclaration(st) ||
          ts.isClassDeclaration(st) ||
          ts.isInterfaceDeclaration(st) ||
          ts.isTypeAliasDeclaration(st) ||
          ts.isEnumDeclaration(st) ||
          ts.isModuleDeclaration(st) ||
          ts.isVariableStatement(st) ||
          ts.isEmptyStatement(st)
        ),
    );
    if (effect) out.push(rel(f));
  }
  return out.sort();
}

const topLevelEffects = filesWithTopLevelEffects();
const tempDir = useTempDirs("vera-side-effects-");

describe("package.json sideEffects", () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { sideEffects: unknown };
  /** The dist files of each build entry, by source file under src/. */
  const outputs = new Map<string, string[]>();
  for (const [name, file] of Object.entries(entries))
    outputs.set(relative(SRC, join(ROOT, file)), [`./dist/${name}.js`, `./dist/${name}.cjs`]);
  for (const [name, file] of Object.entries(cliEntry))
    outputs.set(relative(SRC, join(ROOT, file)), [`./dist/${name}.js`]);

  it("finds the modules with top-level effects (a sanity check of the scan)", () => {
    expect(topLevelEffects).toEqual(expect.arrayContaining(["node/index.ts", "cli/index.ts"]));
    expect(topLevelEffects).not.toContain("errors.ts");
  });

  it("lists exactly the build entries whose modules have top-level effects; every other such module says why", () => {
    expect(Array.isArray(pkg.sideEffects)).toBe(true);
    const expected: string[] = [];
    const unexplained: string[] = [];
    for (const f of topLevelEffects) {
      const out = outputs.get(f);
      if (out) expected.push(...out);
      else if (!(f in EFFECTS_KEPT_WITH_EXPORTS)) unexplained.push(f);
    }
    expect(unexplained).toEqual([]);
    expect([...(pkg.sideEffects as string[])].sort()).toEqual(expected.sort());
    for (const f of Object.keys(EFFECTS_KEPT_WITH_EXPORTS)) expect(topLevelEffects).toContain(f);
  });

  it('a bundler keeps `import "verakit/node"` (the built package, bundled by esbuild, registers node:crypto)', async () => {
    const dir = tempDir();
    mkdirSync(join(dir, "node_modules"));
    symlinkSync(ROOT, join(dir, "node_modules", "verakit"), "dir");
    writeFileSync(
      join(dir, "entry.mjs"),
      'import "verakit/node";\nimport { sha256Implementation } from "verakit";\nconsole.log(sha256Implementation().name);\n',
    );
    const r = await build({
      entryPoints: [join(dir, "entry.mjs")],
      bundle: true,
      platform: "node",
      format: "esm",
      write: false,
      logLevel: "silent",
      external: ["onnxruntime-node", "webgpu", "@huggingface/hub"],
    });
    writeFileSync(join(dir, "out.mjs"), r.outputFiles[0]!.text);
    const run = spawnSync(process.execPath, [join(dir, "out.mjs")], { encoding: "utf8" });
    expect(run.stderr).toBe("");
    expect(run.stdout.trim()).toBe("node:crypto");
  }, 60_000);

  it("the built verakit/node registers node:crypto's SHA-256 at its own top level (so importing it alone is enough)", () => {
    for (const out of outputs.get("node/index.ts")!) {
      const text = readFileSync(join(ROOT, out), "utf8");
      const sf = ts.createSourceFile(out, text, ts.ScriptTarget.Latest, true);
      const calls = sf.statements.filter((st) => ts.isExpressionStatement(st)).map((st) => st.getText(sf));
      expect(
        calls.some((c) => /\bregisterNodeSha256\(\)/.test(c)),
        out,
      ).toBe(true);
    }
  });
});

/**
 * The layer rules, checked on the real import graph of src/ (every import, export-from and import() that
 * TypeScript's own scanner finds, type-only imports included):
 * - the pure core never imports the Node/GPU/Hub edges or a Node/GPU package, so it bundles for browsers;
 * - nothing outside src/cli imports src/cli;
 * - src has no import cycle;
 * - every package that src/, test/, bench/ or a config file imports is declared in package.json.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { builtinModules } from "node:module";
import { dirname, join, relative, resolve } from "node:path";
import ts from "typescript";
import { describe, expect, it } from "vitest";

const ROOT = resolve(__dirname, "..");
const SRC = join(ROOT, "src");

/** The pure core: folders and files under src/ (serve/ and gguf/ included before they exist). */
const CORE = ["safetensors", "format", "projections", "peft", "onnx", "numeric", "util", "serve", "gguf"];
const CORE_FILES = ["errors.ts", "index.ts"];
/** What the core must not import: the edges of src/, and packages that need Node, a GPU or the network. */
const EDGES = ["node", "hub", "cli", "compute", "merge"];
const EDGE_PACKAGES = ["onnxruntime-node", "onnxruntime-web", "webgpu", "@huggingface/hub"];
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
/** A core folder's `node/` subfolder (e.g. serve/node/) is that folder's Node edge, like hub/node/. */
const isCore = (p: string) =>
  p.includes("/") ? CORE.includes(top(p)) && p.split("/")[1] !== "node" : CORE_FILES.includes(p);

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

  it("the pure core imports no edge folder and no Node, GPU or Hub package", () => {
    const bad: string[] = [];
    for (const [from, tos] of graph)
      if (isCore(from))
        for (const to of tos)
          if (EDGES.includes(top(to)) && !ALLOWED.includes(`${from} -> ${to}`)) bad.push(`${from} -> ${to}`);
    for (const [from, specs] of bare)
      if (isCore(from))
        for (const s of specs) {
          const pkg = packageOf(s);
          if (pkg === undefined || EDGE_PACKAGES.includes(pkg)) bad.push(`${from} -> ${s}`);
        }
    expect(bad).toEqual([]);
  });

  it("every allowed violation still exists (remove it from the list when it is fixed)", () => {
    for (const a of ALLOWED) {
      const [from, to] = a.split(" -> ");
      expect(graph.get(from!) ?? [], a).toContain(to);
    }
    for (const c of ALLOWED_CYCLES) expect(findCycles(), c).toContain(c);
  });

  it("nothing outside src/cli imports src/cli", () => {
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

// Builds the static page into web/dist with esbuild (one bundle step, no dev server needed) and
// enforces the size budget: the JavaScript that inspect/validate/convert load, gzipped, under 150 KB.
import { build } from "esbuild";
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "..");
const out = join(here, "dist");
const BUDGET = 150_000; // bytes, gzipped
/** The binary onnxruntime-web's bundled wasm build fetches at run time, served from web/dist/ort/. */
const ORT_FILES = ["ort-wasm-simd-threaded.wasm"];
const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
// Subpaths the page may use: the package's public, browser-safe entries.
const NODE_ONLY = new Set(["./node", "./merge/node", "./serve/node", "./hub/node"]);
// Subpaths whose source is not src/<subpath>/index.ts (tsup.config.ts `entries`): the merge core.
const SOURCES = { "./merge": "src/merge/core/index.ts" };
const allowed = new Set(Object.keys(pkg.exports).filter((k) => k !== "./package.json" && !NODE_ONLY.has(k)));

/**
 * esbuild plugin: `verakit` and `verakit/<subpath>` resolve to the public entry sources; files under
 * `pageDir` may import nothing else outside `pageDir` (no private module of src/).
 * @param {string} pageDir
 */
export function publicEntries(pageDir) {
  return {
    name: "verakit-public-entries",
    setup(b) {
      b.onResolve({ filter: /^verakit(\/.*)?$/ }, (args) => {
        const sub = args.path === "verakit" ? "." : `.${args.path.slice("verakit".length)}`;
        if (!allowed.has(sub))
          return {
            errors: [{ text: `${args.path} is not a public browser entry of verakit (${[...allowed].join(", ")})` }],
          };
        const entry = sub === "." ? "src/index.ts" : (SOURCES[sub] ?? `src/${sub.slice(2)}/index.ts`);
        return { path: join(root, entry) };
      });
      b.onResolve({ filter: /^(\.\.?\/|\/|[A-Za-z]:)/ }, (args) => {
        const target = resolve(args.resolveDir, args.path);
        const fromPage = args.importer.startsWith(pageDir + sep);
        if (fromPage && !target.startsWith(pageDir + sep))
          return {
            errors: [
              {
                text: `${relative(root, args.importer)} imports ${args.path}: the page may import only verakit's public entries`,
              },
            ],
          };
        return undefined;
      });
    },
  };
}

/** Bundle the page from `entry` into `outdir` (esbuild options of the site). */
export function bundlePage({ entry, outdir, pageDir }) {
  return build({
    entryPoints: { main: entry },
    bundle: true,
    splitting: true,
    format: "esm",
    platform: "browser",
    target: ["chrome114", "firefox120", "safari17"],
    minify: true,
    sourcemap: true,
    outdir,
    chunkNames: "chunks/[name]-[hash]",
    metafile: true,
    logLevel: "silent",
    plugins: [publicEntries(pageDir)],
  });
}

async function main() {
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  let res;
  try {
    res = await bundlePage({ entry: join(here, "src/main.ts"), outdir: out, pageDir: join(here, "src") });
  } catch (e) {
    for (const err of e.errors ?? [e])
      console.error(
        `error: ${err.text ?? err.message}${err.location ? ` (${err.location.file}:${err.location.line})` : ""}`,
      );
    process.exit(1);
  }
  const html = readFileSync(join(here, "index.html"), "utf8").replace("__VERSION__", pkg.version);
  writeFileSync(join(out, "index.html"), html);
  copyFileSync(join(here, "style.css"), join(out, "style.css"));
  // onnxruntime-web's WebAssembly runtime (single-threaded use; the page sets env.wasm.wasmPaths to ./ort/).
  const ortDist = join(root, "node_modules", "onnxruntime-web", "dist");
  mkdirSync(join(out, "ort"), { recursive: true });
  for (const f of ORT_FILES) copyFileSync(join(ortDist, f), join(out, "ort", f));

  // What loads before any merge: main.js and what it imports statically (dynamic imports excluded).
  const outputs = res.metafile.outputs;
  const key = (p) => relative(root, resolve(root, p)).split(sep).join("/");
  const mainKey = Object.keys(outputs).find((k) => outputs[k].entryPoint && k.endsWith("main.js"));
  const initial = new Set();
  const visit = (k) => {
    if (initial.has(k)) return;
    initial.add(k);
    for (const i of outputs[k].imports) if (i.kind === "import-statement") visit(i.path);
  };
  visit(mainKey);
  const gz = (k) => gzipSync(readFileSync(resolve(root, k)), { level: 9 }).length;
  let initialGz = 0;
  let lazyGz = 0;
  const rows = [];
  for (const k of Object.keys(outputs)) {
    if (!k.endsWith(".js")) continue;
    const g = gz(k);
    const first = initial.has(k);
    if (first) initialGz += g;
    else lazyGz += g;
    rows.push([key(k), outputs[k].bytes, g, first ? "inspect/validate/convert" : "merge/run (loaded on use)"]);
  }
  console.log("file".padEnd(44), "bytes".padStart(9), "gzipped".padStart(9), " loaded for");
  for (const r of rows) console.log(r[0].padEnd(44), String(r[1]).padStart(9), String(r[2]).padStart(9), "", r[3]);
  console.log(
    `inspect/validate/convert JavaScript: ${(initialGz / 1000).toFixed(1)} kB gzipped (budget ${BUDGET / 1000} kB); merge and model runs add ${(lazyGz / 1000).toFixed(1)} kB on use (plus onnxruntime-web's wasm, fetched only to run a model)`,
  );
  writeFileSync(
    join(out, "size.json"),
    JSON.stringify({ initialGzip: initialGz, lazyGzip: lazyGz, budget: BUDGET, files: rows }, null, 2),
  );
  if (initialGz > BUDGET) {
    console.error(`size budget exceeded: ${initialGz} > ${BUDGET} bytes gzipped`);
    process.exit(1);
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await main();

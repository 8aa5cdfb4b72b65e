// A tiny static server for the built page (web/dist), on the loopback interface only.
// Usage: node web/serve.mjs [--port N]   (default 4173; 0 picks a free port)
import { createReadStream, promises as fsp } from "node:fs";
import { createServer } from "node:http";
import { dirname, extname, join, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".map": "application/json",
  ".wasm": "application/wasm",
  ".svg": "image/svg+xml",
};

/**
 * Serve `dir` on 127.0.0.1. Resolves to the server and its URL once listening.
 * @param {{ dir?: string, port?: number }} [params]
 */
export function startServer(params = {}) {
  const dir = resolve(params.dir ?? join(dirname(fileURLToPath(import.meta.url)), "dist"));
  const server = createServer(async (req, res) => {
    try {
      const url = new URL(req.url ?? "/", "http://127.0.0.1");
      let path = decodeURIComponent(url.pathname);
      if (path.endsWith("/")) path += "index.html";
      const file = resolve(dir, "." + path);
      if (file !== dir && !file.startsWith(dir + sep)) throw Object.assign(new Error("outside"), { status: 403 });
      const st = await fsp.stat(file);
      if (!st.isFile()) throw Object.assign(new Error("not a file"), { status: 404 });
      res.writeHead(200, {
        "content-type": TYPES[extname(file)] ?? "application/octet-stream",
        "content-length": st.size,
        "cache-control": "no-cache",
      });
      createReadStream(file).pipe(res);
    } catch (e) {
      const status = e?.status ?? (e?.code === "ENOENT" ? 404 : 500);
      res.writeHead(status, { "content-type": "text/plain" }).end(`${status}\n`);
    }
  });
  return new Promise((ok, fail) => {
    server.once("error", fail);
    server.listen(params.port ?? 4173, "127.0.0.1", () => {
      const { port } = server.address();
      ok({ server, url: `http://127.0.0.1:${port}/` });
    });
  });
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const i = process.argv.indexOf("--port");
  const port = i > 0 ? Number(process.argv[i + 1]) : Number(process.env.PORT ?? 4173);
  const { url } = await startServer({ port });
  console.log(`verakit page: ${url}  (Ctrl-C to stop)`);
}

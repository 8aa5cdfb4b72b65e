/**
 * A loopback Hub-compatible server for tests: node:http on 127.0.0.1 (port 0), in-memory model repos,
 * the calls @huggingface/hub and huggingface_hub make for whoami, repo creation, branch creation,
 * preupload, LFS batch + PUT, commit, paths-info, tree, revision info and resolve (with Range). Every
 * request is recorded; `inject` queues failure answers (any status with headers and body, or a
 * connection cut after N body bytes). The server stops itself after `maxRequests` requests or
 * `lifetimeMs` milliseconds, so a runaway client loop cannot hang a test run.
 */
import { createHash, randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/** A user known to the server. */
export interface HubServerUser {
  name: string;
  /** Bearer token (any string; @huggingface/hub only sends tokens starting with `hf_`). */
  token: string;
  /** `write` may create repos and commit into its own namespace and its orgs; `read` may not. @default "write" */
  role?: "read" | "write";
  orgs?: string[];
}

/** One stored file of a commit. */
export interface StoredFile {
  content: Uint8Array;
  /** Git blob SHA-1 of the content (regular files) or of the LFS pointer (LFS files). */
  oid: string;
  /** SHA-256 of the content when the file is stored with LFS. */
  lfsOid?: string;
}

interface Commit {
  id: string;
  parent: string | null;
  title: string;
  date: string;
  files: Map<string, StoredFile>;
}

interface Repo {
  id: string;
  private: boolean;
  gated: false | "auto" | "manual";
  /** Users granted access to a gated repo. */
  granted: Set<string>;
  branches: Map<string, string>;
  commits: Map<string, Commit>;
}

/** A queued failure answer. The first pending fault whose `method`/`path` match a request is used. */
export interface HubFault {
  /** HTTP method to match (`GET`, `POST`, `PUT`, `HEAD`). @default any */
  method?: string;
  /** Substring of, or pattern for, the request path (without the query). @default any */
  path?: string | RegExp;
  /** How many matching requests get this answer. @default 1 */
  times?: number;
  /** A further condition on the request (e.g. skip the `Range: bytes=0-0` probe). @default always */
  when?: (req: { method: string; path: string; range: string | null }) => boolean;
  /** Answer with this status (ignored when `cutAfterBytes` is set). */
  status?: number;
  /** Extra response headers (e.g. `Retry-After`, `X-Error-Code`). */
  headers?: Record<string, string>;
  /** JSON body. @default {"error": "<status text>"} */
  body?: unknown;
  /** Let the request through but destroy the connection after this many response body bytes. */
  cutAfterBytes?: number;
  /** Put the request's Authorization header into the error body (a careless server), to test redaction. */
  echoAuthorization?: boolean;
  /** Handle the request normally (a commit lands), then answer `status` instead (a lost answer). */
  passThrough?: boolean;
  /** Let a file download through with one byte flipped (a corrupted transfer). */
  corrupt?: boolean;
}

/** What the server saw. */
export interface RecordedRequest {
  method: string;
  path: string;
  query: string;
  /** The bearer token sent, if any. */
  token: string | null;
  range: string | null;
  status: number;
  /** Set when a fault answered the request. */
  fault?: "status" | "cut" | "passThrough" | "corrupt";
}

/** Options of {@link startHubServer}. */
export interface HubServerOptions {
  users?: HubServerUser[];
  /** Stop answering (and close) after this many requests. @default 2000 */
  maxRequests?: number;
  /** Close the server after this long, whatever happens. @default 120000 */
  lifetimeMs?: number;
  /** Files at least this large go through LFS (also every *.safetensors / *.bin file). @default 10485760 */
  lfsThreshold?: number;
}

/** A running server. */
export interface HubServer {
  /** Base URL, e.g. `http://127.0.0.1:41234` (no trailing slash). */
  url: string;
  requests: RecordedRequest[];
  /** Queue a failure answer. */
  inject(fault: HubFault): void;
  /** Faults not yet used up. */
  pendingFaults(): number;
  /** Drop every pending fault. */
  clearFaults(): void;
  /** Create a repo directly (no HTTP). */
  addRepo(id: string, options?: { private?: boolean; gated?: false | "auto" | "manual" }): void;
  /** Commit files directly (no HTTP). Returns the commit id. */
  putFiles(
    id: string,
    files: Record<string, Uint8Array | string>,
    options?: { branch?: string; title?: string },
  ): string;
  /** A file at a revision, or undefined. */
  getFile(id: string, path: string, revision?: string): Uint8Array | undefined;
  /** Paths at a revision. */
  listPaths(id: string, revision?: string): string[];
  /** Head commit of a branch. */
  head(id: string, branch?: string): string | undefined;
  /** Number of commits reachable from a branch head. */
  commitCount(id: string, branch?: string): number;
  /** Whether the repo is private. */
  isPrivate(id: string): boolean | undefined;
  grantGated(id: string, user: string): void;
  close(): Promise<void>;
}

const DEFAULT_USERS: HubServerUser[] = [];
const MAX_BODY = 64 * 1024 * 1024;

/** Git blob SHA-1, as git and the Hub compute it. */
export function gitBlobSha1(content: Uint8Array): string {
  return createHash("sha1").update(`blob ${content.length}\0`).update(content).digest("hex");
}

function sha256Hex(content: Uint8Array): string {
  return createHash("sha256").update(content).digest("hex");
}

function lfsPointer(sha: string, size: number): Uint8Array {
  return new TextEncoder().encode(`version https://git-lfs.github.com/spec/v1\noid sha256:${sha}\nsize ${size}\n`);
}

/** Start a server on 127.0.0.1 with a random port. */
export async function startHubServer(options: HubServerOptions = {}): Promise<HubServer> {
  const users = options.users ?? DEFAULT_USERS;
  const maxRequests = options.maxRequests ?? 2000;
  const lfsThreshold = options.lfsThreshold ?? 10 * 1024 * 1024;
  const repos = new Map<string, Repo>();
  const lfsStore = new Map<string, Uint8Array>();
  const faults: Array<HubFault & { left: number }> = [];
  const requests: RecordedRequest[] = [];
  let commitCounter = 0;
  let closed = false;

  const newCommitId = (): string =>
    createHash("sha1")
      .update(`commit ${++commitCounter} ${randomBytes(8).toString("hex")}`)
      .digest("hex");

  function storeFile(content: Uint8Array, lfs: boolean): StoredFile {
    if (!lfs) return { content, oid: gitBlobSha1(content) };
    const sha = sha256Hex(content);
    return { content, oid: gitBlobSha1(lfsPointer(sha, content.length)), lfsOid: sha };
  }

  function isLfsPath(path: string, size: number, sample?: Uint8Array): boolean {
    if (/\.(safetensors|bin|onnx|pt|pth|gguf)$/.test(path)) return true;
    if (size >= lfsThreshold) return true;
    return sample !== undefined && sample.includes(0);
  }

  function addRepo(id: string, opts: { private?: boolean; gated?: false | "auto" | "manual" } = {}): Repo {
    const root: Commit = {
      id: newCommitId(),
      parent: null,
      title: "initial commit",
      date: new Date().toISOString(),
      files: new Map([
        [
          ".gitattributes",
          storeFile(new TextEncoder().encode("*.safetensors filter=lfs diff=lfs merge=lfs -text\n"), false),
        ],
      ]),
    };
    const repo: Repo = {
      id,
      private: opts.private ?? false,
      gated: opts.gated ?? false,
      granted: new Set(),
      branches: new Map([["main", root.id]]),
      commits: new Map([[root.id, root]]),
    };
    repos.set(id, repo);
    return repo;
  }

  function resolveRev(repo: Repo, rev: string): Commit | undefined {
    const branch = repo.branches.get(rev === "HEAD" ? "main" : rev);
    if (branch) return repo.commits.get(branch);
    return repo.commits.get(rev);
  }

  function commitFiles(repo: Repo, branch: string, title: string, changes: Map<string, StoredFile | null>): string {
    const parentId = repo.branches.get(branch);
    const parent = parentId ? repo.commits.get(parentId) : undefined;
    const files = new Map(parent?.files ?? []);
    for (const [p, f] of changes) {
      if (f === null) files.delete(p);
      else files.set(p, f);
    }
    const c: Commit = { id: newCommitId(), parent: parentId ?? null, title, date: new Date().toISOString(), files };
    repo.commits.set(c.id, c);
    repo.branches.set(branch, c.id);
    return c.id;
  }

  function userFor(token: string | null): HubServerUser | undefined {
    return token === null ? undefined : users.find((u) => u.token === token);
  }

  function canWrite(user: HubServerUser | undefined, repoId: string): boolean {
    if (!user || (user.role ?? "write") !== "write") return false;
    const ns = repoId.split("/")[0];
    return ns === user.name || (user.orgs ?? []).includes(ns ?? "");
  }

  function canRead(user: HubServerUser | undefined, repo: Repo): boolean {
    if (!repo.private) return true;
    if (!user) return false;
    const ns = repo.id.split("/")[0];
    return ns === user.name || (user.orgs ?? []).includes(ns ?? "");
  }

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      if (!res.headersSent) send(res, 500, { error: `test server failure: ${(e as Error).message}` });
      else res.destroy();
    });
  });

  function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    const text = JSON.stringify(body);
    res.writeHead(status, {
      "Content-Type": "application/json",
      "Content-Length": Buffer.byteLength(text),
      ...headers,
    });
    res.end(text);
  }

  function readBody(req: IncomingMessage): Promise<Uint8Array> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      req.on("data", (c: Buffer) => {
        size += c.length;
        if (size > MAX_BODY) {
          reject(new Error("request body too large"));
          req.destroy();
          return;
        }
        chunks.push(c);
      });
      req.on("end", () => resolve(new Uint8Array(Buffer.concat(chunks))));
      req.on("error", reject);
    });
  }

  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- request bodies of many shapes, checked by each route
  function jsonOf(bytes: Uint8Array): any {
    try {
      return JSON.parse(new TextDecoder().decode(bytes));
    } catch {
      return undefined;
    }
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    const method = req.method ?? "GET";
    const auth = req.headers.authorization ?? null;
    const token = auth && auth.startsWith("Bearer ") ? auth.slice(7) : null;
    const rec: RecordedRequest = {
      method,
      path: url.pathname,
      query: url.search,
      token,
      range: (req.headers.range as string | undefined) ?? null,
      status: 0,
    };
    requests.push(rec);
    const origWriteHead = res.writeHead.bind(res);
    (res as { writeHead: unknown }).writeHead = (status: number, ...rest: unknown[]) => {
      rec.status = status;
      return (origWriteHead as (...a: unknown[]) => ServerResponse)(status, ...rest);
    };
    if (requests.length > maxRequests) {
      send(res, 503, { error: "test server request budget exhausted" });
      void stop();
      return;
    }

    const body = method === "GET" || method === "HEAD" ? new Uint8Array() : await readBody(req);

    // Fault injection.
    const fi = faults.findIndex(
      (f) =>
        f.left > 0 &&
        (f.method === undefined || f.method === method) &&
        (f.path === undefined ||
          (typeof f.path === "string" ? url.pathname.includes(f.path) : f.path.test(url.pathname))) &&
        (f.when === undefined || f.when({ method, path: url.pathname, range: rec.range })),
    );
    let cutAfter: number | undefined;
    let corrupt = false;
    if (fi >= 0) {
      const f = faults[fi]!;
      f.left -= 1;
      if (f.left === 0) faults.splice(fi, 1);
      if (f.cutAfterBytes !== undefined) {
        cutAfter = f.cutAfterBytes;
        rec.fault = "cut";
      } else if (f.corrupt) {
        corrupt = true;
        rec.fault = "corrupt";
      } else if (f.passThrough) {
        rec.fault = "passThrough";
        const status = f.status ?? 500;
        const text = JSON.stringify(f.body ?? { error: `injected ${status}` });
        const wh = res.writeHead.bind(res);
        const end = res.end.bind(res);
        (res as { writeHead: unknown }).writeHead = () => {
          wh(status, {
            "Content-Type": "application/json",
            "Content-Length": String(Buffer.byteLength(text)),
            ...(f.headers ?? {}),
          });
          return res;
        };
        (res as { write: unknown }).write = () => true;
        (res as { end: unknown }).end = () => {
          end(text);
          return res;
        };
      } else {
        rec.fault = "status";
        const status = f.status ?? 500;
        let errBody = f.body ?? { error: `injected ${status}` };
        if (f.echoAuthorization && typeof errBody === "object" && errBody !== null) {
          errBody = { ...(errBody as object), error: `${(errBody as { error?: string }).error ?? ""} (sent: ${auth})` };
        }
        if (method === "HEAD") {
          res.writeHead(status, f.headers ?? {});
          res.end();
        } else send(res, status, errBody, f.headers ?? {});
        return;
      }
    }

    const user = userFor(token);
    if (token !== null && !user) {
      send(
        res,
        401,
        { error: "Invalid credentials in Authorization header" },
        { "X-Error-Message": "Invalid credentials in Authorization header" },
      );
      return;
    }

    const p = url.pathname;
    let m: RegExpMatchArray | null;
    const seg = (s: string): string => decodeURIComponent(s);

    if (method === "GET" && p === "/api/whoami-v2") {
      if (!user) return send(res, 401, { error: "Invalid credentials in Authorization header" });
      return send(res, 200, {
        type: "user",
        id: `id-${user.name}`,
        name: user.name,
        fullname: user.name,
        email: `${user.name}@example.invalid`,
        emailVerified: true,
        isPro: false,
        canPay: false,
        avatarUrl: "",
        periodEnd: null,
        billingMode: "prepaid",
        orgs: (user.orgs ?? []).map((o) => ({ type: "org", id: `id-${o}`, name: o, fullname: o })),
        auth: {
          type: "access_token",
          accessToken: { displayName: "test-token", role: user.role ?? "write", createdAt: "2024-01-01T00:00:00.000Z" },
        },
      });
    }

    if (method === "POST" && p === "/api/repos/create") {
      const j = jsonOf(body) ?? {};
      const id = `${j.organization ?? user?.name}/${j.name}`;
      if (!user) return send(res, 401, { error: "Invalid credentials in Authorization header" });
      if (!canWrite(user, id))
        return send(res, 403, { error: "You don't have the rights to create a model under this namespace" });
      if (repos.has(id))
        return send(res, 409, { error: "You already created this model repo", url: `${baseUrl()}/${id}` });
      addRepo(id, { private: j.visibility === "private" || j.private === true });
      return send(res, 200, { url: `${baseUrl()}/${id}`, name: id, id: `id-${id}` });
    }

    // Like the Hub: anonymous requests for a missing or private repo get 401, authenticated ones 404.
    const repoNotFound = (): void =>
      send(
        res,
        user ? 404 : 401,
        { error: "Repository not found" },
        { "X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found" },
      );
    const revNotFound = (rev: string): void =>
      send(
        res,
        404,
        { error: `Invalid rev id: ${rev}` },
        { "X-Error-Code": "RevisionNotFound", "X-Error-Message": `Invalid rev id: ${rev}` },
      );

    const getRepo = (ns: string, name: string): Repo | undefined => {
      const repo = repos.get(`${seg(ns)}/${seg(name)}`);
      if (!repo || !canRead(user, repo)) return undefined;
      return repo;
    };

    if ((m = p.match(/^\/api\/models\/([^/]+)\/([^/]+)$/)) && method === "GET") {
      const repo = getRepo(m[1]!, m[2]!);
      if (!repo) return repoNotFound();
      const c = resolveRev(repo, "main")!;
      return send(res, 200, infoOf(repo, c));
    }

    if ((m = p.match(/^\/api\/models\/([^/]+)\/([^/]+)\/revision\/([^/]+)$/)) && method === "GET") {
      const repo = getRepo(m[1]!, m[2]!);
      if (!repo) return repoNotFound();
      const c = resolveRev(repo, seg(m[3]!));
      if (!c) return revNotFound(seg(m[3]!));
      return send(res, 200, infoOf(repo, c));
    }

    if ((m = p.match(/^\/api\/models\/([^/]+)\/([^/]+)\/branch\/([^/]+)$/)) && method === "POST") {
      const repo = getRepo(m[1]!, m[2]!);
      if (!repo) return repoNotFound();
      if (!canWrite(user, repo.id)) return send(res, 403, { error: "You don't have write access to this repo" });
      const branch = seg(m[3]!);
      if (repo.branches.has(branch)) return send(res, 409, { error: "Reference already exists" });
      const j = jsonOf(body) ?? {};
      const start = resolveRev(repo, typeof j.startingPoint === "string" ? j.startingPoint : "main");
      if (!start) return revNotFound(String(j.startingPoint));
      repo.branches.set(branch, start.id);
      return send(res, 200, {});
    }

    if ((m = p.match(/^\/api\/models\/([^/]+)\/([^/]+)\/preupload\/([^/]+)$/)) && method === "POST") {
      const repo = getRepo(m[1]!, m[2]!);
      if (!repo) return repoNotFound();
      if (!canWrite(user, repo.id)) return send(res, 403, { error: "You don't have write access to this repo" });
      const rev = seg(m[3]!);
      if (!repo.branches.has(rev)) return revNotFound(rev);
      const j = jsonOf(body);
      if (!j || !Array.isArray(j.files)) return send(res, 400, { error: "bad preupload body" });
      return send(res, 200, {
        files: j.files.map((f: { path: string; size: number; sample: string }) => ({
          path: f.path,
          uploadMode: isLfsPath(f.path, f.size, new Uint8Array(Buffer.from(f.sample ?? "", "base64")))
            ? "lfs"
            : "regular",
          shouldIgnore: false,
        })),
      });
    }

    if ((m = p.match(/^\/([^/]+)\/([^/]+)\.git\/info\/lfs\/objects\/batch$/)) && method === "POST") {
      const repo = getRepo(m[1]!, m[2]!);
      if (!repo) return repoNotFound();
      if (!canWrite(user, repo.id)) return send(res, 403, { message: "You don't have write access to this repo" });
      const j = jsonOf(body);
      if (!j || !Array.isArray(j.objects)) return send(res, 400, { message: "bad batch body" });
      return send(
        res,
        200,
        {
          transfer: "basic",
          objects: j.objects.map((o: { oid: string; size: number }) =>
            lfsStore.has(o.oid)
              ? { oid: o.oid, size: o.size }
              : {
                  oid: o.oid,
                  size: o.size,
                  authenticated: true,
                  actions: { upload: { href: `${baseUrl()}/__lfs/${o.oid}?size=${o.size}` } },
                },
          ),
        },
        { "Content-Type": "application/vnd.git-lfs+json" },
      );
    }

    if ((m = p.match(/^\/__lfs\/([0-9a-f]{64})$/)) && method === "PUT") {
      const oid = m[1]!;
      if (sha256Hex(body) !== oid || String(body.length) !== url.searchParams.get("size")) {
        return send(res, 400, { error: "uploaded content does not match oid/size" });
      }
      lfsStore.set(oid, body);
      res.writeHead(200, { ETag: `"${oid}"` });
      res.end();
      return;
    }

    if ((m = p.match(/^\/api\/models\/([^/]+)\/([^/]+)\/commit\/([^/]+)$/)) && method === "POST") {
      const repo = getRepo(m[1]!, m[2]!);
      if (!repo) return repoNotFound();
      if (!canWrite(user, repo.id)) return send(res, 403, { error: "You don't have write access to this repo" });
      const branch = seg(m[3]!);
      if (!repo.branches.has(branch)) return revNotFound(branch);
      const lines = new TextDecoder()
        .decode(body)
        .split("\n")
        .filter((l) => l.trim() !== "");
      let title = "";
      const changes = new Map<string, StoredFile | null>();
      for (const line of lines) {
        const op = jsonOf(new TextEncoder().encode(line));
        if (!op) return send(res, 400, { error: "bad ndjson line" });
        if (op.key === "header") {
          title = String(op.value?.summary ?? "");
          if (op.value?.parentCommit && op.value.parentCommit !== repo.branches.get(branch)) {
            return send(res, 412, { error: "A commit has happened since. Please refresh and try again." });
          }
        } else if (op.key === "file") {
          const content = new Uint8Array(
            Buffer.from(op.value.content, op.value.encoding === "base64" ? "base64" : "utf8"),
          );
          changes.set(op.value.path, storeFile(content, false));
        } else if (op.key === "lfsFile") {
          const data = lfsStore.get(op.value.oid);
          if (!data || data.length !== op.value.size) {
            return send(res, 422, { error: `LFS object ${op.value.oid} was not uploaded` });
          }
          changes.set(op.value.path, storeFile(data, true));
        } else if (op.key === "deletedFile") {
          changes.set(op.value.path, null);
        } else return send(res, 400, { error: `unknown key ${op.key}` });
      }
      const id = commitFiles(repo, branch, title, changes);
      return send(res, 200, {
        success: true,
        commitOid: id,
        commitUrl: `${baseUrl()}/${repo.id}/commit/${id}`,
        hookOutput: "",
      });
    }

    if ((m = p.match(/^\/api\/models\/([^/]+)\/([^/]+)\/paths-info\/([^/]+)$/)) && method === "POST") {
      const repo = getRepo(m[1]!, m[2]!);
      if (!repo) return repoNotFound();
      const rev = seg(m[3]!);
      const c = resolveRev(repo, rev);
      if (!c) return revNotFound(rev);
      const j = jsonOf(body);
      const paths: string[] = Array.isArray(j?.paths) ? j.paths : [];
      return send(
        res,
        200,
        paths.filter((q) => c.files.has(q)).map((q) => entryOf(repo, c, q, c.files.get(q)!, Boolean(j?.expand))),
      );
    }

    if ((m = p.match(/^\/api\/models\/([^/]+)\/([^/]+)\/tree\/([^/]+)(\/.*)?$/)) && method === "GET") {
      const repo = getRepo(m[1]!, m[2]!);
      if (!repo) return repoNotFound();
      const rev = seg(m[3]!);
      const c = resolveRev(repo, rev);
      if (!c) return revNotFound(rev);
      return send(
        res,
        200,
        [...c.files.keys()].sort().map((q) => entryOf(repo, c, q, c.files.get(q)!, false)),
      );
    }

    if ((m = p.match(/^\/([^/]+)\/([^/]+)\/resolve\/([^/]+)\/(.+)$/)) && (method === "GET" || method === "HEAD")) {
      const repo = repos.get(`${seg(m[1]!)}/${seg(m[2]!)}`);
      if (!repo || !canRead(user, repo)) {
        if (method === "HEAD") {
          res.writeHead(user ? 404 : 401, { "X-Error-Code": "RepoNotFound" });
          res.end();
          return;
        }
        return send(res, user ? 404 : 401, { error: "Repository not found" }, { "X-Error-Code": "RepoNotFound" });
      }
      if (repo.gated && !repo.granted.has(user?.name ?? "\0") && !canWrite(user, repo.id)) {
        const msg = "Access to model is restricted. You must have access to it and be authenticated to access it.";
        if (method === "HEAD") {
          res.writeHead(403, { "X-Error-Code": "GatedRepo", "X-Error-Message": msg });
          res.end();
          return;
        }
        return send(res, 403, { error: msg }, { "X-Error-Code": "GatedRepo", "X-Error-Message": msg });
      }
      const rev = seg(m[3]!);
      const c = resolveRev(repo, rev);
      if (!c) {
        if (method === "HEAD") {
          res.writeHead(404, { "X-Error-Code": "RevisionNotFound" });
          res.end();
          return;
        }
        return revNotFound(rev);
      }
      const path = m[4]!.split("/").map(seg).join("/");
      const f = c.files.get(path);
      if (!f) {
        if (method === "HEAD") {
          res.writeHead(404, { "X-Error-Code": "EntryNotFound", "X-Repo-Commit": c.id });
          res.end();
          return;
        }
        return send(res, 404, { error: "Entry not found" }, { "X-Error-Code": "EntryNotFound", "X-Repo-Commit": c.id });
      }
      const total = f.content.length;
      const headers: Record<string, string> = {
        "Content-Type": "application/octet-stream",
        "Accept-Ranges": "bytes",
        ETag: `"${f.lfsOid ?? f.oid}"`,
        "X-Repo-Commit": c.id,
        "X-Linked-Size": String(total),
      };
      if (f.lfsOid) headers["X-Linked-ETag"] = `"${f.lfsOid}"`;
      let start = 0;
      let end = total - 1;
      let status = 200;
      const range = req.headers.range;
      if (typeof range === "string") {
        const rm = range.match(/^bytes=(\d+)-(\d*)$/);
        if (!rm) return send(res, 416, { error: "bad range" });
        start = Number(rm[1]);
        end = rm[2] ? Math.min(Number(rm[2]), total - 1) : total - 1;
        if (start >= total && total > 0) {
          return send(res, 416, { error: "range not satisfiable" }, { "Content-Range": `bytes */${total}` });
        }
        status = 206;
        headers["Content-Range"] = `bytes ${start}-${end}/${total}`;
      }
      let slice = f.content.subarray(start, end + 1);
      if (corrupt && slice.length > 0) {
        slice = Uint8Array.from(slice);
        slice[0] = slice[0]! ^ 0xff;
      }
      headers["Content-Length"] = String(slice.length);
      res.writeHead(status, headers);
      if (method === "HEAD") {
        res.end();
        return;
      }
      if (cutAfter !== undefined) {
        res.write(Buffer.from(slice.subarray(0, Math.min(cutAfter, slice.length))));
        setTimeout(() => res.destroy(), 5);
        return;
      }
      res.end(Buffer.from(slice));
      return;
    }

    send(res, 404, { error: `no route for ${method} ${p}` });
  }

  function entryOf(repo: Repo, c: Commit, path: string, f: StoredFile, expand: boolean): Record<string, unknown> {
    const e: Record<string, unknown> = {
      type: "file",
      path,
      oid: f.oid,
      size: f.content.length,
    };
    if (f.lfsOid)
      e.lfs = { oid: f.lfsOid, size: f.content.length, pointerSize: lfsPointer(f.lfsOid, f.content.length).length };
    if (expand) {
      // The commit that last touched the path.
      let cur: Commit | undefined = c;
      let last = c;
      while (cur) {
        const parent: Commit | undefined = cur.parent ? repo.commits.get(cur.parent) : undefined;
        const here = cur.files.get(path);
        const there = parent?.files.get(path);
        last = cur;
        if (!there || !here || there.oid !== here.oid) break;
        cur = parent;
      }
      e.lastCommit = { id: last.id, title: last.title, date: last.date };
      e.securityFileStatus = { status: "safe" };
    }
    return e;
  }

  function infoOf(repo: Repo, c: Commit): Record<string, unknown> {
    return {
      _id: `id-${repo.id}`,
      id: repo.id,
      modelId: repo.id,
      sha: c.id,
      private: repo.private,
      gated: repo.gated,
      downloads: 0,
      likes: 0,
      lastModified: c.date,
      siblings: [...c.files.keys()].sort().map((rfilename) => ({ rfilename })),
    };
  }

  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  const baseUrl = (): string => `http://127.0.0.1:${port}`;

  const lifetime = setTimeout(() => void stop(), options.lifetimeMs ?? 120_000);
  lifetime.unref();

  function stop(): Promise<void> {
    if (closed) return Promise.resolve();
    closed = true;
    clearTimeout(lifetime);
    return new Promise((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  const repoOrThrow = (id: string): Repo => {
    const r = repos.get(id);
    if (!r) throw new Error(`no repo ${id}`);
    return r;
  };

  return {
    url: baseUrl(),
    requests,
    inject(fault) {
      faults.push({ ...fault, left: fault.times ?? 1 });
    },
    pendingFaults: () => faults.reduce((n, f) => n + f.left, 0),
    clearFaults: () => void faults.splice(0, faults.length),
    addRepo(id, opts) {
      addRepo(id, opts);
    },
    putFiles(id, files, opts = {}) {
      const repo = repos.get(id) ?? addRepo(id);
      const changes = new Map<string, StoredFile>();
      for (const [p, v] of Object.entries(files)) {
        const bytes = typeof v === "string" ? new TextEncoder().encode(v) : v;
        const lfs = isLfsPath(p, bytes.length, bytes.subarray(0, 512));
        if (lfs) lfsStore.set(sha256Hex(bytes), bytes);
        changes.set(p, storeFile(bytes, lfs));
      }
      const branch = opts.branch ?? "main";
      if (!repo.branches.has(branch)) repo.branches.set(branch, repo.branches.get("main")!);
      return commitFiles(repo, branch, opts.title ?? "seed", changes);
    },
    getFile(id, path, revision = "main") {
      const repo = repoOrThrow(id);
      return resolveRev(repo, revision)?.files.get(path)?.content;
    },
    listPaths(id, revision = "main") {
      const c = resolveRev(repoOrThrow(id), revision);
      return c ? [...c.files.keys()].sort() : [];
    },
    head: (id, branch = "main") => repos.get(id)?.branches.get(branch),
    commitCount(id, branch = "main") {
      const repo = repoOrThrow(id);
      let n = 0;
      let cur = repo.branches.get(branch);
      while (cur && n < 100_000) {
        n++;
        cur = repo.commits.get(cur)?.parent ?? undefined;
      }
      return n;
    },
    isPrivate: (id) => repos.get(id)?.private,
    grantGated(id, u) {
      repoOrThrow(id).granted.add(u);
    },
    close: stop,
  };
}

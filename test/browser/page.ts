/** Helpers for the browser tests: Debian's chromium through playwright-core, the built page on 127.0.0.1, the CLI. */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, statSync } from "node:fs";
import type { Server } from "node:http";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { chromium, type Browser, type Download, type Page } from "playwright-core";
import { startServer } from "../../web/serve.mjs";

export const ROOT = join(import.meta.dirname, "..", "..");
export const CLI = join(ROOT, "dist", "cli", "index.js");

/** Debian's chromium (CHROMIUM_PATH overrides), or undefined when it is not installed. */
export function chromiumPath(): string | undefined {
  if (process.env.CHROMIUM_PATH) return process.env.CHROMIUM_PATH;
  const r = spawnSync("/bin/sh", ["-c", "command -v chromium || command -v chromium-browser"], { encoding: "utf8" });
  const p = (r.stdout ?? "").trim().split("\n")[0];
  return p ? p : undefined;
}

/**
 * Whether the browser tests can run. Under CI=true a missing chromium or an unbuilt page is an error
 * (the tests fail, never skip); elsewhere they are skipped with the reason printed.
 */
export function browserReady(): boolean {
  const missing: string[] = [];
  if (!chromiumPath()) missing.push("chromium (apt-get install -y chromium)");
  if (!existsSync(join(ROOT, "web", "dist", "index.html"))) missing.push("the built page (npm run site)");
  if (!existsSync(CLI)) missing.push("the CLI build (npx tsup)");
  if (missing.length === 0) return true;
  if (process.env.CI === "true") throw new Error(`browser tests need ${missing.join(", ")}`);
  console.warn(`browser tests skipped: missing ${missing.join(", ")}`);
  return false;
}

/** Whether the CLI build is there (tests comparing with it need it); under CI=true its absence is an error. */
export function cliReady(): boolean {
  if (existsSync(CLI)) return true;
  if (process.env.CI === "true") throw new Error("the CLI is not built (npx tsup)");
  console.warn("skipped: the CLI is not built (npx tsup)");
  return false;
}

/** Chromium flags: headless, WebGPU on SwiftShader, nothing talking to the network. */
export const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--enable-unsafe-webgpu",
  "--use-webgpu-adapter=swiftshader",
  "--enable-unsafe-swiftshader",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];

export interface Session {
  browser: Browser;
  server: Server;
  url: string;
  close(): Promise<void>;
}

/** Serve web/dist and launch chromium. */
export async function openSession(): Promise<Session> {
  const { server, url } = await startServer({ dir: join(ROOT, "web", "dist"), port: 0 });
  const browser = await chromium.launch({ executablePath: chromiumPath()!, headless: true, args: CHROMIUM_ARGS });
  return {
    browser,
    server,
    url,
    async close() {
      await browser.close();
      await new Promise((r) => server.close(r));
    },
  };
}

/** A fresh page on the site, its console errors collected. */
export async function openPage(s: Session): Promise<{ page: Page; errors: string[] }> {
  const page = await (await s.browser.newContext({ acceptDownloads: true })).newPage();
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(s.url);
  await page.waitForSelector("body[data-ready='1']");
  return { page, errors };
}

/** Drop files onto an element the way a user's drag and drop arrives (a DataTransfer with Files). */
export async function dropFiles(
  page: Page,
  selector: string,
  files: Array<{ name: string; bytes: Uint8Array }>,
): Promise<void> {
  const payload = files.map((f) => ({ name: f.name, data: Buffer.from(f.bytes).toString("base64") }));
  await page.evaluate(
    ({ selector, payload }) => {
      const dt = new DataTransfer();
      for (const f of payload) {
        const bin = atob(f.data);
        const bytes = new Uint8Array(bin.length);
        for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
        dt.items.add(new File([bytes], f.name));
      }
      document
        .querySelector(selector)!
        .dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
    },
    { selector, payload },
  );
}

/** Click and collect `count` downloads: name -> bytes. */
export async function downloads(page: Page, selector: string, count = 1): Promise<Map<string, Uint8Array>> {
  const got: Download[] = [];
  const all = new Promise<void>((ok) => {
    const on = (d: Download) => {
      got.push(d);
      if (got.length === count) {
        page.off("download", on);
        ok();
      }
    };
    page.on("download", on);
  });
  await page.click(selector);
  await all;
  const out = new Map<string, Uint8Array>();
  for (const d of got) out.set(d.suggestedFilename(), new Uint8Array(readFileSync((await d.path())!)));
  return out;
}

/** Run the CLI; returns status, stdout, stderr. */
export function vera(args: string[]): { status: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", env: { ...process.env, NO_COLOR: "1" } });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Run the CLI and require success. */
export function veraOk(args: string[]): string {
  return execFileSync(process.execPath, [CLI, ...args], { encoding: "utf8" });
}

export function tmp(): string {
  return mkdtempSync(join(tmpdir(), "vera-web-"));
}

/** Every file under `dir`: relative path -> bytes. */
export function readTree(dir: string): Map<string, Uint8Array> {
  const out = new Map<string, Uint8Array>();
  const walk = (d: string): void => {
    for (const n of readdirSync(d)) {
      const p = join(d, n);
      if (statSync(p).isDirectory()) walk(p);
      else out.set(relative(dir, p), new Uint8Array(readFileSync(p)));
    }
  };
  walk(dir);
  return out;
}

/** Equal bytes, reported as the first differing offset (a readable failure instead of a megabyte diff). */
export function firstDifference(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}

import { isVeraError, type Issue } from "verakit";
import type { OutputFile } from "./convert.js";

/** Shorthand for document.getElementById with a type. */
export function $<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`page element #${id} is missing`);
  return el as T;
}

/** Create an element with text and attributes. */
export function el(tag: string, text?: string, attrs: Record<string, string> = {}): HTMLElement {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

/** What the page lists: an issue, or a notice under a label of its own (PEFT_WARNING, which is no error code). */
type Listed = Omit<Issue, "code"> & { code: string };

const fmt = (v: unknown): string => (typeof v === "string" ? v : JSON.stringify(v));

/** One issue as `vera validate` prints it. */
export function issueLine(i: Listed): string {
  return (
    `${i.code}${i.path ? ` at ${i.path}` : ""}: ${i.message}` +
    (i.expected !== undefined ? ` (expected ${fmt(i.expected)}, found ${fmt(i.received)})` : "")
  );
}

/** Render issues into a list (each `li` carries data-code and data-message for tests and styling). */
export function showIssues(list: HTMLElement, issues: Listed[], kind: "error" | "warning"): void {
  for (const i of issues) {
    const li = el("li", issueLine(i), { "data-code": String(i.code), "data-message": i.message, class: kind });
    list.append(li);
  }
}

/** Show a failure: a VeraError with its code, message and every issue; anything else as INTERNAL. */
export function showError(list: HTMLElement, e: unknown): void {
  if (isVeraError(e)) {
    const issues = e.issues.length > 0 ? e.issues : [{ code: e.code, message: e.message }];
    if (issues.length > 1 || issues[0]!.message !== e.message)
      showIssues(list, [{ code: e.code, message: e.message }], "error");
    showIssues(list, issues, "error");
  } else {
    const err = e as Error;
    list.append(
      el("li", `INTERNAL: ${err?.message ?? String(e)}`, {
        "data-code": "INTERNAL",
        "data-message": String(err?.message ?? e),
        class: "error",
      }),
    );
  }
}

/** Offer a file for download (an anchor with a blob URL; the Blob keeps the pieces, never one copy). */
export function download(file: OutputFile | { name: string; blob: Blob }): void {
  const blob = "blob" in file ? file.blob : new Blob(file.parts as BlobPart[], { type: "application/octet-stream" });
  const url = URL.createObjectURL(blob);
  const a = el("a", file.name, { href: url, download: file.name }) as HTMLAnchorElement;
  a.style.display = "none";
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** Bytes in KiB/MiB for people. */
export function size(n: number): string {
  return n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : `${(n / 1024).toFixed(1)} KiB`;
}

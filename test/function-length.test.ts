/**
 * No function in src/ or web/src is longer than 150 lines (a function that needs a screen of scrolling to
 * read wants splitting). Lengths are measured on the syntax tree TypeScript's own parser builds: from a
 * function's first token (its name, `async`, `export`) to its closing brace, nested functions included in
 * their parent.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import ts from "typescript";
import { describe, expect, it } from "vitest";

const ROOT = resolve(__dirname, "..");
const MAX_LINES = 150;
const DIRS = ["src", "web/src"];

/**
 * Functions over the limit that are being split. An entry is `<file>: <function>`; delete it when its
 * function is split (the last test fails while an entry is no longer needed).
 */
const BEING_SPLIT: ReadonlyArray<string> = [];

function walk(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else if (/\.(ts|tsx|mts)$/.test(e) && !e.endsWith(".d.ts")) out.push(p);
  }
  return out;
}

/** The name a function is known by: its own, its variable's or its property's, else `<anonymous@line>`. */
function nameOf(fn: ts.SignatureDeclaration, sf: ts.SourceFile): string {
  const own = fn.name;
  if (own && (ts.isIdentifier(own) || ts.isStringLiteral(own) || ts.isPrivateIdentifier(own))) {
    const cls = ts.isClassLike(fn.parent) && fn.parent.name ? `${fn.parent.name.text}.` : "";
    return ts.isConstructorDeclaration(fn) ? `${cls}constructor` : `${cls}${own.text}`;
  }
  if (ts.isConstructorDeclaration(fn)) return `${ts.isClassLike(fn.parent) ? fn.parent.name?.text : ""}.constructor`;
  const p = fn.parent;
  if ((ts.isVariableDeclaration(p) || ts.isPropertyAssignment(p)) && ts.isIdentifier(p.name)) return p.name.text;
  return `<anonymous@${sf.getLineAndCharacterOfPosition(fn.getStart(sf)).line + 1}>`;
}

/** Every function in `file` with its length in lines. */
export function functionLengths(file: string): Array<{ name: string; lines: number }> {
  const sf = ts.createSourceFile(file, readFileSync(file, "utf8"), ts.ScriptTarget.Latest, true);
  const out: Array<{ name: string; lines: number }> = [];
  const visit = (n: ts.Node): void => {
    if (ts.isFunctionLike(n) && "body" in n && n.body) {
      const first = sf.getLineAndCharacterOfPosition(n.getStart(sf)).line;
      const last = sf.getLineAndCharacterOfPosition(n.getEnd()).line;
      out.push({ name: nameOf(n, sf), lines: last - first + 1 });
    }
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return out;
}

/** `<file>: <function> (<n> lines)` for every function over the limit. */
function overLimit(): Map<string, number> {
  const long = new Map<string, number>();
  for (const dir of DIRS)
    for (const f of walk(join(ROOT, dir)))
      for (const fn of functionLengths(f))
        if (fn.lines > MAX_LINES) long.set(`${relative(ROOT, f).split("\\").join("/")}: ${fn.name}`, fn.lines);
  return long;
}

describe(`no function over ${MAX_LINES} lines in ${DIRS.join(" or ")}`, () => {
  it("measures what it should (a sanity check of the measure)", () => {
    const lengths = functionLengths(join(ROOT, "src", "errors.ts"));
    const fromIssues = lengths.find((f) => f.name === "VeraError.fromIssues");
    expect(fromIssues?.lines).toBeGreaterThan(5);
    expect(fromIssues?.lines).toBeLessThan(30);
    expect(lengths.some((f) => f.name === "isVeraError")).toBe(true);
  });

  it(`every function is at most ${MAX_LINES} lines (the allow-list aside)`, () => {
    const bad = [...overLimit()].filter(([k]) => !BEING_SPLIT.includes(k)).map(([k, n]) => `${k} (${n} lines)`);
    expect(bad).toEqual([]);
  });

  it("every allow-listed function is still over the limit (delete its entry once it is split)", () => {
    const long = overLimit();
    expect(BEING_SPLIT.filter((k) => !long.has(k))).toEqual([]);
  });
});

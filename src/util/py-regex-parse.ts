/**
 * A parser of Python `re` patterns (str patterns, Python 3.11 rules, as sre_parse reads them) into a small
 * tree that {@link compilePyRegex} runs in linear time. What cannot run in linear time (backreferences,
 * lookaround, conditionals, atomic groups, possessive quantifiers) is refused with the construct named.
 * Pure, browser-safe. @internal
 */

/** A pattern this parser refuses: `unsupported` for valid Python it cannot run in linear time, else a syntax error. */
export class PyRegexError extends Error {
  override readonly name = "PyRegexError";
  constructor(
    message: string,
    /** The construct, e.g. "backreference \\1", "lookahead (?=...)", "bad escape \\q". */
    readonly construct: string,
    /** Code-point position in the pattern. */
    readonly position: number,
    /** True for valid Python that is refused (not linear); false for a pattern Python rejects too. */
    readonly unsupported: boolean,
  ) {
    super(message);
  }
}

/** Does a code point belong to a character set? */
export type CharPred = (cp: number) => boolean;

/** The parsed pattern. */
export type PyRegexNode =
  | { t: "empty" }
  | { t: "char"; pred: CharPred }
  | { t: "cat"; items: PyRegexNode[] }
  | { t: "alt"; items: PyRegexNode[] }
  | { t: "rep"; node: PyRegexNode; min: number; max: number }
  | { t: "assert"; kind: "bol" | "eol" | "meol" | "start" | "end" | "word" | "notword" };

interface Flags {
  i: boolean;
  m: boolean;
  s: boolean;
  x: boolean;
  a: boolean;
}

/** Python's MAXREPEAT: counts at or above it are an OverflowError. */
const MAXREPEAT = 4294967295;

const isDigit = (c: string | undefined): boolean => c !== undefined && c >= "0" && c <= "9";
const isOct = (c: string | undefined): boolean => c !== undefined && c >= "0" && c <= "7";
const isAsciiLetter = (c: string): boolean => /^[A-Za-z]$/.test(c);

const DIGIT_U = /^\p{Nd}$/u;
const WORD_U = /^[\p{L}\p{N}_\p{Mn}\p{Mc}]$/u;
// eslint-disable-next-line no-control-regex -- Python counts the separators \x1c-\x1f as whitespace
const SPACE_U = /^[\s\x1c-\x1f\x85]$/u;

function category(c: string, ascii: boolean): CharPred | undefined {
  const digit: CharPred = ascii ? (cp) => cp >= 48 && cp <= 57 : (cp) => DIGIT_U.test(String.fromCodePoint(cp));
  const word: CharPred = ascii
    ? (cp) => (cp >= 48 && cp <= 57) || (cp >= 65 && cp <= 90) || (cp >= 97 && cp <= 122) || cp === 95
    : (cp) => WORD_U.test(String.fromCodePoint(cp));
  const space: CharPred = ascii
    ? (cp) => cp === 32 || (cp >= 9 && cp <= 13)
    : (cp) => SPACE_U.test(String.fromCodePoint(cp));
  const table: Record<string, CharPred> = {
    d: digit,
    D: (cp) => !digit(cp),
    w: word,
    W: (cp) => !word(cp),
    s: space,
    S: (cp) => !space(cp),
  };
  return table[c];
}

const SIMPLE_ESCAPES: Record<string, number> = { a: 7, f: 12, n: 10, r: 13, t: 9, v: 11, "\\": 92 };

/** Case-insensitive form of a predicate (Python IGNORECASE for str patterns, by simple case mapping). */
function caseless(pred: CharPred): CharPred {
  return (cp) => {
    if (pred(cp)) return true;
    const s = String.fromCodePoint(cp);
    const lo = s.toLowerCase();
    const up = s.toUpperCase();
    return (
      (lo !== s && [...lo].length === 1 && pred(lo.codePointAt(0)!)) ||
      (up !== s && [...up].length === 1 && pred(up.codePointAt(0)!))
    );
  };
}

class Parser {
  pos = 0;
  groups = 0;
  constructor(
    private readonly src: string[],
    private flags: Flags,
  ) {}

  fail(message: string, construct: string, unsupported = false, at = this.pos): never {
    throw new PyRegexError(
      `${unsupported ? "not supported (no linear-time match)" : "not a valid Python regular expression"}: ${message} at position ${at}`,
      construct,
      at,
      unsupported,
    );
  }
  peek(k = 0): string | undefined {
    return this.src[this.pos + k];
  }
  eat(c: string): boolean {
    if (this.src[this.pos] !== c) return false;
    this.pos++;
    return true;
  }
  /** In verbose mode, whitespace and `#` comments between items are skipped. */
  skipVerbose(): void {
    if (!this.flags.x) return;
    for (;;) {
      const c = this.peek();
      if (c === undefined) return;
      if (/\s/.test(c)) this.pos++;
      else if (c === "#") while (this.peek() !== undefined && this.src[this.pos++] !== "\n");
      else return;
    }
  }

  /** alternation := concat ('|' concat)* */
  alternation(depth: number): PyRegexNode {
    if (depth > 200) this.fail("groups nested deeper than 200", "nesting", true);
    const items = [this.concat(depth)];
    while (this.eat("|")) items.push(this.concat(depth));
    return items.length === 1 ? items[0]! : { t: "alt", items };
  }

  concat(depth: number): PyRegexNode {
    const items: PyRegexNode[] = [];
    for (;;) {
      this.skipVerbose();
      const c = this.peek();
      if (c === undefined || c === "|" || c === ")") break;
      const atom = this.atom(depth);
      if (atom === undefined) continue; // a comment or flags group
      items.push(this.quantified(atom));
    }
    return items.length === 0 ? { t: "empty" } : items.length === 1 ? items[0]! : { t: "cat", items };
  }

  /** A quantifier after `atom`, if any (Python's rules: `{` that is not a valid count is a literal). */
  quantified(atom: PyRegexNode): PyRegexNode {
    this.skipVerbose();
    const here = this.pos;
    const range = this.quantifier();
    if (range === undefined) return atom;
    if (atom.t === "assert") this.fail("nothing to repeat", "nothing to repeat", false, here);
    const [min, max] = range;
    if (this.eat("+"))
      this.fail("possessive quantifier", `possessive quantifier ${this.text(here, this.pos)}`, true, here);
    this.eat("?"); // lazy: the same strings match, only which match is reported differs
    this.skipVerbose();
    const again = this.pos;
    if (this.quantifier() !== undefined) this.fail("multiple repeat", "multiple repeat", false, again);
    this.pos = again;
    return { t: "rep", node: atom, min, max };
  }

  quantifier(): [number, number] | undefined {
    const c = this.peek();
    if (c === "*") return (this.pos++, [0, Infinity]);
    if (c === "+") return (this.pos++, [1, Infinity]);
    if (c === "?") return (this.pos++, [0, 1]);
    if (c !== "{") return undefined;
    const here = this.pos;
    this.pos++;
    if (this.peek() === "}") return ((this.pos = here), undefined);
    let lo = "";
    let hi = "";
    while (isDigit(this.peek())) lo += this.src[this.pos++];
    if (this.eat(",")) while (isDigit(this.peek())) hi += this.src[this.pos++];
    else hi = lo;
    if (!this.eat("}")) return ((this.pos = here), undefined);
    const min = lo ? Number(lo) : 0;
    const max = hi ? Number(hi) : Infinity;
    if (min >= MAXREPEAT || (max !== Infinity && max >= MAXREPEAT))
      this.fail("the repeat count is too large", "repeat count", false, here);
    if (max < min) this.fail("min repeat greater than max repeat", "repeat range", false, here);
    return [min, max];
  }

  text(a: number, b: number): string {
    return this.src.slice(a, b).join("");
  }

  /** One atom, or undefined for an item that matches nothing (a comment, global flags). */
  atom(depth: number): PyRegexNode | undefined {
    const start = this.pos;
    const c = this.src[this.pos++]!;
    const f = this.flags;
    const lit = (cp: number): PyRegexNode => ({ t: "char", pred: this.literal(cp) });
    switch (c) {
      case ".":
        return { t: "char", pred: f.s ? () => true : (cp) => cp !== 10 };
      case "^":
        return { t: "assert", kind: f.m ? "bol" : "start" };
      case "$":
        return { t: "assert", kind: f.m ? "meol" : "eol" };
      case "[":
        return { t: "char", pred: this.cls(start) };
      case "(":
        return this.group(depth, start);
      case "*":
      case "+":
      case "?":
        return this.fail("nothing to repeat", "nothing to repeat", false, start);
      case "{": {
        this.pos = start;
        if (this.quantifier() !== undefined) this.fail("nothing to repeat", "nothing to repeat", false, start);
        this.pos = start + 1;
        return lit(123);
      }
      case "\\":
        return this.escape(start);
      default:
        return lit(c.codePointAt(0)!);
    }
  }

  literal(cp: number): CharPred {
    const eq: CharPred = (x) => x === cp;
    return this.flags.i ? caseless(eq) : eq;
  }

  /** `\\` outside a class. */
  escape(start: number): PyRegexNode {
    const c = this.src[this.pos++];
    if (c === undefined) this.fail("bad escape (end of pattern)", "bad escape", false, start);
    const asserts: Record<string, PyRegexNode> = {
      A: { t: "assert", kind: "start" },
      Z: { t: "assert", kind: "end" },
      b: { t: "assert", kind: "word" },
      B: { t: "assert", kind: "notword" },
    };
    if (asserts[c!]) return asserts[c!]!;
    const cat = category(c!, this.flags.a);
    if (cat) return { t: "char", pred: cat };
    if (isDigit(c)) {
      // octal (\0, \0NN, or three octal digits), else a group reference
      if (c === "0") return { t: "char", pred: this.literal(this.octal(c!, 2)) };
      if (isOct(c) && isOct(this.peek()) && isOct(this.peek(1)))
        return { t: "char", pred: this.literal(this.octal(c!, 2)) };
      let ref = c!;
      while (isDigit(this.peek()) && ref.length < 2) ref += this.src[this.pos++];
      return this.fail(`backreference \\${ref}`, `backreference \\${ref}`, true, start);
    }
    return { t: "char", pred: this.literal(this.codeEscape(c!, start, false)) };
  }

  octal(first: string, more: number): number {
    let s = first;
    while (more-- > 0 && isOct(this.peek())) s += this.src[this.pos++];
    const v = parseInt(s, 8);
    if (v > 0o377) this.fail(`octal escape value \\${s} outside of range 0-0o377`, "octal escape", false);
    return v;
  }

  /** A code point escape (\x \u \U \a \n ... or an escaped non-letter); `inClass` adds \b = backspace. */
  codeEscape(c: string, start: number, inClass: boolean): number {
    const hex = (n: number): number => {
      const h = this.text(this.pos, this.pos + n);
      if (h.length !== n || !/^[0-9a-fA-F]+$/.test(h))
        this.fail(`incomplete escape \\${c}${h}`, "bad escape", false, start);
      this.pos += n;
      const v = parseInt(h, 16);
      if (v > 0x10ffff) this.fail(`bad escape \\${c}${h}`, "bad escape", false, start);
      return v;
    };
    if (c === "x") return hex(2);
    if (c === "u") return hex(4);
    if (c === "U") return hex(8);
    if (c === "N") return this.fail("named Unicode escape \\N{...}", "\\N{...}", true, start);
    if (inClass && c === "b") return 8;
    const simple = SIMPLE_ESCAPES[c];
    if (simple !== undefined) return simple;
    if (isAsciiLetter(c) || isDigit(c)) return this.fail(`bad escape \\${c}`, `bad escape \\${c}`, false, start);
    return c.codePointAt(0)!;
  }

  /** `[...]`, after the `[`. */
  cls(start: number): CharPred {
    const negate = this.eat("^");
    const first = this.pos;
    const items: CharPred[] = [];
    const item = (): { pred: CharPred; cp?: number } => {
      const c = this.src[this.pos++];
      if (c === undefined) this.fail("unterminated character set", "unterminated character set", false, start);
      if (c !== "\\") return { pred: (x) => x === c!.codePointAt(0), cp: c!.codePointAt(0)! };
      const e = this.src[this.pos++];
      if (e === undefined) this.fail("unterminated character set", "unterminated character set", false, start);
      const cat = category(e!, this.flags.a);
      if (cat) return { pred: cat };
      let cp: number;
      if (isOct(e)) cp = this.octal(e!, 2);
      else if (isDigit(e)) return this.fail(`bad escape \\${e}`, `bad escape \\${e}`, false, this.pos - 2);
      else cp = this.codeEscape(e!, this.pos - 2, true);
      return { pred: (x) => x === cp, cp };
    };
    for (;;) {
      const c = this.peek();
      if (c === undefined) this.fail("unterminated character set", "unterminated character set", false, start);
      if (c === "]" && this.pos !== first) {
        this.pos++;
        break;
      }
      const a = item();
      if (this.peek() === "-" && this.peek(1) !== undefined && this.peek(1) !== "]") {
        this.pos++;
        const at = this.pos;
        const b = item();
        if (a.cp === undefined || b.cp === undefined || b.cp < a.cp)
          this.fail("bad character range", `bad character range ${this.text(at - 2, this.pos)}`, false, at);
        const lo = a.cp!;
        const hi = b.cp!;
        items.push((x) => x >= lo && x <= hi);
      } else items.push(a.pred);
    }
    const any: CharPred = (x) => items.some((p) => p(x));
    const pred = this.flags.i ? caseless(any) : any;
    return negate ? (x) => !pred(x) : pred;
  }

  /** `(` ... `)`, after the `(`. */
  group(depth: number, start: number): PyRegexNode | undefined {
    if (!this.eat("?")) return this.body(depth, start, true);
    const c = this.src[this.pos++];
    const refuse = (what: string): never => this.fail(what, what, true, start);
    if (c === ":") return this.body(depth, start, false);
    if (c === "P") {
      if (this.eat("<")) {
        let name = "";
        while (this.peek() !== undefined && this.peek() !== ">") name += this.src[this.pos++];
        if (!this.eat(">") || !/^[\p{L}_][\p{L}\p{N}_]*$/u.test(name))
          this.fail(`bad character in group name ${JSON.stringify(name)}`, "group name", false, start);
        return this.body(depth, start, true);
      }
      if (this.peek() === "=") return refuse("backreference (?P=name)");
      return this.fail("unknown extension ?P", "unknown extension", false, start);
    }
    if (c === "#") {
      while (this.peek() !== undefined && this.peek() !== ")") this.pos++;
      if (!this.eat(")")) this.fail("missing ), unterminated comment", "comment", false, start);
      return undefined;
    }
    if (c === "=") return refuse("lookahead (?=...)");
    if (c === "!") return refuse("negative lookahead (?!...)");
    if (c === "<" && this.peek() === "=") return refuse("lookbehind (?<=...)");
    if (c === "<" && this.peek() === "!") return refuse("negative lookbehind (?<!...)");
    if (c === "(") return refuse("conditional (?(...)...)");
    if (c === ">") return refuse("atomic group (?>...)");
    this.pos--;
    return this.flagGroup(depth, start);
  }

  /** `(?aimsx-imsx:...)` or `(?aimsx)` (global flags: only at the start of the pattern). */
  flagGroup(depth: number, start: number): PyRegexNode | undefined {
    const on = new Set<string>();
    const off = new Set<string>();
    while (/^[aiLmsux]$/.test(this.peek() ?? "")) on.add(this.src[this.pos++]!);
    if (this.eat("-")) while (/^[imsx]$/.test(this.peek() ?? "")) off.add(this.src[this.pos++]!);
    if (on.has("L")) this.fail("bad inline flags: cannot use 'L' flag with a str pattern", "flag L", false, start);
    const saved = this.flags;
    const next: Flags = { ...saved };
    for (const k of ["i", "m", "s", "x", "a"] as const) {
      if (on.has(k)) next[k] = true;
      if (off.has(k)) next[k] = false;
    }
    if (this.eat(")")) {
      if (off.size > 0 || start !== 0)
        this.fail("global flags not at the start of the expression", "global flags", false, start);
      this.flags = next;
      return undefined;
    }
    if (!this.eat(":")) this.fail("unknown extension", `unknown extension (?${this.peek() ?? ""}`, false, start);
    this.flags = next;
    const node = this.body(depth, start, false);
    this.flags = saved;
    return node;
  }

  body(depth: number, start: number, capturing: boolean): PyRegexNode {
    if (capturing) this.groups++;
    const node = this.alternation(depth + 1);
    if (!this.eat(")")) this.fail("missing ), unterminated subpattern", "unterminated subpattern", false, start);
    return node;
  }
}

/**
 * Parse a Python `re` pattern (str pattern, no flags given outside it).
 * @throws PyRegexError for a construct that cannot run in linear time (`unsupported`) or a pattern Python rejects.
 */
export function parsePyRegex(pattern: string): PyRegexNode {
  const p = new Parser([...pattern], { i: false, m: false, s: false, x: false, a: false });
  // global flags at the very start may switch on verbose mode for the whole pattern
  const node = p.alternation(0);
  if (p.pos < [...pattern].length) p.fail("unbalanced parenthesis", "unbalanced parenthesis", false);
  return node;
}

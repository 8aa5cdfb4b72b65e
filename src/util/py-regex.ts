/**
 * Python `re.fullmatch` in linear time: a pattern parsed by {@link parsePyRegex} is compiled to a
 * Thompson NFA and run as a Pike VM (a set of states advanced one code point at a time), so a match
 * costs O(program size x name length) whatever the pattern: `(a+)+$` cannot backtrack. Only whether a
 * full match exists is computed (lazy and greedy quantifiers match the same strings). Pure, browser-safe.
 * @internal
 */
import { parsePyRegex, PyRegexError, type CharPred, type PyRegexNode } from "./py-regex-parse.js";

export { PyRegexError } from "./py-regex-parse.js";

/** The most NFA instructions a pattern may compile to (counted repeats are expanded): bounds time and memory. */
export const PY_REGEX_MAX_PROGRAM = 50_000;

type Assertion = Extract<PyRegexNode, { t: "assert" }>["kind"];
type Instr =
  | { op: "char"; pred: CharPred }
  | { op: "split"; x: number; y: number }
  | { op: "jmp"; x: number }
  | { op: "assert"; kind: Assertion }
  | { op: "match" };

/** A compiled pattern. */
export interface PyRegex {
  /** Python's `re.fullmatch(pattern, s) is not None`. */
  fullmatch(s: string): boolean;
}

class Compiler {
  readonly prog: Instr[] = [];

  emit(i: Instr): number {
    if (this.prog.length >= PY_REGEX_MAX_PROGRAM)
      throw new PyRegexError(
        `not supported: the pattern expands to more than ${PY_REGEX_MAX_PROGRAM} states (repeat counts too large)`,
        "repeat count",
        0,
        true,
      );
    this.prog.push(i);
    return this.prog.length - 1;
  }

  node(n: PyRegexNode): void {
    switch (n.t) {
      case "empty":
        return;
      case "char":
        this.emit({ op: "char", pred: n.pred });
        return;
      case "assert":
        this.emit({ op: "assert", kind: n.kind });
        return;
      case "cat":
        for (const it of n.items) this.node(it);
        return;
      case "alt": {
        // split L1, next; L1: a; jmp end; next: split L2, ... ; last alternative falls through
        const jumps: number[] = [];
        for (let k = 0; k < n.items.length; k++) {
          if (k < n.items.length - 1) {
            const split = this.emit({ op: "split", x: 0, y: 0 });
            (this.prog[split] as { x: number }).x = this.prog.length;
            this.node(n.items[k]!);
            jumps.push(this.emit({ op: "jmp", x: 0 }));
            (this.prog[split] as { y: number }).y = this.prog.length;
          } else this.node(n.items[k]!);
        }
        for (const j of jumps) (this.prog[j] as { x: number }).x = this.prog.length;
        return;
      }
      case "rep":
        this.rep(n.node, n.min, n.max);
        return;
    }
  }

  rep(node: PyRegexNode, min: number, max: number): void {
    for (let k = 0; k < min; k++) this.node(node);
    if (max === Infinity) {
      // L: split body, end; body; jmp L
      const split = this.emit({ op: "split", x: 0, y: 0 });
      (this.prog[split] as { x: number }).x = this.prog.length;
      this.node(node);
      this.emit({ op: "jmp", x: split });
      (this.prog[split] as { y: number }).y = this.prog.length;
      return;
    }
    // (max - min) optional copies, nested: split body, end; body; split body, end; ...
    const splits: number[] = [];
    for (let k = min; k < max; k++) {
      const split = this.emit({ op: "split", x: 0, y: 0 });
      (this.prog[split] as { x: number }).x = this.prog.length;
      splits.push(split);
      this.node(node);
    }
    for (const s of splits) (this.prog[s] as { y: number }).y = this.prog.length;
  }

  compile(node: PyRegexNode): Instr[] {
    this.node(node);
    this.emit({ op: "match" });
    return this.prog;
  }
}

const WORD = /^[\p{L}\p{N}_\p{Mn}\p{Mc}]$/u;
const isWord = (cp: number | undefined): boolean => cp !== undefined && WORD.test(String.fromCodePoint(cp));

function holds(kind: Assertion, cps: readonly number[], i: number): boolean {
  const n = cps.length;
  switch (kind) {
    case "start":
      return i === 0;
    case "bol":
      return i === 0 || cps[i - 1] === 10;
    case "end":
      return i === n;
    case "eol":
      // Python's $: the end, or just before a newline that ends the string
      return i === n || (i === n - 1 && cps[i] === 10);
    case "meol":
      // with MULTILINE: also before any newline
      return i === n || cps[i] === 10;
    case "word":
      return isWord(cps[i - 1]) !== isWord(cps[i]);
    case "notword":
      return isWord(cps[i - 1]) === isWord(cps[i]);
  }
}

/** Run the program over the code points: true when the match state is live after the last one. */
function run(prog: readonly Instr[], cps: readonly number[]): boolean {
  const seen = new Int32Array(prog.length).fill(-1);
  let clist: number[] = [];
  let nlist: number[] = [];
  const stack: number[] = [];
  let gen = 0;
  const add = (list: number[], pc0: number, i: number): void => {
    stack.push(pc0);
    while (stack.length > 0) {
      const pc = stack.pop()!;
      if (seen[pc] === gen) continue;
      seen[pc] = gen;
      const ins = prog[pc]!;
      if (ins.op === "jmp") stack.push(ins.x);
      else if (ins.op === "split") stack.push(ins.y, ins.x);
      else if (ins.op === "assert") {
        if (holds(ins.kind, cps, i)) stack.push(pc + 1);
      } else list.push(pc);
    }
  };
  add(clist, 0, 0);
  for (let i = 0; i < cps.length; i++) {
    gen++;
    nlist.length = 0;
    const cp = cps[i]!;
    for (const pc of clist) {
      const ins = prog[pc]!;
      if (ins.op === "char" && ins.pred(cp)) add(nlist, pc + 1, i + 1);
    }
    [clist, nlist] = [nlist, clist];
    if (clist.length === 0) return false;
  }
  return clist.some((pc) => prog[pc]!.op === "match");
}

/**
 * Compile a Python `re` pattern for linear-time full matching.
 *
 * @throws PyRegexError naming the construct: `unsupported` for backreferences, lookaround, conditionals,
 *   atomic groups, possessive quantifiers, `\N{...}` and patterns expanding beyond {@link PY_REGEX_MAX_PROGRAM}
 *   states; otherwise a pattern Python's `re.compile` rejects too.
 */
export function compilePyRegex(pattern: string): PyRegex {
  const prog = new Compiler().compile(parsePyRegex(pattern));
  return {
    fullmatch: (s) =>
      run(
        prog,
        Array.from(s, (c) => c.codePointAt(0)!),
      ),
  };
}

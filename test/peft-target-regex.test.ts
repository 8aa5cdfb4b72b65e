/**
 * target_modules as PEFT reads it (`re.fullmatch`), by a linear-time matcher: checked against Python's
 * own answers (fixtures/peft/make_target_regex_table.py), including patterns that make a backtracking
 * engine run for minutes, and the typed refusal of what cannot run in linear time.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { targetModulesFor } from "../src/peft/export-peft.js";
import { matchesTargets, targetRegex } from "../src/peft/internal.js";
import { compilePyRegex, PyRegexError } from "../src/util/py-regex.js";
import { createAdapter } from "../src/format/create.js";
import { errorCode } from "./error-helpers.js";

interface Entry {
  pattern: string;
  matches?: boolean[];
  error?: string;
  refused?: boolean;
  names?: string[];
}
const table = JSON.parse(
  readFileSync(join(__dirname, "..", "fixtures", "peft", "target-regex-table.json"), "utf8"),
) as {
  tool: string;
  names: string[];
  patterns: Entry[];
  pathological: Entry[];
};

function refusal(pattern: string): PyRegexError | undefined {
  try {
    compilePyRegex(pattern);
  } catch (e) {
    if (e instanceof PyRegexError) return e;
    throw e;
  }
  return undefined;
}

describe("the linear-time matcher agrees with Python's re.fullmatch", () => {
  it("the table has real content", () => {
    expect(table.tool).toMatch(/^Python 3\./);
    expect(table.patterns.length).toBeGreaterThan(90);
    expect(table.patterns.filter((e) => e.matches && !e.refused).length).toBeGreaterThan(60);
    // the table is not trivial: names both match and fail
    const all = table.patterns.flatMap((e) => e.matches ?? []);
    expect(all.filter(Boolean).length).toBeGreaterThan(100);
    expect(all.filter((x) => !x).length).toBeGreaterThan(100);
  });

  for (const e of table.patterns.filter((x) => x.matches && !x.refused))
    it(`fullmatch(${JSON.stringify(e.pattern)}) for every name`, () => {
      const rx = compilePyRegex(e.pattern);
      const got = table.names.map((n) => rx.fullmatch(n));
      const diff = table.names.filter((_, k) => got[k] !== e.matches![k]).map((n) => JSON.stringify(n));
      expect(diff).toEqual([]);
    });

  it("patterns Python rejects are refused as syntax errors (not 'unsupported')", () => {
    const rejected = table.patterns.filter((x) => x.error !== undefined);
    expect(rejected.length).toBeGreaterThan(10);
    for (const e of rejected) {
      const r = refusal(e.pattern);
      expect([e.pattern, r !== undefined]).toEqual([e.pattern, true]);
      // \1 without a group is an error in Python and a backreference here: refused either way
      if (e.pattern !== "\\1") expect([e.pattern, r!.unsupported]).toEqual([e.pattern, false]);
    }
  });

  it("valid Python that cannot run in linear time is refused, naming the construct", () => {
    const refused = table.patterns.filter((x) => x.refused);
    expect(refused.length).toBeGreaterThan(5);
    const constructs = refused.map((e) => {
      const r = refusal(e.pattern);
      expect([e.pattern, r?.unsupported]).toEqual([e.pattern, true]);
      return r!.construct;
    });
    expect(constructs.join(" | ")).toMatch(/backreference/);
    expect(constructs.join(" | ")).toMatch(/lookahead/);
    expect(constructs.join(" | ")).toMatch(/lookbehind/);
    expect(constructs.join(" | ")).toMatch(/conditional/);
    expect(constructs.join(" | ")).toMatch(/atomic group/);
    expect(constructs.join(" | ")).toMatch(/possessive/);
  });

  it("pathological patterns (exponential for a backtracking engine) give Python's answers", () => {
    for (const e of table.pathological) {
      const rx = compilePyRegex(e.pattern);
      expect([e.pattern, e.names!.map((n) => rx.fullmatch(n))]).toEqual([e.pattern, e.matches]);
    }
  });

  it("pathological patterns over long names answer too (a JS RegExp would run for hours)", () => {
    // (a+)+$ fails on a...a! by the same reasoning as the short names of the table: no '!' can be matched
    const rx = compilePyRegex("(a+)+$");
    expect(rx.fullmatch(`${"a".repeat(5000)}!`)).toBe(false);
    expect(rx.fullmatch("a".repeat(5000))).toBe(true);
    expect(compilePyRegex("(.*a){12}").fullmatch(`${"a".repeat(11)}${"b".repeat(3000)}`)).toBe(false);
  });

  it("huge repeat counts are refused before anything is built", () => {
    expect(refusal("a{1000000}")?.unsupported).toBe(true);
    expect(refusal("(a{1000}){1000}")?.construct).toBe("repeat count");
  });
});

describe("matchesTargets and the PEFT export", () => {
  it("a string target_modules uses the matcher; a refused one is PEFT_TARGET_REGEX", () => {
    expect(matchesTargets("model.layers.0.self_attn.q_proj", ".*\\.(q_proj|v_proj)")).toBe(true);
    expect(matchesTargets("model.layers.0.self_attn.k_proj", ".*\\.(q_proj|v_proj)")).toBe(false);
    expect(matchesTargets("model.layers.0.self_attn.q_proj", "(a+)+$")).toBe(false);
    expect(errorCode(() => matchesTargets("x", "(a)\\1"))).toBe("PEFT_TARGET_REGEX");
    expect(errorCode(() => targetRegex("a**"))).toBe("PEFT_TARGET_REGEX");
  });

  it("export-peft keeps a backtracking target_modules that still selects every module, and answers at once", () => {
    const names = Array.from({ length: 8 }, (_, i) => `model.layers.${i}.self_attn.q_proj`);
    const adapter = createAdapter({ modules: names.map((name) => ({ name, inFeatures: 8, outFeatures: 8 })), rank: 2 });
    const warnings: string[] = [];
    const pattern = "(m|o|d|e|l|\\.|[a-z_]|\\d)+(q_proj)";
    expect(targetModulesFor(adapter, pattern, warnings)).toBe(pattern);
    expect(warnings).toEqual([]);
    // a pattern that no longer selects every module: full paths, with a warning
    expect(targetModulesFor(adapter, "(a+)+$", warnings)).toEqual([...names].sort());
    expect(warnings.length).toBe(1);
    // a refused pattern: full paths (which PEFT reads as the same selection), the warning names the construct
    const w2: string[] = [];
    expect(targetModulesFor(adapter, "(.*)\\1q_proj", w2)).toEqual([...names].sort());
    expect(w2[0]).toContain("backreference");
  });
});

import { describe, expect, it } from "vitest";
import { joinNegativeValues, parseCommandArgs } from "../src/cli/parse-command-args.js";
import { UsageError } from "../src/cli/command.js";

const options = {
  seed: { type: "string" },
  "d-initial": { type: "string" },
  output: { type: "string", short: "o" },
  module: { type: "string", multiple: true },
  all: { type: "boolean" },
} as const;

describe("CLI argument parsing", () => {
  it("takes a negative number after any value-taking option as its value, in every spelling", () => {
    for (const v of ["-3", "-0.5", "-.5", "-1e-3", "-2E+4", "-7."]) {
      expect(parseCommandArgs({ args: ["--seed", v], options }).values["seed"]).toBe(v);
      expect(parseCommandArgs({ args: [`--seed=${v}`], options }).values["seed"]).toBe(v);
      expect(parseCommandArgs({ args: ["--d-initial", v], options }).values["d-initial"]).toBe(v);
    }
    expect(parseCommandArgs({ args: ["-o", "-4"], options }).values["output"]).toBe("-4");
    expect(parseCommandArgs({ args: ["--module", "-1", "--module", "-2"], options }).values["module"]).toEqual([
      "-1",
      "-2",
    ]);
  });
  it("leaves everything else to parseArgs: options, booleans, words after --", () => {
    expect(joinNegativeValues(["--all", "-3"], options)).toEqual(["--all", "-3"]);
    expect(joinNegativeValues(["--", "--seed", "-3"], options)).toEqual(["--", "--seed", "-3"]);
    expect(joinNegativeValues(["--seed", "-x"], options)).toEqual(["--seed", "-x"]);
    expect(joinNegativeValues(["--seed", "--all"], options)).toEqual(["--seed", "--all"]);
    expect(joinNegativeValues(["--seed", "-3e"], options)).toEqual(["--seed", "-3e"]);
    // a negative number after a boolean is not a value; it is an unknown short option
    expect(() => parseCommandArgs({ args: ["--all", "-3"], options })).toThrow(UsageError);
    // an option name that looks like a value is still the ambiguity parseArgs reports
    expect(() => parseCommandArgs({ args: ["--seed", "-o"], options })).toThrow(UsageError);
    expect(() => parseCommandArgs({ args: ["--nope", "1"], options })).toThrow(/--nope/);
  });
  it("adds --json and --debug to every command", () => {
    const { values, positionals } = parseCommandArgs({ args: ["x", "--json", "--debug"], options });
    expect(values).toMatchObject({ json: true, debug: true });
    expect(positionals).toEqual(["x"]);
    expect(() => parseCommandArgs({ args: ["x"], options, allowPositionals: false })).toThrow(UsageError);
  });
});

// Fuzz every parser that takes user input: `npm run fuzz -- [--runs N] [--target NAME]... [--seed S]`.
//
// Targets (test/fuzz-targets.mjs, test/fuzz-targets-io.mjs): onnx (reader, locator, planner, inline values, external data
// locations), peft (adapter folder reader + importer, JSON and Python-JSON configs), base-shapes
// (config.json, safetensors index + shard headers, safetensors header, ONNX), format (safetensors +
// verakit validator), gguf (header, metadata, tensor table, split names), safetensors-index (the
// checkpoint merge's index reader), hub-responses (Hub API answers through whoami and pull), undo-journal
// (recoverMerge). Each gets N inputs (default 10,000): arbitrary bytes, protobuf-shaped random
// messages, byte damage, and structure-aware mutations of the fixtures.
//
// Pass criteria, per input of N bytes:
//   - it ends in a result or a typed VeraError; anything else is a failure;
//   - time <= TIME_BUDGET_S * (1 + N / 1 MiB) seconds (wall time is measured; an input over budget is
//     re-run once measuring CPU time, which a loaded machine does not inflate, and fails when that is
//     also over);
//   - growth of the process's peak RSS while it runs <= MEM_BASE + MEM_PER_BYTE * N.
// Every failure is printed and its input saved as JSON (`--repro FILE` runs one again).
// `--jobs J` splits the runs over J processes (seeds seed, seed+1, ...) and merges their summaries.
// Prints per target: inputs, failures, inputs/s, the slowest input (ms, bytes, kind) and the peak RSS;
// `--json FILE` writes the summary. Exit status 1 when any input failed.
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { isVeraError } from "../dist/index.js";
import { makeRng, TARGETS } from "./fuzz-targets.mjs";

/** Per-input CPU budget: this many seconds for an empty input, plus as many per MiB. */
const TIME_BUDGET_S = 0.5;
/** Per-input peak-RSS growth budget: a fixed allowance (heap growth, GC) plus this many bytes per input byte. */
const MEM_BASE = 64 * 2 ** 20;
const MEM_PER_BYTE = 64;

const { values } = parseArgs({
  options: {
    runs: { type: "string", default: "10000" },
    seed: { type: "string" },
    target: { type: "string", multiple: true },
    json: { type: "string" },
    failures: { type: "string", default: join(tmpdir(), "verakit-fuzz-failures") },
    repro: { type: "string" },
    quiet: { type: "boolean", default: false },
    jobs: { type: "string", default: "1" },
  },
  allowPositionals: true,
});

const sizeOf = (input) => Object.values(input.files).reduce((n, b) => n + b.length, 0);
const toJson = (target, seed, index, input) =>
  JSON.stringify(
    {
      target,
      seed,
      index,
      kind: input.kind,
      layout: input.layout,
      files: Object.fromEntries(Object.entries(input.files).map(([k, v]) => [k, Buffer.from(v).toString("base64")])),
    },
    null,
    1,
  );
const fromJson = (text) => {
  const j = JSON.parse(text);
  const files = Object.fromEntries(
    Object.entries(j.files).map(([k, v]) => [k, new Uint8Array(Buffer.from(v, "base64"))]),
  );
  return { ...j, input: { kind: j.kind, layout: j.layout, files } };
};

const cpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};
const peakRss = () => process.resourceUsage().maxRSS * 1024;
let lastPeak = peakRss();

/**
 * Run one input: {ok, typed, error?, ms, memGrowth}. `ok` is false only for an untyped throw. `ms` is
 * wall time, or CPU time when `cpu` is set (the driver re-measures over-budget inputs in CPU time);
 * `memGrowth` is how much the process's peak RSS rose while it ran.
 */
async function runOne(target, input, ctx, cpu = false) {
  const t0 = cpu ? cpuMs() : performance.now();
  let error;
  let typed = false;
  try {
    await target.run(input, ctx);
  } catch (e) {
    if (isVeraError(e)) typed = true;
    else error = e;
  }
  const ms = (cpu ? cpuMs() : performance.now()) - t0;
  const peak = peakRss();
  const memGrowth = peak - lastPeak;
  lastPeak = peak;
  return { ok: error === undefined, typed, error, ms, memGrowth };
}

if (values.repro) {
  const { target: name, input } = fromJson(readFileSync(values.repro, "utf8"));
  const tmp = mkdtempSync(join(tmpdir(), "verakit-fuzz-"));
  try {
    const r = await runOne(TARGETS[name], input, { tmp, index: 1 });
    console.log(
      `repro ${name} (${input.kind}, ${sizeOf(input)} bytes): ${r.ok ? "typed result" : "FAILS"}, ${r.ms.toFixed(1)} ms`,
    );
    if (!r.ok) console.error(r.error);
    process.exitCode = r.ok ? 0 : 1;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
} else if (Number(values.jobs) > 1) {
  // Split the runs over several processes and merge their summaries.
  const jobs = Number(values.jobs);
  const runs = Number(values.runs);
  const seed = values.seed !== undefined ? Number(values.seed) : Date.now() % 2 ** 31;
  const tmp = mkdtempSync(join(tmpdir(), "verakit-fuzz-jobs-"));
  const t0 = performance.now();
  const children = [];
  for (const sig of ["SIGINT", "SIGTERM"])
    process.on(sig, () => {
      for (const c of children) c.kill(sig);
      process.exit(130);
    });
  const parts = await Promise.all(
    Array.from({ length: jobs }, (_, k) => {
      const n = Math.floor(runs / jobs) + (k < runs % jobs ? 1 : 0);
      const json = join(tmp, `${k}.json`);
      const args = [process.argv[1], "--runs", String(n), "--seed", String(seed + k), "--json", json];
      args.push("--failures", values.failures, ...(values.quiet ? ["--quiet"] : []));
      for (const t of values.target ?? []) args.push("--target", t);
      return new Promise((resolve) => {
        const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "inherit"] });
        children.push(child);
        child.stdout.on("data", (d) =>
          process.stdout.write(
            String(d)
              .replace(/^/gm, `[job ${k}] `)
              .replace(/\[job \d+\] $/, ""),
          ),
        );
        child.on("close", (code) => {
          let summary;
          try {
            summary = JSON.parse(readFileSync(json, "utf8"));
          } catch {
            console.error(`job ${k} ended (exit ${code}) without a summary`);
            process.exit(2);
          }
          resolve({ code, summary });
        });
      });
    }),
  );
  rmSync(tmp, { recursive: true, force: true });
  const summary = { ...parts[0].summary, seed, seeds: parts.map((p) => p.summary.seed), runs, jobs, targets: {} };
  for (const name of Object.keys(parts[0].summary.targets)) {
    const all = parts.map((p) => p.summary.targets[name]);
    const m = { ...all[0], kinds: {}, failureFiles: [] };
    for (const key of ["inputs", "typedErrors", "results", "failures", "untyped", "overTime", "overMemory"])
      m[key] = all.reduce((n, x) => n + x[key], 0);
    for (const x of all) {
      for (const [k, v] of Object.entries(x.kinds)) m.kinds[k] = (m.kinds[k] ?? 0) + v;
      m.failureFiles.push(...(x.failureFiles ?? []));
    }
    m.slowest = all.reduce((a, x) => (x.slowest.ms > a.slowest.ms ? x : a)).slowest;
    m.largestInput = Math.max(...all.map((x) => x.largestInput));
    m.seconds = Math.max(...all.map((x) => x.seconds));
    m.inputsPerSecond = Math.round(m.inputs / m.seconds);
    m.peakRssMiB = Math.max(...all.map((x) => x.peakRssMiB));
    m.peakRssNote = "the largest peak RSS of the processes";
    if (m.failureFiles.length === 0) delete m.failureFiles;
    summary.targets[name] = m;
    console.log(
      `fuzz ${name} (${jobs} jobs): ${m.inputs} inputs, ${m.failures} failures (${m.untyped} untyped errors, ${m.overTime} over time, ${m.overMemory} over memory), ` +
        `slowest ${m.slowest.ms} ms wall (${m.slowest.bytes} bytes, ${m.slowest.kind}), peak RSS ${m.peakRssMiB} MiB`,
    );
  }
  summary.failures = parts.reduce((n, p) => n + p.summary.failures, 0);
  summary.wallSeconds = Math.round((performance.now() - t0) / 100) / 10;
  console.log(`fuzz: seeds ${summary.seeds.join(", ")}, ${summary.failures} failures, ${summary.wallSeconds} s`);
  if (values.json) writeFileSync(values.json, JSON.stringify(summary, null, 2) + "\n");
  process.exitCode = summary.failures === 0 && parts.every((p) => p.code === 0) ? 0 : 1;
} else {
  const runs = Number(values.runs);
  if (!Number.isSafeInteger(runs) || runs < 1) throw new Error(`--runs must be a positive integer`);
  const seed = values.seed !== undefined ? Number(values.seed) : Date.now() % 2 ** 31;
  const names = values.target ?? Object.keys(TARGETS);
  for (const n of names)
    if (!TARGETS[n]) throw new Error(`unknown target ${n} (have: ${Object.keys(TARGETS).join(", ")})`);
  const tmp = mkdtempSync(join(tmpdir(), "verakit-fuzz-"));
  const summary = {
    seed,
    runs,
    timeBudgetS: TIME_BUDGET_S,
    memBase: MEM_BASE,
    memPerByte: MEM_PER_BYTE,
    node: process.version,
    targets: {},
  };
  let failed = 0;
  try {
    for (const name of names) {
      const target = TARGETS[name];
      const rng = makeRng(seed ^ [...name].reduce((h, c) => Math.imul(h, 31) + c.charCodeAt(0), 7));
      const s = {
        about: target.about,
        inputs: 0,
        typedErrors: 0,
        results: 0,
        failures: 0,
        untyped: 0,
        overTime: 0,
        overMemory: 0,
        kinds: {},
        slowest: { ms: 0, bytes: 0, kind: "" },
        largestInput: 0,
        failureFiles: [],
      };
      const t0 = performance.now();
      let lastReport = t0;
      const fail = (why, index, input, err) => {
        s.failures++;
        failed++;
        mkdirSync(values.failures, { recursive: true });
        const file = join(values.failures, `${name}-${seed}-${index}.json`);
        writeFileSync(file, toJson(name, seed, index, input));
        if (s.failureFiles.length < 20) s.failureFiles.push(file);
        if (s.failures <= 10)
          console.error(
            `FAIL ${name} #${index} (${input.kind}, ${sizeOf(input)} bytes): ${why}${err ? `\n  ${err.stack ?? err}` : ""}\n  reproduce: node test/fuzz.mjs --repro ${file}`,
          );
      };
      for (let i = 0; i < runs; i++) {
        const input = target.gen(rng);
        const n = sizeOf(input);
        s.inputs++;
        s.kinds[input.kind] = (s.kinds[input.kind] ?? 0) + 1;
        if (n > s.largestInput) s.largestInput = n;
        let r = await runOne(target, input, { tmp, index: i });
        if (!r.ok) {
          s.untyped++;
          fail(`${r.error?.name}: ${r.error?.message}`, i, input, r.error);
          continue;
        }
        if (r.typed) s.typedErrors++;
        else s.results++;
        const budgetMs = TIME_BUDGET_S * 1000 * (1 + n / 2 ** 20);
        if (r.ms > budgetMs) {
          const again = await runOne(target, input, { tmp, index: i }, true);
          if (again.ms > budgetMs) {
            s.overTime++;
            fail(
              `took ${again.ms.toFixed(0)} ms of CPU twice, budget ${budgetMs.toFixed(0)} ms for ${n} bytes`,
              i,
              input,
            );
          }
          r = again.ms < r.ms ? again : r;
        }
        const memBudget = MEM_BASE + MEM_PER_BYTE * n;
        if (r.memGrowth > memBudget) {
          s.overMemory++;
          fail(
            `raised peak RSS by ${(r.memGrowth / 2 ** 20).toFixed(0)} MiB, budget ${(memBudget / 2 ** 20).toFixed(0)} MiB`,
            i,
            input,
          );
        }
        if (r.ms > s.slowest.ms) s.slowest = { ms: Math.round(r.ms * 10) / 10, bytes: n, kind: input.kind, index: i };
        const now = performance.now();
        if (!values.quiet && now - lastReport > 30_000) {
          lastReport = now;
          console.log(
            `  ${name}: ${i + 1}/${runs}, ${s.failures} failures, ${Math.round((i + 1) / ((now - t0) / 1000))} inputs/s, peak RSS ${(peakRss() / 2 ** 20).toFixed(0)} MiB`,
          );
        }
      }
      const secs = (performance.now() - t0) / 1000;
      s.seconds = Math.round(secs * 10) / 10;
      s.inputsPerSecond = Math.round(s.inputs / secs);
      s.peakRssMiB = Math.round(peakRss() / 2 ** 20);
      if (s.failureFiles.length === 0) delete s.failureFiles;
      summary.targets[name] = s;
      console.log(
        `fuzz ${name}: ${s.inputs} inputs, ${s.failures} failures (${s.untyped} untyped errors, ${s.overTime} over time, ${s.overMemory} over memory), ` +
          `${s.seconds} s, ${s.inputsPerSecond} inputs/s, slowest ${s.slowest.ms} ms wall (${s.slowest.bytes} bytes, ${s.slowest.kind}), peak RSS ${s.peakRssMiB} MiB`,
      );
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  summary.failures = failed;
  console.log(`fuzz: seed ${seed}, ${failed} failures${failed ? ` (inputs saved under ${values.failures})` : ""}`);
  if (values.json) writeFileSync(values.json, JSON.stringify(summary, null, 2) + "\n");
  process.exitCode = failed === 0 ? 0 : 1;
}

// Size bombs against the built CLI: each case runs `vera` in a fresh process under /usr/bin/time and records its exit
// status, the error code it printed, its wall time and its peak RSS; a `vera validate` of a small valid adapter in the
// same run is the baseline (a Node start-up). The bombs are sparse files (holes), so the run needs no disk space.
// `node bench/hostile-input.mjs` (after `npm run build`); writes bench/results/hostile-input.json.
import { spawnSync } from "node:child_process";
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, truncateSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const CLI = join(ROOT, "dist/cli/index.js");
const MB = 1024 * 1024;
const dir = mkdtempSync(join(tmpdir(), "vera-bench-hostile-"));

function sparse(path, size, head = new Uint8Array(0)) {
  mkdirSync(dirname(path), { recursive: true });
  const fd = openSync(path, "w");
  writeSync(fd, head);
  closeSync(fd);
  truncateSync(path, size);
  return path;
}
const u32 = (v) => [v & 255, (v >>> 8) & 255, (v >>> 16) & 255, (v >>> 24) & 255];
const u64 = (v) => {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(v), true);
  return [...b];
};
const gstr = (s) => [...u64(Buffer.byteLength(s)), ...Buffer.from(s)];
const gguf = (tensors, kvs, rest = []) =>
  Uint8Array.from([...Buffer.from("GGUF"), ...u32(3), ...u64(tensors), ...u64(kvs), ...rest]);

function vera(args) {
  const r = spawnSync("/usr/bin/time", ["-f", "%e %M", process.execPath, CLI, ...args], {
    encoding: "utf8",
    timeout: 600_000,
  });
  const lines = r.stderr.trim().split("\n");
  const [wall, rssKb] = lines.pop().split(" ").map(Number);
  const code = /error ([A-Z_]+)/.exec(r.stderr + r.stdout)?.[1] ?? (r.status === 0 ? "ok" : "?");
  return { status: r.status, code, wallS: wall, peakRssMiB: Math.round(rssKb / 1024) };
}

const adapter = join(dir, "a.vera.safetensors");
vera(["create", "-o", adapter, "--rank", "2", "--module", "model.layers.0.self_attn.q_proj:32x32"]);

const cases = [];
const run = (name, args) => {
  const r = vera(args);
  cases.push({ name, ...r });
  console.log(`${name.padEnd(62)} exit ${r.status} ${r.code.padEnd(20)} ${r.wallS.toFixed(2)} s ${r.peakRssMiB} MiB`);
};

run("baseline: vera validate of a small adapter", ["validate", adapter]);
run("baseline: vera merge of a missing model (start-up, imports)", [
  "merge",
  join(dir, "missing.gguf"),
  adapter,
  "-o",
  join(dir, "o0.gguf"),
]);
run("vera validate /dev/zero", ["validate", "/dev/zero"]);
{
  const d = join(dir, "peft");
  sparse(join(d, "adapter_config.json"), 300 * MB, Buffer.from('{"peft_type": "VERA", "x": "'));
  writeFileSync(join(d, "adapter_model.safetensors"), new Uint8Array(16));
  run("import-peft, 300 MB adapter_config.json", ["import-peft", d, "-o", join(dir, "o1.vera.safetensors")]);
}
{
  const d = join(dir, "ckpt-index");
  sparse(join(d, "model.safetensors.index.json"), 300 * MB, Buffer.from('{"weight_map": {"a": "'));
  run("merge, 300 MB model.safetensors.index.json", ["merge", d, adapter, "-o", join(dir, "o2")]);
}
{
  const head = new Uint8Array(8);
  new DataView(head.buffer).setBigUint64(0, BigInt(97 * MB), true);
  const p = sparse(join(dir, "st", "model.safetensors"), 8 + 97 * MB + 64, head);
  run("merge, 97 MB safetensors header", ["merge", p, adapter, "-o", join(dir, "o3.safetensors")]);
}
{
  const ok = gguf(0, 1, [...gstr("general.architecture"), ...u32(8), ...gstr("llama")]);
  for (const name of ["x-00001-of-1000000.gguf", "x-00001-of-99999999999999999999.gguf"]) {
    const p = join(dir, "split", name);
    mkdirSync(dirname(p), { recursive: true });
    writeFileSync(p, ok);
    run(`merge, GGUF named ${name}`, ["merge", p, adapter, "-o", join(dir, "o4.gguf")]);
  }
  const bombs = {
    "5,000,000 metadata entries": gguf(0, 5_000_000),
    "10,000,000 tensors": gguf(10_000_000, 0),
    "an array of 10^9 uint8": gguf(0, 1, [...gstr("tokenizer.ggml.scores"), ...u32(9), ...u32(0), ...u64(1e9)]),
    "a 100 MB string": gguf(0, 1, [...gstr("general.name"), ...u32(8), ...u64(100 * MB)]),
  };
  for (const [what, head] of Object.entries(bombs)) {
    const p = sparse(join(dir, "gguf", `${what.replace(/\W+/g, "-")}.gguf`), 2 ** 36, head);
    run(`merge, GGUF (64 GiB sparse) with ${what}`, ["merge", p, adapter, "-o", join(dir, "o5.gguf")]);
  }
}
rmSync(dir, { recursive: true, force: true });
const out = {
  date: new Date().toISOString(),
  command: "node bench/hostile-input.mjs",
  machine: "2 vCPUs, shared with other work; wall time and peak RSS of each `vera` process (/usr/bin/time)",
  node: process.version,
  cases,
};
mkdirSync(join(ROOT, "bench/results"), { recursive: true });
writeFileSync(join(ROOT, "bench/results/hostile-input.json"), JSON.stringify(out, null, 2) + "\n");

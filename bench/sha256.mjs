// SHA-256: the pure implementation (browsers' synchronous path) against node:crypto (what sha256Hex uses once
// verakit/node is loaded), and WebCrypto's asynchronous digest for reference, on the same buffers in the same
// run; then readVera on a ~6 MiB adapter with each implementation behind sha256Hex.
// Usage: npx tsup && node bench/sha256.mjs   (env: VERAKIT_BENCH_REPS, default 3)
import { createAdapter, PURE_SHA256, readVera, setSha256Implementation, writeVera } from "../dist/index.js";
import { NODE_SHA256 } from "../dist/node/index.js";
import { loadavg } from "node:os";
import { saveResults, table } from "./lib.mjs";

const REPS = Number(process.env.VERAKIT_BENCH_REPS ?? 3);
const MiB = 2 ** 20;

/** Median ms of `reps` runs of an async or sync fn. */
async function median(fn, reps = REPS) {
  const t = [];
  for (let i = 0; i < reps; i++) {
    const s = performance.now();
    await fn();
    t.push(performance.now() - s);
  }
  t.sort((a, b) => a - b);
  return t[Math.floor(t.length / 2)];
}

const rows = [];
for (const size of [4 * 1024, MiB, 16 * MiB]) {
  const data = new Uint8Array(size);
  for (let i = 0; i < size; i++) data[i] = (i * 2654435761) >>> 24;
  if (PURE_SHA256.hex(data) !== NODE_SHA256.hex(data)) throw new Error("pure and node:crypto digests differ");
  const loops = Math.max(1, Math.round(MiB / size)); // small buffers: time a batch
  const per = async (f) =>
    (await median(async () => {
      for (let i = 0; i < loops; i++) await f(data);
    })) / loops;
  const pure = await per((d) => PURE_SHA256.hex(d));
  const node = await per((d) => NODE_SHA256.hex(d));
  const web = await per((d) => crypto.subtle.digest("SHA-256", d));
  const mbps = (ms) => Math.round(size / 1e6 / (ms / 1000));
  rows.push({
    size: size >= MiB ? `${size / MiB} MiB` : `${size / 1024} KiB`,
    "pure MB/s": mbps(pure),
    "node:crypto MB/s": mbps(node),
    "webcrypto (async) MB/s": mbps(web),
    "node:crypto / pure": (pure / node).toFixed(1),
  });
}
table(rows, ["size", "pure MB/s", "node:crypto MB/s", "webcrypto (async) MB/s", "node:crypto / pure"]);

// readVera on a Llama-2-7B-shaped adapter (all 7 linear modules of 32 layers, rank 256): about 6 MiB of vectors.
const modules = [];
for (let l = 0; l < 32; l++)
  for (const [n, out] of [
    ["q_proj", 4096],
    ["k_proj", 4096],
    ["v_proj", 4096],
    ["o_proj", 4096],
    ["gate_proj", 11008],
    ["up_proj", 11008],
    ["down_proj", 4096],
  ])
    modules.push({
      name: `model.layers.${l}.${["gate_proj", "up_proj", "down_proj"].includes(n) ? "mlp" : "self_attn"}.${n}`,
      inFeatures: n === "down_proj" ? 11008 : 4096,
      outFeatures: out,
    });
const adapter = createAdapter({ rank: 256, seed: 1n, modules });
const bytes = writeVera({ adapter });
const reads = [];
for (const impl of [PURE_SHA256, NODE_SHA256]) {
  let hashes = 0;
  setSha256Implementation({ implementation: { name: impl.name, hex: (d) => (hashes++, impl.hex(d)) } });
  const ms = await median(() => readVera(bytes));
  reads.push({
    sha256: impl.name,
    "file MiB": (bytes.length / MiB).toFixed(1),
    "readVera ms": ms.toFixed(0),
    "hashes per read": hashes / REPS,
  });
}
setSha256Implementation({ implementation: null });
console.log("");
table(reads, ["sha256", "file MiB", "readVera ms", "hashes per read"]);

saveResults("sha256", {
  reps: REPS,
  loadAverage: loadavg().map((x) => Math.round(x * 10) / 10),
  note: "median of reps; MB = 1e6 bytes; webcrypto is asynchronous (not usable by the synchronous readVera)",
  digest: rows,
  readVera: reads,
});

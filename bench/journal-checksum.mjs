// The undo journal's record checksum: CRC-32 (node:zlib, journal version 3, computed on the JavaScript thread) against
// SHA-256 (node:crypto, version 2, computed on a worker thread after a copy of the entry into a SharedArrayBuffer, a
// copy that ran on the JavaScript thread), on entries of one Llama-2-7B q/v weight (4096 x 4096 16-bit = 32 MiB) and
// smaller ones, alternating rep by rep in one process. The CPU a merge spends on the journal is the checksum (and, for
// version 2, the copy) of every adapted byte: 2.15 GB at 7B shape with q,v adapted.
// Usage: node bench/journal-checksum.mjs [--reps 7]
import { createHash } from "node:crypto";
import { loadavg } from "node:os";
import { crc32 } from "node:zlib";
import { saveResults, table } from "./lib.mjs";
import { median, option } from "./merge-lib.mjs";

const REPS = Number(option("reps", "7"));
const MiB = 2 ** 20;
const ADAPTED_7B = 64 * 4096 * 4096 * 2; // 64 weights of 4096 x 4096, 16-bit

const ways = {
  "crc32 (v3)": (d) => crc32(d),
  "sha256 (v2)": (d) => createHash("sha256").update(d).digest(),
  "copy to SAB (v2, JS thread)": (d, sab) => new Uint8Array(sab).set(d),
};

const rows = [];
const load = loadavg().map((x) => x.toFixed(1));
for (const size of [MiB, 8 * MiB, 32 * MiB]) {
  const data = new Uint8Array(size);
  for (let i = 0; i < size; i++) data[i] = (i * 2654435761) >>> 24;
  const sab = new SharedArrayBuffer(size);
  const times = Object.fromEntries(Object.keys(ways).map((k) => [k, []]));
  for (const f of Object.values(ways)) f(data, sab); // warm-up (and the SAB's pages touched)
  for (let r = 0; r < REPS; r++)
    for (const [k, f] of Object.entries(ways)) {
      const t = performance.now();
      f(data, sab);
      times[k].push(performance.now() - t);
    }
  const ms = Object.fromEntries(Object.entries(times).map(([k, t]) => [k, median(t)]));
  const gbps = (m) => size / 1e9 / (m / 1000);
  const crc = ms["crc32 (v3)"];
  const sha = ms["sha256 (v2)"];
  const copy = ms["copy to SAB (v2, JS thread)"];
  rows.push({
    entry: `${size / MiB} MiB`,
    "crc32 GB/s": gbps(crc).toFixed(2),
    "sha256 GB/s": gbps(sha).toFixed(2),
    "copy GB/s": gbps(copy).toFixed(2),
    "sha256 / crc32": `${(sha / crc).toFixed(2)}x`,
    "7B journal CPU s, v2 (copy + sha256)": (((ADAPTED_7B / size) * (sha + copy)) / 1000).toFixed(2),
    "7B journal CPU s, v3 (crc32)": (((ADAPTED_7B / size) * crc) / 1000).toFixed(2),
    "7B JS-thread s, v2 (copy) / v3 (crc32)": `${(((ADAPTED_7B / size) * copy) / 1000).toFixed(2)} / ${(((ADAPTED_7B / size) * crc) / 1000).toFixed(2)}`,
    ms,
  });
}
table(
  rows,
  Object.keys(rows[0]).filter((k) => k !== "ms"),
);
console.log(`load average at the start: ${load.join(" ")}; medians of ${REPS} reps, alternating`);
saveResults("journal-checksum", { reps: REPS, load, rows });

// Fuzz the safetensors reader and the verakit validator: `npm run fuzz -- --runs N [--seed S]`.
// Inputs: arbitrary bytes, byte-mutated / truncated / extended valid files, and valid files whose metadata
// JSON was mutated structurally (then re-packed with a correct digest, so the deep checks run).
// Prints how many inputs ran and how many ended in anything but a typed error (must be 0; exit 1 otherwise).
import fc from "fast-check";
import { parseArgs } from "node:util";
import * as lib from "../dist/index.js";

const { values } = parseArgs({
  options: { runs: { type: "string", default: "10000" }, seed: { type: "string" } },
  allowPositionals: true,
});
const runs = Number(values.runs);
const seed = values.seed !== undefined ? Number(values.seed) : Date.now() % 2 ** 31;
const {
  createAdapter,
  writeVera,
  validateVera,
  readVera,
  parseSafetensors,
  isVeraError,
  writeSafetensors,
  sha256Hex,
  canonicalJson,
} = lib;

const base = createAdapter({
  rank: 3,
  seed: "4294967301",
  modules: [
    { name: "model.layers.0.self_attn.q_proj", inFeatures: 5, outFeatures: 4 },
    { name: "transformer.h.0.attn.c_attn", inFeatures: 4, outFeatures: 6, layout: "conv1d" },
  ],
});
const seeds = [
  writeVera({ adapter: base }),
  writeVera({ adapter: base, vectorDtype: "BF16" }),
  writeVera({
    adapter: { ...base, storedProjections: { A: new Float32Array(15).fill(0.5), B: new Float32Array(18).fill(-0.5) } },
  }),
];
const metaOf = (bytes) => {
  const n = new DataView(bytes.buffer, bytes.byteOffset).getUint32(0, true);
  const h = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  return { header: h, meta: JSON.parse(h.__metadata__.vera), data: bytes.subarray(8 + n) };
};

const jsonValue = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  fc.integer(),
  fc.double(),
  fc.string({ maxLength: 12 }),
  fc.constant("18446744073709551616"),
  fc.constant(-1),
  fc.constant(0),
  fc.constant(2 ** 31),
);
const arbInput = fc.oneof(
  fc.uint8Array({ maxLength: 512 }).map((b) => ({ kind: "bytes", b })),
  fc
    .tuple(
      fc.nat(seeds.length - 1),
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 10 }),
      fc.option(fc.nat()),
      fc.option(fc.uint8Array({ maxLength: 16 })),
    )
    .map(([k, muts, cut, extra]) => {
      let b = seeds[k].slice();
      for (const [i, v] of muts) b[i % b.length] = v;
      if (cut !== null) b = b.slice(0, cut % (b.length + 1));
      if (extra !== null) b = new Uint8Array([...b, ...extra]);
      return { kind: "mutated", b };
    }),
  fc
    .tuple(
      fc.nat(seeds.length - 1),
      fc.array(
        fc.tuple(
          fc.constantFrom(
            "format_version",
            "prng",
            "projections",
            "modules",
            "digest",
            "base_model",
            "training",
            "extra",
            "x",
          ),
          fc.oneof(
            jsonValue,
            fc.constantFrom(
              "rank",
              "max_in",
              "max_out",
              "seed",
              "arithmetic",
              "rounding",
              "storage",
              "name",
              "in_features",
              "out_features",
              "layout",
            ),
          ),
          jsonValue,
        ),
        { minLength: 1, maxLength: 4 },
      ),
    )
    .map(([k, edits]) => {
      const { header, meta, data } = metaOf(seeds[k]);
      for (const [top, key, val] of edits) {
        const t = meta[top];
        if (Array.isArray(t) && t.length) t[0][key] = val;
        else if (t && typeof t === "object") t[key] = val;
        else meta[top] = val;
      }
      meta.digest = { algorithm: "sha256", data: sha256Hex(data) };
      const tensors = Object.entries(header)
        .filter(([n]) => n !== "__metadata__")
        .map(([name, t]) => ({
          name,
          dtype: t.dtype,
          shape: t.shape,
          data: data.subarray(t.data_offsets[0], t.data_offsets[1]),
        }));
      let text;
      try {
        text = canonicalJson(meta);
      } catch {
        text = "{}";
      }
      return { kind: "metadata", b: writeSafetensors({ tensors, metadata: { format: "vera", vera: text } }) };
    }),
);

let ran = 0;
let untyped = 0;
const kinds = {};
const t0 = performance.now();
fc.assert(
  fc.property(arbInput, ({ kind, b }) => {
    ran++;
    kinds[kind] = (kinds[kind] ?? 0) + 1;
    for (const f of [() => parseSafetensors(b), () => readVera(b)]) {
      try {
        f();
      } catch (e) {
        if (!isVeraError(e)) {
          untyped++;
          if (untyped <= 5)
            console.error(
              `untyped ${e?.name}: ${e?.message}\n  input (${kind}, ${b.length} bytes): ${Buffer.from(b.slice(0, 64)).toString("hex")}`,
            );
        }
      }
    }
    try {
      const r = validateVera(b);
      if (!r.ok && r.issues.length === 0) untyped++;
    } catch (e) {
      untyped++;
      if (untyped <= 5) console.error(`validateVera threw ${e?.name}: ${e?.message}`);
    }
  }),
  { numRuns: runs, seed },
);
const s = (performance.now() - t0) / 1000;
console.log(
  `fuzz: ${ran} inputs (${Object.entries(kinds)
    .map(([k, v]) => `${k} ${v}`)
    .join(", ")}), seed ${seed}, ${s.toFixed(1)} s, ${Math.round(ran / s)} inputs/s`,
);
console.log(`fuzz: ${untyped} ended in anything but a typed error`);
process.exitCode = untyped === 0 ? 0 : 1;

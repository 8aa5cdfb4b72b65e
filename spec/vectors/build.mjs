// Builds the conformance vectors of spec/FORMAT.md. `node spec/vectors/build.mjs` (after `npm run build`)
// writes them to spec/vectors/ with manifest.json; test/spec-vectors.test.ts checks that the committed files
// equal what this script builds and that every file validates to its expected result.

/**
 * @param {any} lib the verakit core (dist/index.js or src/index.ts)
 * @returns {Array<{file: string, valid: boolean, code?: string, warning?: string, rule: string, bytes: Uint8Array}>}
 */
export function buildVectors(lib) {
  const { createAdapter, writeVera, writeSafetensors, bytesOf, sha256Hex, canonicalJson } = lib;
  const enc = new TextEncoder();
  const vectors = [];
  const add = (file, valid, rule, bytes, code, warning) =>
    vectors.push({ file, valid, rule, bytes, ...(code ? { code } : {}), ...(warning ? { warning } : {}) });

  // deterministic non-trivial vectors
  const fill = (n, k) => Float32Array.from({ length: n }, (_, i) => Math.fround(Math.sin(i * 0.7 + k) * 0.05));
  const base = () => {
    const a = createAdapter({
      rank: 4,
      seed: "4294967301",
      modules: [
        { name: "model.layers.0.mlp.down_proj", inFeatures: 12, outFeatures: 6 },
        { name: "model.layers.0.self_attn.q_proj", inFeatures: 6, outFeatures: 6 },
        { name: "model.layers.0.self_attn.v_proj", inFeatures: 6, outFeatures: 3 },
      ],
    });
    a.modules.forEach((m, k) => {
      m.lambdaD = fill(m.lambdaD.length, k + 1);
      m.lambdaB = fill(m.lambdaB.length, k + 11);
    });
    return a;
  };

  // ---- valid files
  add("valid-basic.vera.safetensors", true, "all", writeVera({ adapter: base() }));
  {
    const a = base();
    a.prng.seed = -1n;
    a.prng.arithmetic = "separate";
    a.projectionRounding = "bf16";
    a.baseModel = { id: "org/tiny-llama", revision: "main" };
    a.training = { d_initial: 0.1, task_type: "CAUSAL_LM", vera_dropout: 0 };
    add("valid-negative-seed-separate-bf16.vera.safetensors", true, "4.2 4.5 4.6", writeVera({ adapter: a }));
  }
  {
    const a = createAdapter({ rank: 2, seed: "18446744073709551615", modules: [{ name: "transformer.h.0.attn.c_attn", inFeatures: 8, outFeatures: 24, layout: "conv1d" }] });
    a.modules[0].lambdaB = fill(24, 3);
    add("valid-conv1d-bf16-vectors.vera.safetensors", true, "5.4 6.2", writeVera({ adapter: a, vectorDtype: "BF16" }));
    add("valid-conv1d-f16-vectors.vera.safetensors", true, "6.2", writeVera({ adapter: a, vectorDtype: "F16" }));
  }
  {
    const a = base();
    a.storedProjections = { A: fill(4 * 12, 5), B: fill(6 * 4, 6) };
    add("valid-stored-projections.vera.safetensors", true, "4.7", writeVera({ adapter: a }));
  }
  {
    const a = base();
    a.extraTensors = [{ name: "base_model.model.score.weight", dtype: "F32", shape: [2, 3], data: bytesOf(fill(6, 9)) }];
    a.extra = { peft_config: { modules_to_save: ["score"] } };
    add("valid-extra-tensors.vera.safetensors", true, "6.4", writeVera({ adapter: a }));
  }

  // ---- raw container helpers
  const headerFile = (headerText, data = new Uint8Array(0), lenOverride) => {
    const hb = typeof headerText === "string" ? enc.encode(headerText) : headerText;
    const out = new Uint8Array(8 + hb.length + data.length);
    const dv = new DataView(out.buffer);
    const n = lenOverride ?? hb.length;
    dv.setUint32(0, n % 2 ** 32, true);
    dv.setUint32(4, Math.floor(n / 2 ** 32), true);
    out.set(hb, 8);
    out.set(data, 8 + hb.length);
    return out;
  };
  const four = new Uint8Array(4);
  add("invalid-st-truncated.vera.safetensors", false, "1.1", new Uint8Array([1, 0, 0, 0, 0]), "ST_TRUNCATED");
  add("invalid-st-header-too-large.vera.safetensors", false, "1.1", headerFile("{}", new Uint8Array(0), 2 ** 40), "ST_HEADER_TOO_LARGE");
  add("invalid-st-header-past-end.vera.safetensors", false, "1.1", headerFile("{}", new Uint8Array(0), 64), "ST_TRUNCATED");
  add("invalid-st-header-utf8.vera.safetensors", false, "1.1", headerFile(new Uint8Array([0x7b, 0xff, 0xfe, 0x7d])), "ST_HEADER_UTF8");
  add("invalid-st-header-start.vera.safetensors", false, "1.1", headerFile('[{"a":1}]'), "ST_HEADER_START");
  add("invalid-st-header-json.vera.safetensors", false, "1.1", headerFile('{"a":{"dtype":"F32",}'), "ST_HEADER_JSON");
  add("invalid-st-duplicate-key.vera.safetensors", false, "1.1",
    headerFile('{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', four), "ST_DUPLICATE_KEY");
  add("invalid-st-metadata.vera.safetensors", false, "1.1", headerFile('{"__metadata__":{"format":1}}'), "ST_METADATA");
  add("invalid-st-tensor-entry.vera.safetensors", false, "1.1", headerFile('{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":0}}', four), "ST_TENSOR_ENTRY");
  add("invalid-st-dtype.vera.safetensors", false, "1.1", headerFile('{"t":{"dtype":"F128","shape":[1],"data_offsets":[0,4]}}', four), "ST_DTYPE");
  add("invalid-st-shape.vera.safetensors", false, "1.1", headerFile('{"t":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}', four), "ST_SHAPE");
  add("invalid-st-size-overflow.vera.safetensors", false, "1.1",
    headerFile('{"t":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}', four), "ST_SIZE_OVERFLOW");
  add("invalid-st-offsets-gap.vera.safetensors", false, "1.1",
    headerFile('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}', new Uint8Array(12)), "ST_OFFSETS");
  add("invalid-st-offsets-overlap.vera.safetensors", false, "1.1",
    headerFile('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', new Uint8Array(8)), "ST_OFFSETS");
  add("invalid-st-size-mismatch.vera.safetensors", false, "1.1", headerFile('{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}', four), "ST_SIZE_MISMATCH");
  add("invalid-st-coverage-trailing.vera.safetensors", false, "1.1", headerFile('{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', new Uint8Array(5)), "ST_COVERAGE");
  add("invalid-st-coverage-short.vera.safetensors", false, "1.1", headerFile('{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', new Uint8Array(3)), "ST_COVERAGE");

  // ---- metadata mutations of a valid file: rebuild with a changed metadata object (digest recomputed unless noted)
  const decode = (bytes) => {
    const n = new DataView(bytes.buffer, bytes.byteOffset).getUint32(0, true);
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
    const meta = JSON.parse(header.__metadata__.vera);
    const data = bytes.subarray(8 + n);
    const tensors = Object.entries(header)
      .filter(([k]) => k !== "__metadata__")
      .map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape, data: data.subarray(t.data_offsets[0], t.data_offsets[1]) }));
    return { meta, tensors };
  };
  const rebuild = (meta, tensors, { keepDigest = false, order = "name", rawMeta } = {}) => {
    const sorted = order === "name" ? [...tensors].sort((a, b) => (a.name < b.name ? -1 : 1)) : tensors;
    const total = sorted.reduce((s, t) => s + t.data.length, 0);
    const data = new Uint8Array(total);
    let o = 0;
    for (const t of sorted) {
      data.set(t.data, o);
      o += t.data.length;
    }
    const m = structuredClone(meta);
    if (!keepDigest && m.digest && typeof m.digest === "object") m.digest.data = sha256Hex(data);
    return writeSafetensors({ tensors: sorted, metadata: { format: "vera", vera: rawMeta ?? canonicalJson(m) }, order });
  };
  const good = writeVera({ adapter: base() });
  const mut = (file, code, rule, fn, opts) => {
    const { meta, tensors } = decode(good);
    const t2 = fn(meta, tensors) ?? tensors;
    add(file, false, rule, rebuild(meta, t2, opts), code);
  };
  add("invalid-vera-not-vera.vera.safetensors", false, "2.1",
    writeSafetensors({ tensors: [{ name: "x", dtype: "F32", shape: [1], data: four }], metadata: { format: "pt" } }), "VERA_NOT_VERA");
  mut("invalid-vera-metadata-json.vera.safetensors", "VERA_METADATA_JSON", "2.1", () => {}, { rawMeta: '{"format_version":"1.0",' });
  mut("invalid-vera-version.vera.safetensors", "VERA_VERSION", "2.2", (m) => void (m.format_version = "1"));
  mut("invalid-vera-major.vera.safetensors", "VERA_MAJOR_UNSUPPORTED", "2.3", (m) => void (m.format_version = "2.0"));
  mut("invalid-vera-schema-unknown-field.vera.safetensors", "VERA_SCHEMA", "2.3", (m) => void (m.colour = "blue"));
  mut("invalid-vera-schema-storage.vera.safetensors", "VERA_SCHEMA", "4.7", (m) => void (m.projections.storage = "maybe"));
  mut("invalid-vera-schema-modules-empty.vera.safetensors", "VERA_SCHEMA", "5.1", (m) => void (m.modules = []), {});
  mut("invalid-vera-prng-unknown.vera.safetensors", "VERA_PRNG_UNKNOWN", "4.1", (m) => void (m.prng.algorithm = "numpy.pcg64"));
  mut("invalid-vera-seed-range.vera.safetensors", "VERA_SEED", "4.2", (m) => void (m.prng.seed = "18446744073709551616"));
  mut("invalid-vera-seed-number.vera.safetensors", "VERA_SEED", "4.2", (m) => void (m.prng.seed = 42));
  mut("invalid-vera-arithmetic.vera.safetensors", "VERA_ARITHMETIC", "4.5", (m) => void (m.prng.arithmetic = "fma"));
  mut("invalid-vera-rounding.vera.safetensors", "VERA_ROUNDING", "4.6", (m) => void (m.projections.rounding = "fp8"));
  mut("invalid-vera-rank.vera.safetensors", "VERA_RANK", "4.4", (m) => void (m.projections.rank = 0));
  mut("invalid-vera-max-dims.vera.safetensors", "VERA_MAX_DIMS", "4.4", (m) => void (m.projections.max_in = 0));
  mut("invalid-vera-module-name.vera.safetensors", "VERA_MODULE_NAME", "5.2", (m, t) => {
    m.modules[2].name = "__bad name";
    return t.map((x) => ({ ...x, name: x.name.replace("model.layers.0.self_attn.v_proj", "__bad name") }));
  });
  mut("invalid-vera-module-duplicate.vera.safetensors", "VERA_MODULE_DUPLICATE", "5.2", (m) => void m.modules.push({ ...m.modules[2] }));
  mut("invalid-vera-module-order.vera.safetensors", "VERA_MODULE_ORDER", "5.2", (m) => void m.modules.reverse());
  mut("invalid-vera-module-dims.vera.safetensors", "VERA_MODULE_DIMS", "5.3", (m) => void (m.modules[0].in_features = 0));
  mut("invalid-vera-module-range.vera.safetensors", "VERA_MODULE_RANGE", "5.3", (m) => void (m.modules[1].in_features = 13));
  mut("invalid-vera-layout.vera.safetensors", "VERA_LAYOUT", "5.4", (m) => void (m.modules[0].layout = "conv2d"));
  mut("invalid-vera-tensor-missing.vera.safetensors", "VERA_TENSOR_MISSING", "6.1", (m, t) => t.filter((x) => x.name !== "model.layers.0.self_attn.q_proj.vera_lambda_d"));
  mut("invalid-vera-tensor-missing-stored.vera.safetensors", "VERA_TENSOR_MISSING", "4.7", (m) => void (m.projections.storage = "stored"));
  mut("invalid-vera-tensor-unexpected.vera.safetensors", "VERA_TENSOR_UNEXPECTED", "6.4", (m, t) => [...t, { name: "stray", dtype: "F32", shape: [1], data: four }]);
  mut("invalid-vera-tensor-unexpected-projection.vera.safetensors", "VERA_TENSOR_UNEXPECTED", "4.7", (m, t) => [...t, { name: "vera_B", dtype: "F32", shape: [6, 4], data: new Uint8Array(96) }]);
  mut("invalid-vera-tensor-dtype.vera.safetensors", "VERA_TENSOR_DTYPE", "6.2", (m, t) =>
    t.map((x) => (x.name === "model.layers.0.self_attn.q_proj.vera_lambda_b" ? { ...x, dtype: "I32" } : x)));
  mut("invalid-vera-tensor-dtype-mixed.vera.safetensors", "VERA_TENSOR_DTYPE", "6.2", (m, t) =>
    t.map((x) => (x.name === "model.layers.0.self_attn.q_proj.vera_lambda_b" ? { ...x, dtype: "F16", shape: [12] } : x)));
  mut("invalid-vera-vector-length.vera.safetensors", "VERA_VECTOR_LENGTH", "6.1", (m) => void (m.modules[1].out_features = 5));
  mut("invalid-vera-nonfinite.vera.safetensors", "VERA_NONFINITE", "6.3", (m, t) =>
    t.map((x) => (x.name === "model.layers.0.mlp.down_proj.vera_lambda_d" ? { ...x, data: bytesOf(new Float32Array([0.1, NaN, 0.1, 0.1])) } : x)));
  mut("invalid-vera-projection-shape.vera.safetensors", "VERA_PROJECTION_SHAPE", "4.7", (m, t) => {
    m.projections.storage = "stored";
    return [...t, { name: "vera_A", dtype: "F32", shape: [4, 11], data: new Uint8Array(176) }, { name: "vera_B", dtype: "F32", shape: [6, 4], data: new Uint8Array(96) }];
  });
  mut("invalid-vera-digest-format.vera.safetensors", "VERA_DIGEST_FORMAT", "8.1", (m) => void (m.digest = { algorithm: "md5", data: "00" }));
  mut("invalid-vera-digest-mismatch.vera.safetensors", "VERA_DIGEST_MISMATCH", "8.2", (m) => void (m.digest.data = "0".repeat(64)), { keepDigest: true });

  // ---- valid with warnings
  {
    const { meta, tensors } = decode(good);
    meta.format_version = "1.3";
    meta.future_field = { anything: true };
    add("valid-newer-minor.vera.safetensors", true, "2.3", rebuild(meta, tensors), undefined, "VERA_SCHEMA");
  }
  {
    const { meta, tensors } = decode(good);
    add("valid-not-canonical.vera.safetensors", true, "7", rebuild(meta, [...tensors].reverse(), { order: "given" }), undefined, "VERA_NOT_CANONICAL");
  }
  return vectors;
}

// CLI: write the vectors next to this file.
if (import.meta.url === `file://${process.argv[1]}`) {
  const { writeFileSync, readdirSync, rmSync } = await import("node:fs");
  const { dirname, join } = await import("node:path");
  const { fileURLToPath } = await import("node:url");
  const here = dirname(fileURLToPath(import.meta.url));
  const lib = await import(join(here, "../../dist/index.js"));
  for (const f of readdirSync(here)) if (f.endsWith(".vera.safetensors")) rmSync(join(here, f));
  const vectors = buildVectors(lib);
  for (const v of vectors) writeFileSync(join(here, v.file), v.bytes);
  const manifest = vectors.map(({ bytes: _bytes, ...rest }) => rest);
  writeFileSync(join(here, "manifest.json"), JSON.stringify({ generator: "spec/vectors/build.mjs", vectors: manifest }, null, 2) + "\n");
  console.log(`wrote ${vectors.length} vectors`);
}

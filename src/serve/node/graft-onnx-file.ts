import { promises as fsp } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { ErrorCode, VeraError } from "../../errors.js";
import type { VeraAdapter } from "../../format/types.js";
import { loadAdapterFromPath } from "../../node/load-adapter.js";
import { peftBaseFromOnnx } from "../../peft/base-shapes-from-onnx.js";
import { resolveExternalDataPath } from "../../node/external-data-path.js";
import { copyFileAtomic, readFileBytes, writeFileAtomic } from "../../node/files.js";
import { listLinearWeights } from "../../onnx/list-linear-weights.js";
import { readOnnxModel } from "../../onnx/read-onnx-model.js";
import { graftOnnx, type GraftedModule, type GraftOnnxResult } from "../graft-onnx.js";
import type { GraftSpec } from "../graft-spec.js";
import { allTensors } from "../../onnx/all-tensors.js";

/** Parameters of {@link graftOnnxFile}. */
export interface GraftOnnxFileParams {
  /** Path of the base `.onnx` model. */
  model: string;
  /** The adapter: a verakit file path, a PEFT adapter folder path, or an adapter object (only its spec is used). */
  adapter: string | VeraAdapter;
  /** Path of the grafted `.onnx` to write. */
  output: string;
  /** @default false */
  batched?: boolean;
  /** @default "f32" */
  dtype?: "f32" | "f16";
  /** @default false */
  skipMissing?: boolean;
  /** Default initializers for the d/b inputs, for runtimes that honour them (see `GraftOnnxParams.defaults`). @default false */
  defaults?: boolean;
  /** PEFT sub-adapter name. @default the folder's adapter */
  adapterName?: string;
}

/** What happened to one external data file of the base model. */
export interface GraftDataFile {
  /** The location as written in the model (the grafted model keeps it). */
  location: string;
  /**
   * `referenced`: the output sits in the model's folder and uses the base's file as it is; `copied`: copied unchanged
   * beside the output (a copy-on-write clone where the file system offers one). Never hard-linked: onnx's external-data
   * loader refuses files with several links, and a link would share later in-place edits of the base. `existing`: a
   * file with the same bytes was beside the output already (an earlier graft) and is used as it is.
   */
  mode: "referenced" | "copied" | "existing";
  bytes: number;
}

/** What {@link graftOnnxFile} did. */
export interface GraftOnnxFileReport {
  model: string;
  output: string;
  adapterSource: "vera" | "peft" | "object";
  spec: GraftSpec;
  modules: GraftedModule[];
  /** Carried tensors (modules_to_save, trainable biases) served as per-adapter inputs. */
  carried: GraftOnnxResult["carried"];
  skipped: string[];
  /** Whether the d/b inputs have default initializers. */
  defaults: boolean;
  /** Bytes the graft added to the `.onnx` file. */
  addedBytes: number;
  /** The grafted `.onnx` file's size. */
  outputBytes: number;
  dataFiles: GraftDataFile[];
  warnings: string[];
}

/** Whether two files hold the same `size` bytes (read in 4 MiB pieces). */
async function sameBytes(a: string, b: string, size: number): Promise<boolean> {
  const [fa, fb] = await Promise.all([fsp.open(a, "r"), fsp.open(b, "r")]);
  try {
    if ((await fb.stat()).size !== size) return false;
    const chunk = 4 << 20;
    const ba = Buffer.alloc(chunk);
    const bb = Buffer.alloc(chunk);
    for (let off = 0; off < size; off += chunk) {
      const n = Math.min(chunk, size - off);
      await Promise.all([fa.read(ba, 0, n, off), fb.read(bb, 0, n, off)]);
      if (ba.compare(bb, 0, n, 0, n) !== 0) return false;
    }
    return true;
  } finally {
    await Promise.all([fa.close(), fb.close()]);
  }
}

async function realDir(p: string): Promise<string> {
  try {
    return await fsp.realpath(p);
  } catch (e) {
    throw new VeraError(ErrorCode.IO_NOT_FOUND, `folder not found: ${p}`, { path: p, cause: e });
  }
}

/**
 * Graft an adapter's VeRA branches into an ONNX model file (see `graftOnnx`) and write the grafted model atomically
 * (temporary file + rename; nothing is written on failure). The base's weights are never rewritten: external data
 * files are referenced where they are when the output goes to the model's own folder, and otherwise placed beside the
 * output under the same relative names, copied unchanged (cloned copy-on-write where the file system can; an existing
 * file of that name is refused rather than replaced).
 *
 * @throws VeraError `ONNX_*`, `SERVE_GRAPH_UNSUPPORTED`, `IO_UNSAFE_PATH` (external data outside the model folder), `IO_*`.
 */
export async function graftOnnxFile(params: GraftOnnxFileParams): Promise<GraftOnnxFileReport> {
  const modelPath = resolve(params.model);
  const outPath = resolve(params.output);
  if (modelPath === outPath)
    throw new VeraError(ErrorCode.ARG_INVALID, "the output must not replace the base model", { path: outPath });
  const bytes = await readFileBytes(modelPath);
  const model = readOnnxModel({ bytes });
  let adapter: VeraAdapter;
  let adapterSource: GraftOnnxFileReport["adapterSource"] = "object";
  const warnings: string[] = [];
  if (typeof params.adapter === "string") {
    const weights = listLinearWeights({ model });
    const loaded = await loadAdapterFromPath({
      path: params.adapter,
      base: (peftWeights) => peftBaseFromOnnx({ weights, peftWeights, label: modelPath }),
      ...(params.adapterName !== undefined ? { adapterName: params.adapterName } : {}),
    });
    adapter = loaded.adapter;
    adapterSource = loaded.format;
    warnings.push(...loaded.warnings);
  } else adapter = params.adapter;

  const result = graftOnnx({
    model,
    adapter,
    ...(params.batched !== undefined ? { batched: params.batched } : {}),
    ...(params.dtype !== undefined ? { dtype: params.dtype } : {}),
    ...(params.skipMissing !== undefined ? { skipMissing: params.skipMissing } : {}),
    ...(params.defaults !== undefined ? { defaults: params.defaults } : {}),
  });
  warnings.push(...result.warnings);

  // External data: every location is checked (inside the model folder, no symlink escape) before anything is written.
  const modelDir = dirname(modelPath);
  const locations = new Map<string, { path: string; size: number; parts: string[] }>();
  for (const t of allTensors(model)) {
    if (t.storage.kind !== "external" || locations.has(t.storage.location)) continue;
    const f = await resolveExternalDataPath({ modelDir, location: t.storage.location, tensor: t.name });
    locations.set(t.storage.location, { path: f.path, size: f.size, parts: f.parts });
  }
  const outDir = dirname(outPath);
  // The output folder is created when missing (and removed again if the graft fails).
  let madeDir: string | undefined;
  try {
    madeDir = await fsp.mkdir(outDir, { recursive: true });
  } catch (e) {
    throw new VeraError(ErrorCode.IO_ERROR, `cannot create ${outDir}: ${(e as Error).message}`, {
      path: outDir,
      cause: e,
    });
  }
  const dataFiles: GraftDataFile[] = [];
  const created: string[] = [];
  try {
    const same = (await realDir(modelDir)) === (await realDir(outDir));
    for (const [location, f] of locations) {
      if (same) {
        dataFiles.push({ location, mode: "referenced", bytes: f.size });
        continue;
      }
      const dest = join(outDir, ...f.parts);
      const there = await fsp.lstat(dest).catch(() => undefined);
      if (there?.isFile() && (await sameBytes(f.path, dest, f.size))) {
        dataFiles.push({ location, mode: "existing", bytes: f.size });
        continue;
      }
      if (there)
        throw new VeraError(
          ErrorCode.IO_ERROR,
          `${dest} exists already; the grafted model needs the base's ${JSON.stringify(location)} there: write the output to the model's folder, or to a folder without that file`,
          { path: dest },
        );
      await fsp.mkdir(dirname(dest), { recursive: true });
      await copyFileAtomic({ source: f.path, dest });
      created.push(dest);
      dataFiles.push({ location, mode: "copied", bytes: f.size });
    }
    await writeFileAtomic(outPath, result.bytes);
  } catch (e) {
    for (const p of created) await fsp.rm(p, { force: true }).catch(() => {});
    if (madeDir !== undefined) await fsp.rm(madeDir, { recursive: true, force: true }).catch(() => {});
    throw e;
  }
  return {
    model: modelPath,
    output: outPath,
    adapterSource,
    spec: result.spec,
    modules: result.modules,
    carried: result.carried,
    skipped: result.skipped,
    defaults: result.defaults,
    addedBytes: result.addedBytes,
    outputBytes: result.bytes.length,
    dataFiles,
    warnings,
  };
}

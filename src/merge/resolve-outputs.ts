/**
 * Internal (Node): where a merge writes. Each data file's copy goes under the output folder at the
 * same relative path; nothing may land outside that folder (symlinks) or over an input file.
 */
import { promises as fsp } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { ErrorCode, VeraError } from "../errors.js";
import { isInside } from "../node/path-inside.js";
import type { ContainerDataFile } from "./core/container.js";
import { MergeErrorCode } from "./error-codes.js";

/** Parameters of {@link resolveOutputs}. */
export interface ResolveOutputsParams {
  /** The input model's main file (absolute). */
  input: string;
  /** The output's main file. */
  output: string;
  /** Every data file of the model. */
  files: readonly ContainerDataFile[];
}

/** A data file's output. */
export interface DataFileOutput {
  file: ContainerDataFile;
  /** Final path of its copy. */
  dest: string;
}

/** What {@link resolveOutputs} decides. */
export interface ResolvedOutputs {
  /** The output's main file. */
  output: string;
  files: DataFileOutput[];
}

async function realpathOrSelf(p: string): Promise<string> {
  try {
    return await fsp.realpath(p);
  } catch {
    return p;
  }
}

/**
 * Resolve and check every output path, creating the output folders.
 *
 * @throws VeraError `MERGE_OUTPUT_CONFLICT` (an output would replace an input), `IO_UNSAFE_PATH` (an
 *   output would resolve outside the output folder).
 */
export async function resolveOutputs(params: ResolveOutputsParams): Promise<ResolvedOutputs> {
  const { input } = params;
  const output = resolve(params.output);
  const outDir = dirname(output);
  await fsp.mkdir(outDir, { recursive: true });
  const realOut = join(await realpathOrSelf(outDir), basename(output));
  if (realOut === (await realpathOrSelf(input)))
    throw new VeraError(
      MergeErrorCode.MERGE_OUTPUT_CONFLICT,
      `the output ${output} is the input model; use an in-place merge to replace it`,
      { path: output },
    );
  const realOutDir = await realpathOrSelf(outDir);
  const files: DataFileOutput[] = [];
  for (const file of params.files) {
    const dest = join(outDir, ...file.parts);
    await fsp.mkdir(dirname(dest), { recursive: true });
    const realParent = await realpathOrSelf(dirname(dest));
    if (realParent !== realOutDir && !isInside(realOutDir, realParent))
      throw new VeraError(
        ErrorCode.IO_UNSAFE_PATH,
        `output data file ${dest} would resolve outside the output folder (a symlink to ${realParent})`,
        { path: dest },
      );
    if (join(realParent, basename(dest)) === file.path)
      throw new VeraError(
        MergeErrorCode.MERGE_OUTPUT_CONFLICT,
        `the merged model's data file ${JSON.stringify(file.label)} would replace the input's (${file.path}): write the output to another folder, or merge in place`,
        { path: dest, expected: "an output folder other than the model's", received: outDir },
      );
    files.push({ file, dest });
  }
  return { output, files };
}

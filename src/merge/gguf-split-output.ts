/**
 * Internal (Node): where `-o` puts the parts of a split GGUF: in a folder under their own names, or
 * under a new prefix named by the first part's path.
 */
import { promises as fsp } from "node:fs";
import { basename, join, resolve } from "node:path";
import { ErrorCode, VeraError } from "../errors.js";
import { ggufSplitName, parseGgufSplitName } from "../gguf/split-name.js";

/** Parameters of {@link ggufSplitOutput}. */
export interface GgufSplitOutputParams {
  /** The output as given: a folder (existing, or a new path not ending in `.gguf`), or `<prefix>-00001-of-0000N.gguf`. */
  output: string;
  /** The input parts' file names, in order. */
  names: readonly string[];
}

/** Where the merged parts go. */
export interface GgufSplitOutput {
  /** The first part's output path (absolute): the other parts go beside it. */
  output: string;
  /** Every part's output file name, in order. */
  names: string[];
}

/**
 * Resolve `-o` for a split GGUF of `names.length` parts: a folder keeps the parts' names; a path named
 * `<prefix>-00001-of-0000N.gguf` (the same N) names part k `<prefix>-0000k-of-0000N.gguf`. Creates nothing.
 *
 * @throws VeraError `ARG_INVALID` (any other output: an existing file, a `.gguf` name that is no first
 *   part's, another part count), naming both forms.
 */
export async function ggufSplitOutput(params: GgufSplitOutputParams): Promise<GgufSplitOutput> {
  const out = resolve(params.output);
  const count = params.names.length;
  const first = ggufSplitName({ prefix: "<name>", no: 1, count });
  const invalid = (why: string): VeraError =>
    new VeraError(
      ErrorCode.ARG_INVALID,
      `output ${out} ${why}: a split GGUF of ${count} parts is written either to a folder (existing, or a new ` +
        `path not ending in .gguf; the parts keep their names, ${params.names[0]} ...) or to ${first} ` +
        `(the parts are named <name>-0000k-of-${String(count).padStart(5, "0")}.gguf)`,
      { path: params.output, expected: ["a folder", first], received: basename(out) },
    );
  const split = parseGgufSplitName(basename(out));
  if (split) {
    if (split.no !== 1 || split.count !== count)
      throw invalid(`is part ${split.no} of ${split.count}, not part 1 of ${count}`);
    return {
      output: out,
      names: Array.from({ length: count }, (_, i) => ggufSplitName({ ...split, no: i + 1 })),
    };
  }
  const stat = await fsp.stat(out).catch(() => null);
  if (stat ? !stat.isDirectory() : /\.gguf$/i.test(out))
    throw invalid(stat ? "is an existing file" : "is a single .gguf file name");
  return { output: join(out, params.names[0]!), names: [...params.names] };
}

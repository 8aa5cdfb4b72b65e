/**
 * Internal (Node): a GGUF model's files and headers, by positioned reads: one file, or every part of a
 * split GGUF (llama.cpp's gguf-split: `<name>-00001-of-00003.gguf`, ...) found beside the part given.
 */
import { promises as fsp } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { ErrorCode, VeraError } from "../errors.js";
import { checkGgufSplit } from "../gguf/check-gguf-split.js";
import { GgufErrorCode } from "../gguf/error-codes.js";
import { ggufScalar } from "../gguf/read-gguf.js";
import { ggufSplitName, parseGgufSplitName, type GgufSplitName } from "../gguf/split-name.js";
import type { GgufFile } from "../gguf/types.js";
import { readGgufFile } from "../node/read-gguf-file.js";

/** One file of a GGUF model. */
export interface GgufModelPart {
  /** Its real path (symlinks resolved: what is read, and what an in-place merge replaces). */
  path: string;
  /** Its file name as found (a Hub cache's symlink keeps the part's name; its blob has none). */
  name: string;
  /** Its header, metadata and tensor table. */
  file: GgufFile;
}

/** A GGUF model as read by {@link readGgufModel}. */
export interface GgufModel {
  /** The model's files: one, or every part of a split GGUF in order (the first holds the metadata). */
  parts: GgufModelPart[];
  /** The parts' names, for a split GGUF. */
  split?: GgufSplitName;
}

/** Parameters of {@link readGgufModel}. */
export interface ReadGgufModelParams {
  /** A GGUF file, or any part of a split GGUF. */
  model: string;
}

async function realpathOrNull(path: string): Promise<string | null> {
  try {
    return await fsp.realpath(path);
  } catch {
    return null;
  }
}

/**
 * Read a GGUF model's headers. Given any part of a split GGUF, every part is looked for in the same
 * folder by llama.cpp's names, all headers are read, and the parts are checked to form one model
 * (checkGgufSplit). A file whose split.count is over 1 must carry a split name.
 *
 * @throws VeraError `IO_NOT_FOUND` (no such model), `GGUF_SPLIT` (a missing part, naming every missing
 *   file; split.no / split.count / split.tensors.count that disagree; split.count on a file without a
 *   split name), `GGUF_DUPLICATE` (a tensor in two parts), `GGUF_*` (a broken or truncated file or part,
 *   naming it), `IO_ERROR`.
 */
export async function readGgufModel(params: ReadGgufModelParams): Promise<GgufModel> {
  const given = resolve(params.model);
  const real = await realpathOrNull(given);
  if (real === null) throw new VeraError(ErrorCode.IO_NOT_FOUND, `model not found: ${given}`, { path: params.model });
  const file = await readGgufFile(real, given);
  const split = parseGgufSplitName(basename(given));
  const count = ggufScalar(file, "split.count");
  const n = typeof count === "bigint" ? Number(count) : typeof count === "number" ? count : undefined;
  if (!split) {
    if (n !== undefined && n > 1)
      throw new VeraError(
        GgufErrorCode.GGUF_SPLIT,
        `${given} is one part of a split GGUF (split.count ${n}), but its name is not a part's ` +
          "(<name>-00001-of-0000N.gguf): the other parts cannot be found; give the parts llama.cpp's names",
        { path: given, expected: "<name>-NNNNN-of-MMMMM.gguf", received: basename(given) },
      );
    return { parts: [{ path: real, name: basename(given), file }] };
  }
  if (split.count === 1 && n === undefined) return { parts: [{ path: real, name: basename(given), file }] };
  const dir = dirname(given);
  const names = Array.from({ length: split.count }, (_, i) => ggufSplitName({ ...split, no: i + 1 }));
  const reals = await Promise.all(
    names.map((name, i) => (i + 1 === split.no ? Promise.resolve(real) : realpathOrNull(join(dir, name)))),
  );
  const missing = names.filter((_, i) => reals[i] === null);
  if (missing.length > 0)
    throw new VeraError(
      GgufErrorCode.GGUF_SPLIT,
      `split GGUF ${join(dir, names[0]!)}: ${missing.length} of ${split.count} parts missing in ${dir}: ` +
        `${missing.slice(0, 10).join(", ")}${missing.length > 10 ? `, ... (${missing.length - 10} more)` : ""}`,
      {
        path: join(dir, missing[0]!),
        expected: `${split.count} parts`,
        received: missing.length > 10 ? [...missing.slice(0, 10), "..."] : missing,
      },
    );
  const parts: GgufModelPart[] = [];
  for (const [i, name] of names.entries()) {
    const path = reals[i]!;
    parts.push({ path, name, file: i + 1 === split.no ? file : await readGgufFile(path, join(dir, name)) });
  }
  checkGgufSplit({ parts: parts.map((p) => ({ file: p.file, label: join(dir, p.name) })) });
  return { parts, split: { ...split, no: 1 } };
}

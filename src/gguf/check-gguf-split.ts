import { VeraError } from "../errors.js";
import { GgufErrorCode } from "./error-codes.js";
import { ggufScalar } from "./read-gguf.js";
import type { GgufFile } from "./types.js";

/** One part of a split GGUF, as read. */
export interface GgufSplitPart {
  /** The part's header (readGguf). */
  file: GgufFile;
  /** Its file name or path, for messages. */
  label: string;
}

/** Parameters of {@link checkGgufSplit}. */
export interface CheckGgufSplitParams {
  /** Every part, in the order of their names (part 1 first). */
  parts: readonly GgufSplitPart[];
}

function integer(file: GgufFile, key: string): number | undefined {
  const v = ggufScalar(file, key);
  const n = typeof v === "bigint" ? Number(v) : v;
  return typeof n === "number" && Number.isInteger(n) ? n : undefined;
}

/**
 * Check that the parts of a split GGUF (llama.cpp's gguf-split layout) form one model: part k (0-based)
 * says `split.no = k` and `split.count` = the number of parts, `split.tensors.count` is the number of
 * tensors of all parts together (llama.cpp's loader checks the same), and no tensor name is in two parts.
 * The model's metadata (general.architecture, hyperparameters, tokenizer) is the first part's.
 *
 * @throws VeraError `GGUF_SPLIT` (split.no, split.count or split.tensors.count missing or disagreeing,
 *   naming the part), `GGUF_DUPLICATE` (a tensor in two parts, naming both).
 */
export function checkGgufSplit(params: CheckGgufSplitParams): void {
  const { parts } = params;
  const count = parts.length;
  let tensors = 0;
  for (const [k, { file, label }] of parts.entries()) {
    const no = integer(file, "split.no");
    if (no !== k)
      throw new VeraError(
        GgufErrorCode.GGUF_SPLIT,
        `${label}: split.no is ${no ?? "missing"}, but its name makes it part ${k + 1} of ${count} (split.no ${k})`,
        { path: label, expected: `split.no = ${k}`, received: no ?? null },
      );
    const n = integer(file, "split.count");
    if (n !== count)
      throw new VeraError(
        GgufErrorCode.GGUF_SPLIT,
        `${label}: split.count is ${n ?? "missing"}, but the names give ${count} parts`,
        { path: label, expected: `split.count = ${count}`, received: n ?? null },
      );
    tensors += file.tensors.length;
  }
  const first = parts[0];
  if (!first) return;
  const total = integer(first.file, "split.tensors.count");
  if (total !== tensors)
    throw new VeraError(
      GgufErrorCode.GGUF_SPLIT,
      `${first.label}: split.tensors.count is ${total ?? "missing"}, but the ${count} parts hold ${tensors} tensors`,
      { path: first.label, expected: tensors, received: total ?? null },
    );
  const holder = new Map<string, string>();
  for (const { file, label } of parts)
    for (const t of file.tensors) {
      const other = holder.get(t.name);
      if (other !== undefined)
        throw new VeraError(
          GgufErrorCode.GGUF_DUPLICATE,
          `tensor "${t.name}" is in two parts of the split GGUF: ${other} and ${label}`,
          { path: t.name, received: [other, label] },
        );
      holder.set(t.name, label);
    }
}

/**
 * llama.cpp's names for the parts of a split GGUF (gguf-split, `llama_split_path`): `<prefix>-00001-of-00003.gguf`,
 * the part number 1-based and both numbers zero-padded to five digits.
 */

/** What a split part's file name says. */
export interface GgufSplitName {
  /** The name without `-NNNNN-of-MMMMM.gguf`. */
  prefix: string;
  /** The part's number, 1-based (split.no + 1). */
  no: number;
  /** How many parts (split.count). */
  count: number;
}

import { VeraError } from "../errors.js";
import { GgufErrorCode } from "./error-codes.js";
import { GGUF_LIMITS } from "./read-gguf.js";

const SPLIT_NAME = /^(.*)-(\d{5,})-of-(\d{5,})\.gguf$/;

/**
 * The prefix, number and count of a split part's file name (no folder); undefined for any other name.
 * The numbers are bounded before they are used: a count above GGUF_LIMITS.maxSplitCount (or a number
 * of any length beyond it, `-of-99999999999999999999`) is refused.
 *
 * @throws VeraError `GGUF_LIMIT` for a split count or part number beyond GGUF_LIMITS.maxSplitCount.
 */
export function parseGgufSplitName(name: string): GgufSplitName | undefined {
  const m = SPLIT_NAME.exec(name);
  if (!m) return undefined;
  const limit = GGUF_LIMITS.maxSplitCount;
  for (const digits of [m[2]!, m[3]!]) {
    const v = digits.replace(/^0+/, "");
    if (v.length > String(limit).length || Number(v) > limit)
      throw new VeraError(
        GgufErrorCode.GGUF_LIMIT,
        `split GGUF name ${name.length > 200 ? `${name.slice(0, 200)}...` : name}: ${v.length > 20 ? `${v.slice(0, 20)}...` : v} parts, more than the limit of ${limit} (GGUF_LIMITS.maxSplitCount)`,
        { path: "split count", expected: `<= ${limit}`, received: v.length > 20 ? `${v.slice(0, 20)}...` : v },
      );
  }
  const no = Number(m[2]);
  const count = Number(m[3]);
  if (m[1] === "" || no < 1 || count < 1 || no > count) return undefined;
  return { prefix: m[1]!, no, count };
}

/** The file name of part `no` (1-based) of `count` with this prefix, as llama.cpp names it. */
export function ggufSplitName(params: GgufSplitName): string {
  const pad = (n: number): string => String(n).padStart(5, "0");
  return `${params.prefix}-${pad(params.no)}-of-${pad(params.count)}.gguf`;
}

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

const SPLIT_NAME = /^(.*)-(\d{5,})-of-(\d{5,})\.gguf$/;

/** The prefix, number and count of a split part's file name (no folder); undefined for any other name. */
export function parseGgufSplitName(name: string): GgufSplitName | undefined {
  const m = SPLIT_NAME.exec(name);
  if (!m) return undefined;
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

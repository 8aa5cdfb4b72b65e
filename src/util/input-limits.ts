/**
 * Size limits on input that is read whole into memory: every file and answer is measured (stat, the
 * length of the bytes, a Content-Length) against its kind's limit BEFORE it is read or parsed, and
 * refused with `IO_TOO_LARGE` naming the file, the limit and the size. The container formats' own
 * limits (GGUF counts, the safetensors header length) live with their readers (`GGUF_LIMITS`,
 * `DEFAULT_MAX_HEADER_BYTES`), the Hub's with the Hub client.
 */
import { ErrorCode, VeraError } from "../errors.js";

const MiB = 1024 * 1024;

/** The limits, by kind of input. Documented in the README ("Hostile input: limits and fuzzing"). */
export const INPUT_LIMITS = {
  /**
   * A JSON file or answer: adapter_config.json, config.json, model.safetensors.index.json, a tensor-name
   * mapping, a Hub API answer. The largest real ones are indexes of ~100k-tensor checkpoints (~9 MB).
   */
  jsonBytes: 16 * MiB,
  /** Values (objects, arrays, strings, numbers, literals) in one JSON document: bounds the memory a parse takes. */
  jsonValues: 1 << 20,
  /** Nesting of JSON arrays and objects. */
  jsonDepth: 64,
  /** Any other file read whole: a verakit adapter, PEFT weights, an ONNX protobuf (which cannot exceed 2 GiB). */
  wholeFileBytes: 2 * 1024 * MiB - 1,
} as const;

/** Parameters of {@link checkInputSize}. */
export interface CheckInputSizeParams {
  /** The input's size in bytes (a file's stat size, a Content-Length, a string's length). */
  size: number;
  /** The most bytes allowed. */
  limit: number;
  /** The file or URL, for the message. */
  path: string;
  /** What the input is, e.g. "JSON file". @default "input" */
  what?: string;
}

/**
 * Refuse an input larger than `limit` before it is read.
 *
 * @throws VeraError `IO_TOO_LARGE` naming the input, the limit and the size.
 */
export function checkInputSize(params: CheckInputSizeParams): void {
  const { size, limit, path } = params;
  if (size <= limit) return;
  throw new VeraError(
    ErrorCode.IO_TOO_LARGE,
    `${params.what ?? "input"} ${path} is ${size} bytes, more than the limit of ${limit} bytes: refused before reading it`,
    { path, expected: `<= ${limit} bytes`, received: size },
  );
}

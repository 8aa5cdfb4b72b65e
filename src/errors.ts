import type { ComputeErrorCodeValue } from "./compute/error-codes.js";
import type { GgufErrorCodeValue } from "./gguf/error-codes.js";
import type { HubErrorCodeValue } from "./hub/errors.js";
import type { MergeErrorCodeValue } from "./merge/error-codes.js";
import type { OnnxErrorCodeValue } from "./onnx/error-codes.js";
import type { PeftErrorCodeValue } from "./peft/error-codes.js";
import type { ServeErrorCodeValue } from "./serve/error-codes.js";

/**
 * The one error family of verakit. Every failure that comes from input (a file, a folder, a
 * command line, a server) is a {@link VeraError} with a stable `code`; the message says what was
 * expected, what was found and where.
 */

/** Stable error codes. The string values never change once released; see spec/FORMAT.md section 9. */
export const ErrorCode = {
  // safetensors container (ST_*)
  ST_TRUNCATED: "ST_TRUNCATED",
  ST_HEADER_TOO_LARGE: "ST_HEADER_TOO_LARGE",
  ST_HEADER_UTF8: "ST_HEADER_UTF8",
  ST_HEADER_JSON: "ST_HEADER_JSON",
  ST_HEADER_START: "ST_HEADER_START",
  ST_DUPLICATE_KEY: "ST_DUPLICATE_KEY",
  ST_METADATA: "ST_METADATA",
  ST_TENSOR_ENTRY: "ST_TENSOR_ENTRY",
  ST_DTYPE: "ST_DTYPE",
  ST_SHAPE: "ST_SHAPE",
  ST_SIZE_OVERFLOW: "ST_SIZE_OVERFLOW",
  ST_OFFSETS: "ST_OFFSETS",
  ST_SIZE_MISMATCH: "ST_SIZE_MISMATCH",
  ST_COVERAGE: "ST_COVERAGE",
  // VeRA file (VERA_*)
  VERA_NOT_VERA: "VERA_NOT_VERA",
  VERA_METADATA_JSON: "VERA_METADATA_JSON",
  VERA_VERSION: "VERA_VERSION",
  VERA_MAJOR_UNSUPPORTED: "VERA_MAJOR_UNSUPPORTED",
  VERA_SCHEMA: "VERA_SCHEMA",
  VERA_PRNG_UNKNOWN: "VERA_PRNG_UNKNOWN",
  VERA_ARITHMETIC: "VERA_ARITHMETIC",
  VERA_SEED: "VERA_SEED",
  VERA_ROUNDING: "VERA_ROUNDING",
  VERA_RANK: "VERA_RANK",
  VERA_MODULE_NAME: "VERA_MODULE_NAME",
  VERA_MODULE_DUPLICATE: "VERA_MODULE_DUPLICATE",
  VERA_MODULE_ORDER: "VERA_MODULE_ORDER",
  VERA_MODULE_DIMS: "VERA_MODULE_DIMS",
  VERA_MODULE_RANGE: "VERA_MODULE_RANGE",
  VERA_MAX_DIMS: "VERA_MAX_DIMS",
  VERA_LAYOUT: "VERA_LAYOUT",
  VERA_TENSOR_MISSING: "VERA_TENSOR_MISSING",
  VERA_TENSOR_UNEXPECTED: "VERA_TENSOR_UNEXPECTED",
  VERA_TENSOR_DTYPE: "VERA_TENSOR_DTYPE",
  VERA_VECTOR_LENGTH: "VERA_VECTOR_LENGTH",
  VERA_NONFINITE: "VERA_NONFINITE",
  VERA_PROJECTION_SHAPE: "VERA_PROJECTION_SHAPE",
  VERA_DIGEST_FORMAT: "VERA_DIGEST_FORMAT",
  VERA_DIGEST_MISMATCH: "VERA_DIGEST_MISMATCH",
  VERA_NOT_CANONICAL: "VERA_NOT_CANONICAL",
  // arguments and usage (ARG_*), I/O (IO_*)
  /** An argument or option value is invalid (a malformed number, a missing required value, a size over a limit). */
  ARG_INVALID: "ARG_INVALID",
  /** A file system operation failed (permissions, disk full, a folder where a file was expected). */
  IO_ERROR: "IO_ERROR",
  /** A named file or folder does not exist. */
  IO_NOT_FOUND: "IO_NOT_FOUND",
  /** A path inside a file (external data, a link, a cache entry) leaves the folder it must stay in. */
  IO_UNSAFE_PATH: "IO_UNSAFE_PATH",
  /** An input file (or answer) larger than its kind's limit (INPUT_LIMITS), refused before it is read. */
  IO_TOO_LARGE: "IO_TOO_LARGE",
  /** An input path that is not a regular file (a device, a FIFO, a socket, a folder where a file is read). */
  IO_NOT_A_FILE: "IO_NOT_A_FILE",
} as const;

/** One of the core codes in {@link ErrorCode} (container, file format, arguments, I/O). */
export type CoreErrorCodeValue = (typeof ErrorCode)[keyof typeof ErrorCode];

/**
 * Every error code verakit throws: a closed union of the code tables of every layer (this file's
 * {@link ErrorCode} and each layer's `error-codes.ts`). A new code is one line in its layer's table; the
 * CLI's exit-code table (src/cli/exit-codes.ts) then fails to compile until the code has an exit code.
 */
export type ErrorCodeValue =
  | CoreErrorCodeValue
  | PeftErrorCodeValue
  | OnnxErrorCodeValue
  | ServeErrorCodeValue
  | GgufErrorCodeValue
  | ComputeErrorCodeValue
  | MergeErrorCodeValue
  | HubErrorCodeValue;

/** One problem found in the input: what the validators return and what {@link VeraError} carries. */
export interface Issue {
  /** Stable code, e.g. `VERA_VECTOR_LENGTH`. */
  code: ErrorCodeValue;
  /** Human-readable explanation. */
  message: string;
  /** Where: a JSON-pointer-like path (`/modules/3/in_features`), a tensor name, or a file path. */
  path?: string;
  /** What was expected, in words or as a value. */
  expected?: unknown;
  /** What was found. */
  received?: unknown;
}

/** Options accepted by the {@link VeraError} constructor. */
export interface VeraErrorOptions {
  path?: string;
  expected?: unknown;
  received?: unknown;
  /** All issues, when several were found at once (validation). */
  issues?: Issue[];
  cause?: unknown;
}

/** The error every verakit operation throws on bad input. `code` is stable; `message` is for people. */
export class VeraError extends Error {
  override readonly name = "VeraError";
  readonly code: ErrorCodeValue;
  readonly path?: string;
  readonly expected?: unknown;
  readonly received?: unknown;
  readonly issues: Issue[];

  constructor(code: ErrorCodeValue, message: string, options: VeraErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    if (options.path !== undefined) this.path = options.path;
    if (options.expected !== undefined) this.expected = options.expected;
    if (options.received !== undefined) this.received = options.received;
    this.issues = options.issues ?? [
      {
        code,
        message,
        ...(options.path !== undefined ? { path: options.path } : {}),
        ...(options.expected !== undefined ? { expected: options.expected } : {}),
        ...(options.received !== undefined ? { received: options.received } : {}),
      },
    ];
  }

  /** A plain object for `--json` output. */
  toJSON(): { name: string; code: string; message: string; issues: Issue[] } {
    return { name: this.name, code: this.code, message: this.message, issues: this.issues };
  }

  /** Build an error from a list of issues (the first one gives the code). */
  static fromIssues(issues: Issue[], summary?: string): VeraError {
    const first = issues[0];
    if (!first) throw new Error("VeraError.fromIssues needs at least one issue");
    const message =
      summary ?? (issues.length === 1 ? first.message : `${first.message} (and ${issues.length - 1} more issue(s))`);
    return new VeraError(first.code, message, {
      ...(first.path !== undefined ? { path: first.path } : {}),
      expected: first.expected,
      received: first.received,
      issues,
    });
  }
}

/** True when `e` is a {@link VeraError} (works across bundle copies: checks the name and code). */
export function isVeraError(e: unknown): e is VeraError {
  return (
    e instanceof VeraError ||
    (typeof e === "object" &&
      e !== null &&
      (e as { name?: unknown }).name === "VeraError" &&
      typeof (e as { code?: unknown }).code === "string")
  );
}

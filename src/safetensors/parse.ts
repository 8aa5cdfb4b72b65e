import { ErrorCode, VeraError } from "../errors.js";
import { DTYPE_SIZES, isDtype, type Dtype } from "./dtypes.js";
import type { ByteRangeSource } from "../util/byte-range-source.js";
import { parseStrictJson, StrictJsonError, type JsonValue } from "../util/strict-json.js";

/**
 * Default cap on the JSON header length: 16 MiB (the safetensors crate allows 100 MB, but a header that
 * size costs GBs to parse; real headers of 100k-tensor files are a few MB). The header's JSON holds at
 * most `INPUT_LIMITS.jsonValues` values.
 */
export const DEFAULT_MAX_HEADER_BYTES = 16 * 1024 * 1024;

export type { ByteRangeSource } from "../util/byte-range-source.js";

/** Parameters of {@link readSafetensorsHeader}. */
export interface ReadSafetensorsHeaderParams {
  /** The file, read by ranges: 8 bytes, then the header (never the data section). */
  source: ByteRangeSource;
  /** @default DEFAULT_MAX_HEADER_BYTES */
  maxHeaderBytes?: number;
}

/**
 * Read and validate only a safetensors file's header over a byte-range source: the 8-byte length is
 * checked against the cap and the file size before the header is read (the one header reader of
 * weights files, on disk and in the page).
 *
 * @throws VeraError with an `ST_*` code, as {@link parseSafetensorsHeader}.
 */
export async function readSafetensorsHeader(params: ReadSafetensorsHeaderParams): Promise<SafetensorsHeader> {
  const { source } = params;
  const head = await source.read(0, Math.min(8, source.size));
  const n = readHeaderLength(head, source.size, params.maxHeaderBytes);
  const bytes = await source.read(0, 8 + n);
  return parseSafetensorsHeader({
    bytes,
    fileSize: source.size,
    ...(params.maxHeaderBytes !== undefined ? { maxHeaderBytes: params.maxHeaderBytes } : {}),
  });
}

/** One tensor's entry in a safetensors header. */
export interface TensorInfo {
  dtype: Dtype;
  shape: number[];
  /** [begin, end) relative to the start of the data section. */
  dataOffsets: [number, number];
}

/** A parsed, validated safetensors header. */
export interface SafetensorsHeader {
  /** `__metadata__` (string to string), or an empty object when absent. */
  metadata: Record<string, string>;
  /** Whether the file had a `__metadata__` entry at all. */
  hasMetadata: boolean;
  /** Tensors in the order of their data offsets. */
  tensors: Map<string, TensorInfo>;
  /** Length of the JSON header in bytes (the 8-byte prefix not included). */
  headerLength: number;
  /** Absolute byte offset of the data section (8 + headerLength). */
  dataStart: number;
  /** Length of the data section in bytes. */
  dataLength: number;
}

/** Options for {@link parseSafetensorsHeader}. */
export interface ParseHeaderParams {
  /**
   * Bytes from the start of the file: the whole file, or at least its first 8 + header-length
   * bytes when `fileSize` is given (header-only reading of large weight files).
   */
  bytes: Uint8Array;
  /** Total file size; defaults to `bytes.length`. */
  fileSize?: number;
  /** @default 100_000_000 */
  maxHeaderBytes?: number;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** Read the 8-byte little-endian header length; checks it against the cap before anything is allocated. */
export function readHeaderLength(
  bytes: Uint8Array,
  fileSize: number,
  maxHeaderBytes = DEFAULT_MAX_HEADER_BYTES,
): number {
  if (fileSize < 8 || bytes.length < 8)
    throw new VeraError(ErrorCode.ST_TRUNCATED, `file is ${fileSize} bytes, shorter than the 8-byte header length`, {
      expected: ">= 8 bytes",
      received: fileSize,
      path: "header",
    });
  const dv = new DataView(bytes.buffer, bytes.byteOffset, 8);
  const lo = dv.getUint32(0, true);
  const hi = dv.getUint32(4, true);
  const n = hi * 2 ** 32 + lo;
  if (n > maxHeaderBytes)
    throw new VeraError(
      ErrorCode.ST_HEADER_TOO_LARGE,
      `header length ${n} exceeds the cap of ${maxHeaderBytes} bytes`,
      {
        expected: `<= ${maxHeaderBytes}`,
        received: n,
        path: "header",
      },
    );
  if (8 + n > fileSize)
    throw new VeraError(ErrorCode.ST_TRUNCATED, `header length ${n} runs past the end of the ${fileSize}-byte file`, {
      expected: `<= ${fileSize - 8}`,
      received: n,
      path: "header",
    });
  return n;
}

function isObj(v: JsonValue | undefined): v is { [k: string]: JsonValue } {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * Parse and validate a safetensors header, in the fixed order of the reference implementation:
 * size, header length cap, UTF-8, JSON (no duplicate keys), entry types, dtypes, shapes with
 * overflow-checked byte sizes, offsets sorted and contiguous, exact coverage of the data section.
 * Throws a {@link VeraError} with an `ST_*` code.
 */
export function parseSafetensorsHeader(params: ParseHeaderParams): SafetensorsHeader {
  const { bytes } = params;
  const fileSize = params.fileSize ?? bytes.length;
  const n = readHeaderLength(bytes, fileSize, params.maxHeaderBytes);
  if (bytes.length < 8 + n)
    throw new VeraError(ErrorCode.ST_TRUNCATED, `need ${8 + n} bytes to read the header, have ${bytes.length}`, {
      expected: 8 + n,
      received: bytes.length,
      path: "header",
    });
  const json = decodeHeader(bytes.subarray(8, 8 + n));
  const dataStart = 8 + n;
  const dataLength = fileSize - dataStart;
  let metadata: Record<string, string> = {};
  let hasMetadata = false;
  const entries: Array<[string, TensorInfo]> = [];
  for (const key of Object.keys(json)) {
    const v = json[key];
    if (key === "__metadata__") {
      hasMetadata = true;
      metadata = readMetadata(v);
    } else entries.push([key, readTensorEntry(key, v)]);
  }
  checkCoverage(entries, dataLength);
  return { metadata, hasMetadata, tensors: new Map(entries), headerLength: n, dataStart, dataLength };
}

/** The header bytes as a JSON object: UTF-8, starting with `{`, strict JSON without duplicate keys. */
function decodeHeader(header: Uint8Array): { [k: string]: JsonValue } {
  let text: string;
  try {
    text = utf8.decode(header);
  } catch {
    throw new VeraError(ErrorCode.ST_HEADER_UTF8, "header is not valid UTF-8", { path: "header" });
  }
  if (!text.startsWith("{"))
    throw new VeraError(ErrorCode.ST_HEADER_START, "header does not start with '{'", {
      expected: "{",
      received: text.slice(0, 1),
      path: "header",
    });
  let json: JsonValue;
  try {
    json = parseStrictJson(text);
  } catch (e) {
    if (e instanceof StrictJsonError && e.duplicateKey !== undefined)
      throw new VeraError(ErrorCode.ST_DUPLICATE_KEY, `header names "${e.duplicateKey}" twice`, {
        path: e.duplicateKey,
        received: e.duplicateKey,
      });
    throw new VeraError(ErrorCode.ST_HEADER_JSON, `header is not valid JSON: ${(e as Error).message}`, {
      path: "header",
    });
  }
  if (!isObj(json)) throw new VeraError(ErrorCode.ST_HEADER_JSON, "header JSON is not an object", { path: "header" });

  return json;
}

/** `__metadata__`: an object of strings. */
function readMetadata(v: JsonValue | undefined): Record<string, string> {
  if (!isObj(v))
    throw new VeraError(ErrorCode.ST_METADATA, "__metadata__ must be an object of strings", {
      path: "__metadata__",
      expected: "object",
      received: Array.isArray(v) ? "array" : typeof v,
    });
  const m: Record<string, string> = {};
  for (const mk of Object.keys(v)) {
    const mv = v[mk];
    if (typeof mv !== "string")
      throw new VeraError(ErrorCode.ST_METADATA, `__metadata__.${mk} must be a string`, {
        path: `__metadata__/${mk}`,
        expected: "string",
        received: mv === null ? "null" : typeof mv,
      });
    m[mk] = mv;
  }
  return m;
}

/** One tensor entry: dtype, shape and data_offsets, each checked, the byte size overflow-checked. */
function readTensorEntry(key: string, v: JsonValue | undefined): TensorInfo {
  if (!isObj(v))
    throw new VeraError(ErrorCode.ST_TENSOR_ENTRY, `tensor "${key}" entry is not an object`, { path: key });
  const extra = Object.keys(v).filter((k) => k !== "dtype" && k !== "shape" && k !== "data_offsets");
  if (extra.length > 0)
    throw new VeraError(ErrorCode.ST_TENSOR_ENTRY, `tensor "${key}" has unknown field(s) ${extra.join(", ")}`, {
      path: key,
      expected: "dtype, shape, data_offsets",
      received: Object.keys(v).join(", "),
    });
  const { dtype, shape, data_offsets: offs } = v;
  if (typeof dtype !== "string" || !Array.isArray(shape) || !Array.isArray(offs))
    throw new VeraError(
      ErrorCode.ST_TENSOR_ENTRY,
      `tensor "${key}" needs dtype (string), shape and data_offsets (arrays)`,
      {
        path: key,
      },
    );
  if (!isDtype(dtype))
    throw new VeraError(ErrorCode.ST_DTYPE, `tensor "${key}" has unknown dtype ${JSON.stringify(dtype)}`, {
      path: key,
      expected: Object.keys(DTYPE_SIZES).join("|"),
      received: dtype,
    });
  for (const d of shape)
    if (typeof d !== "number" || !Number.isInteger(d) || d < 0)
      throw new VeraError(ErrorCode.ST_SHAPE, `tensor "${key}" has a shape entry that is not a non-negative integer`, {
        path: key,
        received: JSON.stringify(shape),
      });
  if (offs.length !== 2 || offs.some((o) => typeof o !== "number" || !Number.isInteger(o) || o < 0))
    throw new VeraError(ErrorCode.ST_OFFSETS, `tensor "${key}" data_offsets must be two non-negative integers`, {
      path: key,
      received: JSON.stringify(offs),
    });
  let count = 1n;
  for (const d of shape as number[]) count *= BigInt(d);
  const nbytes = count * BigInt(DTYPE_SIZES[dtype]);
  if (nbytes > BigInt(Number.MAX_SAFE_INTEGER) || (shape as number[]).some((d) => !Number.isSafeInteger(d)))
    throw new VeraError(ErrorCode.ST_SIZE_OVERFLOW, `tensor "${key}" byte size overflows`, {
      path: key,
      received: JSON.stringify(shape),
    });
  const [b, e] = offs as [number, number];
  if (!Number.isSafeInteger(b) || !Number.isSafeInteger(e))
    throw new VeraError(ErrorCode.ST_SIZE_OVERFLOW, `tensor "${key}" offsets overflow`, { path: key });
  return { dtype, shape: shape as number[], dataOffsets: [b, e] };
}

/** The tensors, sorted by offset, cover the data section exactly: contiguous, each its exact size, no trailing bytes. */
function checkCoverage(entries: Array<[string, TensorInfo]>, dataLength: number): void {
  entries.sort((x, y) => x[1].dataOffsets[0] - y[1].dataOffsets[0] || x[1].dataOffsets[1] - y[1].dataOffsets[1]);
  let pos = 0;
  for (const [name, info] of entries) {
    const [b, e] = info.dataOffsets;
    if (b !== pos || e < b)
      throw new VeraError(
        ErrorCode.ST_OFFSETS,
        `tensor "${name}" data_offsets [${b}, ${e}] are not contiguous with the previous tensor (which ends at ${pos})`,
        {
          path: name,
          expected: `begin ${pos}`,
          received: `[${b}, ${e}]`,
        },
      );
    let count = 1;
    for (const d of info.shape) count *= d;
    const nbytes = count * DTYPE_SIZES[info.dtype];
    if (e - b !== nbytes)
      throw new VeraError(
        ErrorCode.ST_SIZE_MISMATCH,
        `tensor "${name}" spans ${e - b} bytes but ${info.dtype} ${JSON.stringify(info.shape)} needs ${nbytes}`,
        {
          path: name,
          expected: nbytes,
          received: e - b,
        },
      );
    pos = e;
  }
  if (pos !== dataLength)
    throw new VeraError(
      ErrorCode.ST_COVERAGE,
      pos < dataLength
        ? `tensors cover ${pos} bytes of a ${dataLength}-byte data section (trailing bytes)`
        : `tensors need ${pos} bytes but the data section has ${dataLength} (truncated file)`,
      { path: "data", expected: pos, received: dataLength },
    );
}

/** A parsed safetensors file held in memory. */
export interface SafetensorsFile extends SafetensorsHeader {
  /** The whole file. */
  bytes: Uint8Array;
}

/** Parse a whole safetensors file held in memory. Throws {@link VeraError} (`ST_*`). */
export function parseSafetensors(bytes: Uint8Array, options: { maxHeaderBytes?: number } = {}): SafetensorsFile {
  const header = parseSafetensorsHeader({ bytes, ...options });
  return { ...header, bytes };
}

/** The raw bytes of one tensor (a view, no copy). */
export function tensorBytes(file: SafetensorsFile, name: string): Uint8Array {
  const info = file.tensors.get(name);
  if (!info) throw new VeraError(ErrorCode.VERA_TENSOR_MISSING, `no tensor named "${name}"`, { path: name });
  return file.bytes.subarray(file.dataStart + info.dataOffsets[0], file.dataStart + info.dataOffsets[1]);
}

/** Copy bytes into a fresh, aligned buffer and view them as a typed array. */
function aligned<T>(b: Uint8Array, size: number, make: (buf: ArrayBuffer, off: number, len: number) => T): T {
  if (b.byteOffset % size === 0) return make(b.buffer as ArrayBuffer, b.byteOffset, b.byteLength / size);
  const copy = b.slice();
  return make(copy.buffer, 0, copy.byteLength / size);
}

/** View the bytes of an F32 tensor as a Float32Array (copies only when unaligned). */
export function asFloat32(b: Uint8Array): Float32Array {
  return aligned(b, 4, (buf, off, len) => new Float32Array(buf, off, len));
}

/** View the bytes of an F16/BF16 tensor as a Uint16Array of bit patterns (copies only when unaligned). */
export function asUint16(b: Uint8Array): Uint16Array {
  return aligned(b, 2, (buf, off, len) => new Uint16Array(buf, off, len));
}

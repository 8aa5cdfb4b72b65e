import { VeraError } from "../errors.js";
import { GgufErrorCode } from "./error-codes.js";
import { ggmlByteLength } from "./ggml-types.js";
import {
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_MAGIC,
  GGUF_VERSION,
  GgufValueType,
  type GgufByteSource,
  type GgufFile,
  type GgufScalar,
  type GgufTensorInfo,
  type GgufValue,
  type GgufValueTypeId,
} from "./types.js";

/** Parameters of {@link readGguf}. */
export interface ReadGgufParams {
  /** Where the bytes come from (a file read by ranges, or bytes in memory through `bytesSource`). */
  source: GgufByteSource;
  /**
   * Bytes read per request while walking the header.
   * @default 1048576
   */
  chunkSize?: number;
  /** Name used in error messages (a file path). @default "gguf" */
  label?: string;
}

/** ggml's GGML_MAX_NAME: tensor names are shorter than 64 bytes. */
export const GGUF_MAX_TENSOR_NAME = 63;
const MAX_KEY = 65535;

const MiB = 1024 * 1024;

/**
 * What {@link readGguf} (and the split-name parser) accepts, checked before anything is allocated
 * (GGUF_LIMIT beyond them). Real files are far below: a Llama 3 header (128k-token vocabulary, 280k
 * merges) is ~10 MB with ~540k array items and ~300 tensors. Documented in spec/FORMAT.md and the README.
 */
export const GGUF_LIMITS = {
  /** Bytes from the start of the file to the end of the tensor table (the header, metadata and tensor infos). */
  maxHeaderBytes: 128 * MiB,
  /** Entries in the tensor table. */
  maxTensors: 1 << 18,
  /** Metadata key/value entries. */
  maxMetadataEntries: 1 << 16,
  /** Items of all metadata arrays together (nested arrays count their items too). */
  maxArrayItems: 1 << 22,
  /** Bytes of one metadata string value. */
  maxStringBytes: 64 * MiB,
  /** Parts of a split GGUF (`-of-NNNNN` in its file names). */
  maxSplitCount: 1024,
} as const;

function limitError(label: string, what: string, n: number | bigint, limit: number): VeraError {
  return new VeraError(
    GgufErrorCode.GGUF_LIMIT,
    `${label}: ${what} is ${n}, more than the reader's limit of ${limit} (GGUF_LIMITS)`,
    { path: what, expected: `<= ${limit}`, received: typeof n === "bigint" ? n.toString() : n },
  );
}
const MAX_DIMS = 4;
const SCALAR_SIZE: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
const utf8 = new TextDecoder("utf-8", { fatal: true });

/** UTF-8 with a fast path for short ASCII strings (vocabularies are mostly that). */
function decodeUtf8(buf: Uint8Array, o: number, n: number, label: string, what: string): string {
  if (n <= 64) {
    let s = "";
    let i = 0;
    for (; i < n; i++) {
      const c = buf[o + i]!;
      if (c >= 0x80) break;
      s += String.fromCharCode(c);
    }
    if (i === n) return s;
  }
  try {
    return utf8.decode(buf.subarray(o, o + n));
  } catch {
    throw new VeraError(GgufErrorCode.GGUF_STRING, `${label}: ${what} is not valid UTF-8`, { path: what });
  }
}

class Cursor {
  pos = 0;
  /** Items of the metadata arrays read so far (GGUF_LIMITS.maxArrayItems). */
  arrayItems = 0;
  private buf: Uint8Array = new Uint8Array(0);
  private view: DataView = new DataView(new ArrayBuffer(0));
  private start = 0;
  constructor(
    private readonly src: GgufByteSource,
    private readonly chunk: number,
    readonly label: string,
  ) {}
  get left(): number {
    return this.src.size - this.pos;
  }
  truncated(what: string, n: number): VeraError {
    return new VeraError(
      GgufErrorCode.GGUF_TRUNCATED,
      `${this.label}: ${what} needs ${n} bytes at offset ${this.pos}, the file has ${this.left} left`,
      { path: what, expected: this.pos + n, received: this.src.size },
    );
  }
  async need(n: number, what: string): Promise<void> {
    if (n > this.left) throw this.truncated(what, n);
    if (this.pos + n > GGUF_LIMITS.maxHeaderBytes)
      throw limitError(this.label, `the header (up to ${what})`, this.pos + n, GGUF_LIMITS.maxHeaderBytes);
    if (this.pos >= this.start && this.pos + n <= this.start + this.buf.byteLength) return;
    const len = Math.min(this.left, Math.max(n, this.chunk));
    const got = await this.src.read(this.pos, len);
    if (got.byteLength !== len) throw this.truncated(what, len);
    this.buf = got;
    this.view = new DataView(got.buffer, got.byteOffset, got.byteLength);
    this.start = this.pos;
  }
  private at(): number {
    return this.pos - this.start;
  }
  private avail(n: number): boolean {
    return this.pos >= this.start && this.pos + n <= this.start + this.buf.byteLength;
  }
  /**
   * The next scalar when its bytes are already buffered (no await: a 150k-entry vocabulary reads in
   * milliseconds), else undefined with nothing consumed. Validation as in {@link scalar}.
   */
  scalarIfBuffered(type: number, what: string): GgufScalar | undefined {
    if (type === GgufValueType.STRING) {
      if (!this.avail(8)) return undefined;
      const at = this.at();
      const n = this.view.getUint32(at, true) + this.view.getUint32(at + 4, true) * 2 ** 32;
      if (n > this.left - 8 || n > GGUF_LIMITS.maxStringBytes || !this.avail(8 + n)) return undefined;
      const v = decodeUtf8(this.buf, at + 8, n, this.label, what);
      this.pos += 8 + n;
      return v;
    }
    if (!this.avail(SCALAR_SIZE[type]!)) return undefined;
    return this.scalarAt(type, what);
  }
  async u32(what: string): Promise<number> {
    await this.need(4, what);
    const v = this.view.getUint32(this.at(), true);
    this.pos += 4;
    return v;
  }
  async u64(what: string): Promise<bigint> {
    await this.need(8, what);
    const v = this.view.getBigUint64(this.at(), true);
    this.pos += 8;
    return v;
  }
  /** A uint64 that must be a count fitting in what is left, each item taking at least `minItem` bytes. */
  async count(what: string, minItem: number): Promise<number> {
    const v = await this.u64(what);
    if (v > BigInt(Math.floor(this.left / Math.max(minItem, 1))))
      throw new VeraError(
        GgufErrorCode.GGUF_COUNT,
        `${this.label}: ${what} is ${v}, but ${this.left} bytes left hold at most ${Math.floor(this.left / Math.max(minItem, 1))}`,
        { path: what, expected: `<= ${Math.floor(this.left / Math.max(minItem, 1))}`, received: v.toString() },
      );
    return Number(v);
  }
  async bytes(n: number, what: string): Promise<Uint8Array> {
    await this.need(n, what);
    const b = this.buf.subarray(this.at(), this.at() + n);
    this.pos += n;
    return b;
  }
  async str(what: string, max: number = GGUF_LIMITS.maxStringBytes): Promise<string> {
    const n = await this.count(`${what} length`, 1);
    if (n > max && max === GGUF_LIMITS.maxStringBytes) throw limitError(this.label, `${what} length`, n, max);
    if (n > max)
      throw new VeraError(GgufErrorCode.GGUF_STRING, `${this.label}: ${what} is ${n} bytes, at most ${max} allowed`, {
        path: what,
        expected: `<= ${max}`,
        received: n,
      });
    const b = await this.bytes(n, what);
    try {
      return utf8.decode(b);
    } catch {
      throw new VeraError(GgufErrorCode.GGUF_STRING, `${this.label}: ${what} is not valid UTF-8`, { path: what });
    }
  }
  async scalar(type: number, what: string): Promise<GgufScalar> {
    if (type === GgufValueType.STRING) return this.str(what);
    await this.need(SCALAR_SIZE[type]!, what);
    return this.scalarAt(type, what);
  }
  private scalarAt(type: number, what: string): GgufScalar {
    const size = SCALAR_SIZE[type]!;
    const o = this.at();
    const v = this.view;
    this.pos += size;
    switch (type) {
      case 0:
        return v.getUint8(o);
      case 1:
        return v.getInt8(o);
      case 2:
        return v.getUint16(o, true);
      case 3:
        return v.getInt16(o, true);
      case 4:
        return v.getUint32(o, true);
      case 5:
        return v.getInt32(o, true);
      case 6:
        return v.getFloat32(o, true);
      case 7: {
        const b = v.getUint8(o);
        if (b > 1)
          throw new VeraError(
            GgufErrorCode.GGUF_VALUE_TYPE,
            `${this.label}: ${what}: a bool must be 0 or 1, found ${b}`,
            {
              path: what,
              received: b,
            },
          );
        return b === 1;
      }
      case 10:
        return v.getBigUint64(o, true);
      case 11:
        return v.getBigInt64(o, true);
      default:
        return v.getFloat64(o, true);
    }
  }
}

function valueType(t: number, label: string, what: string): GgufValueTypeId {
  if (!Number.isInteger(t) || t < 0 || t > 12)
    throw new VeraError(GgufErrorCode.GGUF_VALUE_TYPE, `${label}: ${what}: unknown metadata value type ${t}`, {
      path: what,
      expected: "0..12",
      received: t,
    });
  return t as GgufValueTypeId;
}

async function readValue(c: Cursor, type: GgufValueTypeId, what: string, depth: number): Promise<GgufValue> {
  if (type !== GgufValueType.ARRAY) return { type, value: await c.scalar(type, what) };
  if (depth > 8)
    throw new VeraError(GgufErrorCode.GGUF_VALUE_TYPE, `${c.label}: ${what}: arrays nested deeper than 8`, {
      path: what,
    });
  const itemType = valueType(await c.u32(`${what} item type`), c.label, what);
  const min = itemType === GgufValueType.STRING ? 8 : itemType === GgufValueType.ARRAY ? 12 : SCALAR_SIZE[itemType]!;
  const n = await c.count(`${what} array length`, min);
  c.arrayItems += n;
  if (c.arrayItems > GGUF_LIMITS.maxArrayItems)
    throw limitError(
      c.label,
      `${what} array length (items of all arrays so far)`,
      c.arrayItems,
      GGUF_LIMITS.maxArrayItems,
    );
  if (itemType === GgufValueType.ARRAY) {
    const items: GgufValue[] = [];
    for (let i = 0; i < n; i++) items.push(await readValue(c, itemType, `${what}[${i}]`, depth + 1));
    return { type: 9, itemType: 9, value: items };
  }
  const items: GgufScalar[] = new Array<GgufScalar>(n);
  for (let i = 0; i < n; i++)
    items[i] = c.scalarIfBuffered(itemType, what) ?? (await c.scalar(itemType, `${what}[${i}]`));
  return { type: 9, itemType, value: items };
}

/**
 * Read a GGUF v3 file's header, metadata and tensor table over a byte-range source (the tensor data
 * is not read). Checks, in order: magic, version, counts against the bytes left (before allocating),
 * every metadata value type, UTF-8 keys and names, duplicate keys and tensor names, dims (1..4,
 * whole blocks), known ggml types, general.alignment (a power of two), and that every tensor's data is
 * aligned, inside the file and overlaps no other tensor.
 *
 * @throws VeraError with a `GGUF_*` code ({@link GgufErrorCode}).
 */
export async function readGguf(params: ReadGgufParams): Promise<GgufFile> {
  const label = params.label ?? "gguf";
  const c = new Cursor(params.source, params.chunkSize ?? 1 << 20, label);
  const magic = await c.u32("magic");
  if (magic !== GGUF_MAGIC)
    throw new VeraError(GgufErrorCode.GGUF_MAGIC, `${label}: not a GGUF file (magic 0x${magic.toString(16)})`, {
      path: "magic",
      expected: "GGUF",
      received: `0x${magic.toString(16)}`,
    });
  const version = await c.u32("version");
  if (version !== GGUF_VERSION)
    throw new VeraError(GgufErrorCode.GGUF_VERSION, `${label}: GGUF version ${version}, only 3 is read`, {
      path: "version",
      expected: GGUF_VERSION,
      received: version,
    });
  // smallest tensor info: name length 8, n_dims 4, one dim 8, type 4, offset 8
  const tensorCount = await c.count("tensor_count", 32);
  if (tensorCount > GGUF_LIMITS.maxTensors)
    throw limitError(label, "tensor_count", tensorCount, GGUF_LIMITS.maxTensors);
  // smallest key/value: key length 8, type 4, a uint8 value 1
  const kvCount = await c.count("metadata_kv_count", 13);
  if (kvCount > GGUF_LIMITS.maxMetadataEntries)
    throw limitError(label, "metadata_kv_count", kvCount, GGUF_LIMITS.maxMetadataEntries);
  const metadata = new Map<string, GgufValue>();
  for (let i = 0; i < kvCount; i++) {
    const key = await c.str(`metadata key #${i}`, MAX_KEY);
    if (metadata.has(key))
      throw new VeraError(GgufErrorCode.GGUF_DUPLICATE, `${label}: metadata key "${key}" appears twice`, { path: key });
    const type = valueType(await c.u32(`${key} type`), label, key);
    metadata.set(key, await readValue(c, type, key, 0));
  }
  let alignment = GGUF_DEFAULT_ALIGNMENT;
  const al = metadata.get("general.alignment");
  if (al) {
    const v = al.value;
    if (al.type !== GgufValueType.UINT32 || typeof v !== "number" || v === 0 || (v & (v - 1)) !== 0)
      throw new VeraError(GgufErrorCode.GGUF_ALIGNMENT, `${label}: general.alignment must be a uint32 power of two`, {
        path: "general.alignment",
        expected: "uint32 power of two",
        received: Array.isArray(v) ? "array" : String(v),
      });
    alignment = v;
  }
  const tensors: GgufTensorInfo[] = [];
  const names = new Set<string>();
  for (let i = 0; i < tensorCount; i++) {
    const name = await c.str(`tensor #${i} name`, GGUF_MAX_TENSOR_NAME);
    if (names.has(name))
      throw new VeraError(GgufErrorCode.GGUF_DUPLICATE, `${label}: tensor "${name}" appears twice`, { path: name });
    names.add(name);
    const nDims = await c.u32(`${name} n_dims`);
    if (nDims < 1 || nDims > MAX_DIMS)
      throw new VeraError(GgufErrorCode.GGUF_TENSOR_SHAPE, `${label}: tensor "${name}" has ${nDims} dims (1..4)`, {
        path: name,
        expected: "1..4",
        received: nDims,
      });
    const ne: number[] = [];
    for (let d = 0; d < nDims; d++) {
      const v = await c.u64(`${name} ne[${d}]`);
      if (v > BigInt(Number.MAX_SAFE_INTEGER))
        throw new VeraError(GgufErrorCode.GGUF_COUNT, `${label}: tensor "${name}" ne[${d}] = ${v} is absurd`, {
          path: name,
          received: v.toString(),
        });
      ne.push(Number(v));
    }
    const type = await c.u32(`${name} type`);
    const byteLength = ggmlByteLength(type, ne, name);
    const off = await c.u64(`${name} offset`);
    if (off > BigInt(Number.MAX_SAFE_INTEGER))
      throw new VeraError(GgufErrorCode.GGUF_TENSOR_RANGE, `${label}: tensor "${name}" offset ${off} is absurd`, {
        path: name,
        received: off.toString(),
      });
    tensors.push({ name, ne, type, offset: Number(off), byteLength });
  }
  const dataOffset = Math.ceil(c.pos / alignment) * alignment;
  const dataSize = params.source.size - dataOffset;
  const sorted = [...tensors].sort((x, y) => x.offset - y.offset);
  let end = 0;
  let prev = "";
  for (const t of sorted) {
    if (t.offset % alignment !== 0)
      throw new VeraError(
        GgufErrorCode.GGUF_TENSOR_RANGE,
        `${label}: tensor "${t.name}" data offset ${t.offset} is not a multiple of the alignment ${alignment}`,
        { path: t.name, expected: `multiple of ${alignment}`, received: t.offset },
      );
    if (t.offset < end)
      throw new VeraError(
        GgufErrorCode.GGUF_TENSOR_RANGE,
        `${label}: tensor "${t.name}" (data at ${t.offset}) overlaps tensor "${prev}" (ends at ${end})`,
        { path: t.name, expected: `>= ${end}`, received: t.offset },
      );
    if (t.offset + t.byteLength > dataSize)
      throw new VeraError(
        GgufErrorCode.GGUF_TRUNCATED,
        `${label}: tensor "${t.name}" data [${t.offset}, ${t.offset + t.byteLength}) lies beyond the file's ${Math.max(dataSize, 0)} data bytes`,
        { path: t.name, expected: dataOffset + t.offset + t.byteLength, received: params.source.size },
      );
    end = t.offset + t.byteLength;
    prev = t.name;
  }
  return { version, metadata, tensors, alignment, dataOffset, size: params.source.size };
}

/** A metadata value's scalar, or undefined when the key is absent or holds an array. */
export function ggufScalar(file: Pick<GgufFile, "metadata">, key: string): GgufScalar | undefined {
  const v = file.metadata.get(key);
  return v && v.type !== GgufValueType.ARRAY ? v.value : undefined;
}

import { INPUT_LIMITS } from "./input-limits.js";

/**
 * A small strict JSON parser (RFC 8259) used for headers: unlike `JSON.parse` it rejects duplicate
 * object keys and bounds nesting depth, so hostile headers end in a typed error, never a crash.
 * @internal
 */
export class StrictJsonError extends Error {
  override readonly name = "StrictJsonError";
  constructor(
    message: string,
    readonly position: number,
    readonly duplicateKey?: string,
  ) {
    super(message);
  }
}

/** A parsed JSON value. Objects have no prototype (no __proto__ tricks). */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/**
 * How {@link parseJsonWith} builds values, so one strict parser serves every JSON dialect verakit reads
 * (plain JSON here, Python's `json` in the PEFT converters). @internal
 */
export interface JsonBuilder<V, O, A> {
  object(): O;
  has(o: O, key: string): boolean;
  set(o: O, key: string, v: V): void;
  finishObject(o: O): V;
  array(): A;
  push(a: A, v: V): void;
  finishArray(a: A): V;
  string(s: string): V;
  /** `raw` is the number token; `isFloat` when it has a fraction or an exponent. */
  number(raw: string, isFloat: boolean): V;
  literal(v: boolean | null): V;
  /** When defined, Python's `NaN`, `Infinity` and `-Infinity` tokens are accepted. */
  nonFinite?(v: number): V;
}

/**
 * Parse `text` strictly (RFC 8259, plus the builder's extensions): duplicate keys, nesting deeper
 * than `maxDepth` and more than `maxValues` values (which bounds the memory a parse takes, whatever
 * the text) are errors. Throws {@link StrictJsonError}. @internal
 */
export function parseJsonWith<V, O, A>(
  text: string,
  b: JsonBuilder<V, O, A>,
  maxDepth: number = INPUT_LIMITS.jsonDepth,
  maxValues: number = INPUT_LIMITS.jsonValues,
): V {
  const c: Cursor = { text, i: 0 };
  let values = 0;
  const n = text.length;
  const words: Array<[string, () => V]> = [
    ["true", () => b.literal(true)],
    ["false", () => b.literal(false)],
    ["null", () => b.literal(null)],
  ];
  if (b.nonFinite) {
    const nf = b.nonFinite.bind(b);
    words.push(["NaN", () => nf(NaN)], ["Infinity", () => nf(Infinity)], ["-Infinity", () => nf(-Infinity)]);
  }
  const parseObject = (depth: number): V => {
    const obj = b.object();
    if (openEmpty(c, "}")) return b.finishObject(obj);
    do {
      skipWs(c);
      if (text[c.i] !== '"') failAt(c, "expected a string key");
      const keyPos = c.i;
      const key = parseString(c);
      if (b.has(obj, key)) throw new StrictJsonError(`duplicate key "${key}" at position ${keyPos}`, keyPos, key);
      skipWs(c);
      if (text[c.i] !== ":") failAt(c, "expected ':'");
      c.i++;
      b.set(obj, key, parseValue(depth + 1));
    } while (!afterItem(c, "}"));
    return b.finishObject(obj);
  };
  const parseArray = (depth: number): V => {
    const arr = b.array();
    if (openEmpty(c, "]")) return b.finishArray(arr);
    do b.push(arr, parseValue(depth + 1));
    while (!afterItem(c, "]"));
    return b.finishArray(arr);
  };
  const parseValue = (depth: number): V => {
    if (depth > maxDepth) failAt(c, `nesting deeper than ${maxDepth}`);
    if (++values > maxValues) failAt(c, `more than ${maxValues} values`);
    skipWs(c);
    if (c.i >= n) failAt(c, "unexpected end of input");
    const ch = text[c.i];
    if (ch === "{") return parseObject(depth);
    if (ch === "[") return parseArray(depth);
    if (ch === '"') return b.string(parseString(c));
    for (const [word, make] of words)
      if (text.startsWith(word, c.i)) {
        c.i += word.length;
        return make();
      }
    NUMBER_RE.lastIndex = c.i;
    const m = NUMBER_RE.exec(text);
    if (!m || m[0].length === 0) failAt(c, "unexpected character");
    c.i += m![0].length;
    return b.number(m![0], m![1] !== undefined || m![2] !== undefined);
  };
  const v = parseValue(0);
  skipWs(c);
  if (c.i !== n) failAt(c, "trailing characters");
  return v;
}

/** Internal: a text and the position the parser is at. */
interface Cursor {
  text: string;
  i: number;
}

const NUMBER_RE = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;
const ESCAPES: Record<string, string> = {
  '"': '"',
  "\\": "\\",
  "/": "/",
  b: "\b",
  f: "\f",
  n: "\n",
  r: "\r",
  t: "\t",
};

function skipWs(c: Cursor): void {
  const { text } = c;
  while (c.i < text.length) {
    const ch = text.charCodeAt(c.i);
    if (ch === 0x20 || ch === 0x0a || ch === 0x0d || ch === 0x09) c.i++;
    else break;
  }
}

function failAt(c: Cursor, msg: string): never {
  throw new StrictJsonError(`${msg} at position ${c.i}`, c.i);
}

/** Step over an opening bracket and whitespace; true (its closing bracket consumed too) when the value is empty. */
function openEmpty(c: Cursor, close: "}" | "]"): boolean {
  c.i++;
  skipWs(c);
  if (c.text[c.i] !== close) return false;
  c.i++;
  return true;
}

/** After an object member or array element: false after a comma, true at the closing bracket (consumed). */
function afterItem(c: Cursor, close: "}" | "]"): boolean {
  skipWs(c);
  const ch = c.text[c.i];
  if (ch !== "," && ch !== close) failAt(c, `expected ',' or '${close}'`);
  c.i++;
  return ch === close;
}

/** A JSON string at the cursor (which is on its opening quote). */
function parseString(c: Cursor): string {
  const { text } = c;
  const n = text.length;
  c.i++;
  let out = "";
  let start = c.i;
  for (;;) {
    if (c.i >= n) failAt(c, "unterminated string");
    const ch = text.charCodeAt(c.i);
    if (ch === 0x22) {
      out += text.slice(start, c.i);
      c.i++;
      return out;
    }
    if (ch < 0x20) failAt(c, "control character in string");
    if (ch === 0x5c) {
      out += text.slice(start, c.i);
      c.i++;
      if (c.i >= n) failAt(c, "unterminated escape");
      const e = text[c.i]!;
      if (e === "u") {
        const hex = text.slice(c.i + 1, c.i + 5);
        if (!/^[0-9a-fA-F]{4}$/.test(hex)) failAt(c, "bad \\u escape");
        out += String.fromCharCode(parseInt(hex, 16));
        c.i += 4;
      } else if (Object.hasOwn(ESCAPES, e)) out += ESCAPES[e];
      else failAt(c, "bad escape");
      c.i++;
      start = c.i;
    } else c.i++;
  }
}

type JsonObject = { [key: string]: JsonValue };
const plainJson: JsonBuilder<JsonValue, JsonObject, JsonValue[]> = {
  object: () => Object.create(null) as JsonObject,
  has: (o, k) => Object.prototype.hasOwnProperty.call(o, k),
  set: (o, k, v) => void (o[k] = v),
  finishObject: (o) => o,
  array: () => [],
  push: (a, v) => void a.push(v),
  finishArray: (a) => a,
  string: (s) => s,
  number: (raw) => Number(raw),
  literal: (v) => v,
};

/**
 * Parse `text` strictly: RFC 8259 JSON, no duplicate keys, bounded nesting and value count
 * ({@link INPUT_LIMITS}). Throws {@link StrictJsonError}. @internal
 */
export function parseStrictJson(text: string, maxDepth: number = INPUT_LIMITS.jsonDepth): JsonValue {
  return parseJsonWith(text, plainJson, maxDepth);
}

/** Serialise a JSON value canonically: object keys sorted by code unit, no whitespace. @internal */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== "object") {
    if (typeof value === "number" && !Number.isFinite(value)) throw new TypeError("non-finite number in JSON");
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map((v) => canonicalJson(v)).join(",")}]`;
  const keys = Object.keys(value as object)
    .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
    .sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`).join(",")}}`;
}

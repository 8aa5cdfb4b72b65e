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
  let i = 0;
  let values = 0;
  const n = text.length;
  const ws = () => {
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) i++;
      else break;
    }
  };
  const fail = (msg: string): never => {
    throw new StrictJsonError(`${msg} at position ${i}`, i);
  };
  const parseString = (): string => {
    // assumes text[i] === '"'
    i++;
    let out = "";
    let start = i;
    for (;;) {
      if (i >= n) fail("unterminated string");
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        out += text.slice(start, i);
        i++;
        return out;
      }
      if (c < 0x20) fail("control character in string");
      if (c === 0x5c) {
        out += text.slice(start, i);
        i++;
        if (i >= n) fail("unterminated escape");
        const e = text[i];
        switch (e) {
          case '"':
            out += '"';
            break;
          case "\\":
            out += "\\";
            break;
          case "/":
            out += "/";
            break;
          case "b":
            out += "\b";
            break;
          case "f":
            out += "\f";
            break;
          case "n":
            out += "\n";
            break;
          case "r":
            out += "\r";
            break;
          case "t":
            out += "\t";
            break;
          case "u": {
            const hex = text.slice(i + 1, i + 5);
            if (!/^[0-9a-fA-F]{4}$/.test(hex)) fail("bad \\u escape");
            out += String.fromCharCode(parseInt(hex, 16));
            i += 4;
            break;
          }
          default:
            fail("bad escape");
        }
        i++;
        start = i;
      } else i++;
    }
  };
  const numberRe = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;
  const words: Array<[string, () => V]> = [
    ["true", () => b.literal(true)],
    ["false", () => b.literal(false)],
    ["null", () => b.literal(null)],
  ];
  if (b.nonFinite) {
    const nf = b.nonFinite.bind(b);
    words.push(["NaN", () => nf(NaN)], ["Infinity", () => nf(Infinity)], ["-Infinity", () => nf(-Infinity)]);
  }
  const parseValue = (depth: number): V => {
    if (depth > maxDepth) fail(`nesting deeper than ${maxDepth}`);
    if (++values > maxValues) fail(`more than ${maxValues} values`);
    ws();
    if (i >= n) fail("unexpected end of input");
    const c = text[i];
    if (c === "{") {
      i++;
      const obj = b.object();
      ws();
      if (text[i] === "}") {
        i++;
        return b.finishObject(obj);
      }
      for (;;) {
        ws();
        if (text[i] !== '"') fail("expected a string key");
        const keyPos = i;
        const key = parseString();
        if (b.has(obj, key)) throw new StrictJsonError(`duplicate key "${key}" at position ${keyPos}`, keyPos, key);
        ws();
        if (text[i] !== ":") fail("expected ':'");
        i++;
        b.set(obj, key, parseValue(depth + 1));
        ws();
        if (text[i] === ",") {
          i++;
          continue;
        }
        if (text[i] === "}") {
          i++;
          return b.finishObject(obj);
        }
        fail("expected ',' or '}'");
      }
    }
    if (c === "[") {
      i++;
      const arr = b.array();
      ws();
      if (text[i] === "]") {
        i++;
        return b.finishArray(arr);
      }
      for (;;) {
        b.push(arr, parseValue(depth + 1));
        ws();
        if (text[i] === ",") {
          i++;
          continue;
        }
        if (text[i] === "]") {
          i++;
          return b.finishArray(arr);
        }
        fail("expected ',' or ']'");
      }
    }
    if (c === '"') return b.string(parseString());
    for (const [word, make] of words)
      if (text.startsWith(word, i)) {
        i += word.length;
        return make();
      }
    numberRe.lastIndex = i;
    const m = numberRe.exec(text);
    if (!m || m[0].length === 0) fail("unexpected character");
    i += m![0].length;
    return b.number(m![0], m![1] !== undefined || m![2] !== undefined);
  };
  const v = parseValue(0);
  ws();
  if (i !== n) fail("trailing characters");
  return v;
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

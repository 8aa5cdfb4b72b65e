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

/** A parsed JSON value. Objects are plain objects with a null prototype-free copy (no __proto__ tricks). */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** Parse `text` strictly. Throws {@link StrictJsonError}. @internal */
export function parseStrictJson(text: string, maxDepth = 64): JsonValue {
  let i = 0;
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
          case '"': out += '"'; break;
          case "\\": out += "\\"; break;
          case "/": out += "/"; break;
          case "b": out += "\b"; break;
          case "f": out += "\f"; break;
          case "n": out += "\n"; break;
          case "r": out += "\r"; break;
          case "t": out += "\t"; break;
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
  const numberRe = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
  const parseValue = (depth: number): JsonValue => {
    if (depth > maxDepth) fail(`nesting deeper than ${maxDepth}`);
    ws();
    if (i >= n) fail("unexpected end of input");
    const c = text[i];
    if (c === "{") {
      i++;
      const obj: { [key: string]: JsonValue } = Object.create(null);
      const seen = new Set<string>();
      ws();
      if (text[i] === "}") {
        i++;
        return obj;
      }
      for (;;) {
        ws();
        if (text[i] !== '"') fail("expected a string key");
        const keyPos = i;
        const key = parseString();
        if (seen.has(key)) throw new StrictJsonError(`duplicate key "${key}" at position ${keyPos}`, keyPos, key);
        seen.add(key);
        ws();
        if (text[i] !== ":") fail("expected ':'");
        i++;
        obj[key] = parseValue(depth + 1);
        ws();
        if (text[i] === ",") {
          i++;
          continue;
        }
        if (text[i] === "}") {
          i++;
          return obj;
        }
        fail("expected ',' or '}'");
      }
    }
    if (c === "[") {
      i++;
      const arr: JsonValue[] = [];
      ws();
      if (text[i] === "]") {
        i++;
        return arr;
      }
      for (;;) {
        arr.push(parseValue(depth + 1));
        ws();
        if (text[i] === ",") {
          i++;
          continue;
        }
        if (text[i] === "]") {
          i++;
          return arr;
        }
        fail("expected ',' or ']'");
      }
    }
    if (c === '"') return parseString();
    if (text.startsWith("true", i)) {
      i += 4;
      return true;
    }
    if (text.startsWith("false", i)) {
      i += 5;
      return false;
    }
    if (text.startsWith("null", i)) {
      i += 4;
      return null;
    }
    numberRe.lastIndex = i;
    const m = numberRe.exec(text);
    if (!m || m[0].length === 0) fail("unexpected character");
    i += m![0].length;
    return Number(m![0]);
  };
  const v = parseValue(0);
  ws();
  if (i !== n) fail("trailing characters");
  return v;
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

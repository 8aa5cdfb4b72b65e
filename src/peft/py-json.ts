import { compareCodePoints } from "../util/compare-code-points.js";
import { parseJsonWith, type JsonBuilder } from "../util/strict-json.js";

/**
 * JSON exactly as Python's `json` module reads and writes it, so adapter_config.json round-trips byte
 * for byte: integers stay integers of any size (bigint), floats stay floats (`0.0` is not `0`),
 * NaN/Infinity are accepted, and {@link dumpsPy} formats like `json.dumps(obj, indent=2, sort_keys=True)`
 * (ensure_ascii, Python float repr). Pure, browser-safe.
 * @internal Not part of the public API; used by the PEFT converters and their tests.
 */

/** A Python int. */
export interface PyInt {
  readonly kind: "int";
  readonly value: bigint;
}
/** A Python float. */
export interface PyFloat {
  readonly kind: "float";
  readonly value: number;
}
/** A JSON object as Python sees it (insertion order kept; keys are never prototype properties). */
export type PyObject = Map<string, PyJson>;
/** A value of Python's json module. */
export type PyJson = null | boolean | string | PyInt | PyFloat | PyJson[] | PyObject;

/** A Python int. @internal */
export function pyInt(v: bigint | number): PyInt {
  return { kind: "int", value: BigInt(v) };
}
/** A Python float. @internal */
export function pyFloat(v: number): PyFloat {
  return { kind: "float", value: v };
}
/** True for a Python int. @internal */
export function isPyInt(v: PyJson | undefined): v is PyInt {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Map) && v.kind === "int";
}
/** True for a Python float. @internal */
export function isPyFloat(v: PyJson | undefined): v is PyFloat {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Map) && v.kind === "float";
}
/** True for a number of either kind. @internal */
export function isPyNumber(v: PyJson | undefined): v is PyInt | PyFloat {
  return isPyInt(v) || isPyFloat(v);
}
/** The number's value as a JS number (ints may lose precision beyond 2^53). @internal */
export function pyNumberValue(v: PyInt | PyFloat): number {
  return v.kind === "int" ? Number(v.value) : v.value;
}

/** Thrown by {@link parsePyJson}. @internal */
export { StrictJsonError as PyJsonError } from "../util/strict-json.js";

const pythonJson: JsonBuilder<PyJson, PyObject, PyJson[]> = {
  object: () => new Map(),
  has: (o, k) => o.has(k),
  set: (o, k, v) => void o.set(k, v),
  finishObject: (o) => o,
  array: () => [],
  push: (a, v) => void a.push(v),
  finishArray: (a) => a,
  string: (s) => s,
  number: (raw, isFloat) => (isFloat ? pyFloat(Number(raw)) : pyInt(BigInt(raw))),
  literal: (v) => v,
  nonFinite: (v) => pyFloat(v),
};

/**
 * Parse JSON text the way Python's `json.loads` does (numbers with a fraction or exponent are floats,
 * others ints of any size; `NaN`, `Infinity`, `-Infinity` accepted). Stricter in two ways, for hostile
 * input: duplicate keys and nesting deeper than `maxDepth` are errors.
 * @internal
 */
export function parsePyJson(text: string, maxDepth = 64): PyJson {
  return parseJsonWith(text, pythonJson, maxDepth);
}

/** Python's `repr(float)`: shortest round-trip digits, exponent form when the exponent is < -4 or >= 16. @internal */
export function pyFloatRepr(x: number): string {
  if (Number.isNaN(x)) return "NaN";
  if (x === Infinity) return "Infinity";
  if (x === -Infinity) return "-Infinity";
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0";
  const sign = x < 0 ? "-" : "";
  const [mant, expText] = Math.abs(x).toExponential().split("e") as [string, string];
  const digits = mant.replace(".", "");
  const exp = parseInt(expText, 10);
  const decpt = exp + 1;
  if (decpt <= -4 || decpt > 16) {
    const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    return `${sign}${m}e${exp < 0 ? "-" : "+"}${String(Math.abs(exp)).padStart(2, "0")}`;
  }
  if (decpt <= 0) return `${sign}0.${"0".repeat(-decpt)}${digits}`;
  if (decpt >= digits.length) return `${sign}${digits}${"0".repeat(decpt - digits.length)}.0`;
  return `${sign}${digits.slice(0, decpt)}.${digits.slice(decpt)}`;
}

const SHORT_ESCAPES: Record<string, string> = {
  '"': '\\"',
  "\\": "\\\\",
  "\n": "\\n",
  "\r": "\\r",
  "\t": "\\t",
  "\b": "\\b",
  "\f": "\\f",
};

/** A string as `json.dumps(..., ensure_ascii=True)` writes it. @internal */
export function pyStringRepr(s: string): string {
  let out = '"';
  for (let k = 0; k < s.length; k++) {
    const ch = s[k]!;
    const c = s.charCodeAt(k);
    const short = SHORT_ESCAPES[ch];
    if (short !== undefined) out += short;
    else if (c < 0x20 || c > 0x7e) out += `\\u${c.toString(16).padStart(4, "0")}`;
    else out += ch;
  }
  return out + '"';
}

/**
 * Serialise like Python's `json.dumps(value, indent=2, sort_keys=True)` (ensure_ascii, `", "`-free
 * separators `","` and `": "`, no trailing newline).
 * @internal
 */
export function dumpsPy(value: PyJson, indent = 2): string {
  const enc = (v: PyJson, level: number): string => {
    if (v === null) return "null";
    if (v === true) return "true";
    if (v === false) return "false";
    if (typeof v === "string") return pyStringRepr(v);
    if (Array.isArray(v)) {
      if (v.length === 0) return "[]";
      const pad = "\n" + " ".repeat(indent * (level + 1));
      return `[${v.map((x) => pad + enc(x, level + 1)).join(",")}\n${" ".repeat(indent * level)}]`;
    }
    if (v instanceof Map) {
      if (v.size === 0) return "{}";
      const pad = "\n" + " ".repeat(indent * (level + 1));
      const keys = [...v.keys()].sort(compareCodePoints);
      return `{${keys.map((k) => `${pad}${pyStringRepr(k)}: ${enc(v.get(k)!, level + 1)}`).join(",")}\n${" ".repeat(indent * level)}}`;
    }
    if (v.kind === "int") return v.value.toString();
    return pyFloatRepr(v.value);
  };
  return enc(value, 0);
}

/** Deep copy. @internal */
export function clonePy(v: PyJson): PyJson {
  if (Array.isArray(v)) return v.map(clonePy);
  if (v instanceof Map) return new Map([...v].map(([k, x]) => [k, clonePy(x)]));
  return v;
}

/** Structural equality (ints and floats are different kinds; NaN equals NaN). @internal */
export function pyEqual(a: PyJson, b: PyJson): boolean {
  if (a === b) return true;
  if (a === null || b === null || typeof a !== "object" || typeof b !== "object") return false;
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    return a.every((x, k) => pyEqual(x, b[k]!));
  }
  if (a instanceof Map || b instanceof Map) {
    if (!(a instanceof Map) || !(b instanceof Map) || a.size !== b.size) return false;
    for (const [k, x] of a) if (!b.has(k) || !pyEqual(x, b.get(k)!)) return false;
    return true;
  }
  if (a.kind !== b.kind) return false;
  return a.kind === "int"
    ? a.value === (b as PyInt).value
    : Object.is(a.value, (b as PyFloat).value) || a.value === b.value;
}

/** A plain JS view for reports and `training` metadata: ints as numbers (or decimal strings beyond 2^53). @internal */
export function pyToPlain(v: PyJson): unknown {
  if (v === null || typeof v === "boolean" || typeof v === "string") return v;
  if (Array.isArray(v)) return v.map(pyToPlain);
  if (v instanceof Map) {
    const o: Record<string, unknown> = {};
    for (const [k, x] of v)
      Object.defineProperty(o, k, { value: pyToPlain(x), enumerable: true, writable: true, configurable: true });
    return o;
  }
  if (v.kind === "int")
    return v.value >= BigInt(Number.MIN_SAFE_INTEGER) && v.value <= BigInt(Number.MAX_SAFE_INTEGER)
      ? Number(v.value)
      : v.value.toString();
  return Number.isFinite(v.value) ? v.value : String(v.value);
}

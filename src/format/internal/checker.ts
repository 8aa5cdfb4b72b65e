/** Internal: the issue collector every check of {@link validateVera} writes to, and small JSON tests. */
import { ErrorCode, type ErrorCodeValue, type Issue } from "../../errors.js";
import type { JsonValue } from "../../util/strict-json.js";

/** A JSON object of the metadata. */
export type Obj = { [k: string]: JsonValue };
export const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);
export const isPosInt = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 1;
/** The JSON type of a value, for `received`. */
export const describe = (v: unknown): string => (v === null ? "null" : Array.isArray(v) ? "array" : typeof v);

/** Collects issues and warnings in the order the checks find them. */
export interface Checker {
  issues: Issue[];
  warnings: Issue[];
  add(code: ErrorCodeValue, message: string, path?: string, expected?: unknown, received?: unknown): void;
  warn(code: ErrorCodeValue, message: string, path?: string): void;
  /**
   * Report the fields of `o` that are not in `known`: an error, or a warning when the file declares a
   * newer minor version (set `newerMinorVersion` once the version is read).
   */
  unknownFields(o: Obj, known: Set<string>, path: string): void;
  /** The file's version when its minor is newer than this reader's. */
  newerMinorVersion?: string;
}

/** A fresh {@link Checker}. */
export function createChecker(): Checker {
  const c: Checker = {
    issues: [],
    warnings: [],
    add(code, message, path, expected, received) {
      c.issues.push({
        code,
        message,
        ...(path !== undefined ? { path } : {}),
        ...(expected !== undefined ? { expected } : {}),
        ...(received !== undefined ? { received } : {}),
      });
    },
    warn(code, message, path) {
      c.warnings.push({ code, message, ...(path !== undefined ? { path } : {}) });
    },
    unknownFields(o, known, path) {
      for (const k of Object.keys(o))
        if (!known.has(k)) {
          if (c.newerMinorVersion !== undefined)
            c.warn(
              ErrorCode.VERA_SCHEMA,
              `unknown field "${k}" (from format ${c.newerMinorVersion}) ignored`,
              `${path}/${k}`,
            );
          else c.add(ErrorCode.VERA_SCHEMA, `unknown field "${k}"`, `${path}/${k}`, [...known].join(", "), k);
        }
    },
  };
  return c;
}

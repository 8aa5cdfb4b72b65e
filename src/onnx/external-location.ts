import { ErrorCode, VeraError } from "../errors.js";

/** Parameters of {@link checkExternalLocation}. */
export interface CheckExternalLocationParams {
  /** The `location` value of a tensor's external_data. */
  location: string;
  /** The tensor, for the error message. */
  tensor: string;
}

/**
 * Check an external-data location the way a hostile file must be checked: a relative path inside
 * the model's folder. Rejects absolute paths (`/x`, `\x`, `C:x`), `..` components, NUL bytes and
 * empty components. Returns the path components (`/` and `\` both separate). Symlinks are checked
 * by the Node layer, which can see the file system.
 *
 * @throws VeraError `IO_UNSAFE_PATH`.
 */
export function checkExternalLocation(params: CheckExternalLocationParams): string[] {
  const { location, tensor } = params;
  const fail = (why: string): VeraError =>
    new VeraError(
      ErrorCode.IO_UNSAFE_PATH,
      `initializer ${JSON.stringify(tensor)}: external data location ${JSON.stringify(location)} ${why}`,
      {
        path: tensor,
        expected: "a relative path inside the model's folder",
        received: location,
      },
    );
  if (location.length === 0) throw fail("is empty");
  if (location.includes("\0")) throw fail("contains a NUL byte");
  if (location.startsWith("/") || location.startsWith("\\")) throw fail("is absolute");
  if (/^[A-Za-z]:/.test(location)) throw fail("is absolute (drive letter)");
  const parts = location.split(/[\\/]/);
  const out: string[] = [];
  for (const p of parts) {
    if (p === "..") throw fail("leaves the model's folder (`..`)");
    if (p === "" || p === ".") continue;
    out.push(p);
  }
  if (out.length === 0) throw fail("names no file");
  return out;
}

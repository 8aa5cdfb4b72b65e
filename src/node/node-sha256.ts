import { createHash } from "node:crypto";
import { setSha256Implementation, type Sha256Implementation } from "../util/sha256.js";

/** node:crypto's SHA-256 (OpenSSL), synchronous. */
export const NODE_SHA256: Sha256Implementation = {
  name: "node:crypto",
  hex: (data) => createHash("sha256").update(data).digest("hex"),
};

/**
 * Make the core's `sha256Hex` use node:crypto. Runs when the Node edge loads (`verakit/node`, and
 * every module that reads or writes files), so Node programs get the fast digest without asking.
 */
export function registerNodeSha256(): void {
  setSha256Implementation({ implementation: NODE_SHA256 });
}

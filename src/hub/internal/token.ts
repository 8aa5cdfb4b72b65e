/** Internal: token checks that never echo the token. */
import { VeraError } from "../../errors.js";
import { HubErrorCode } from "../errors.js";

/** Check a token's shape. `required` makes a missing token an error. Returns the token or undefined. */
export function checkToken(token: string | undefined, required: boolean, action: string): string | undefined {
  if (token === undefined || token === "") {
    if (required)
      throw new VeraError(
        HubErrorCode.HUB_TOKEN_MISSING,
        `${action}: a Hugging Face access token is needed: pass --token, set HF_TOKEN, or log in once with Python's \`hf auth login\` (it writes the token file)`,
      );
    return undefined;
  }
  if (!/^hf_[A-Za-z0-9_]+$/.test(token) || token.length < 8)
    throw new VeraError(
      HubErrorCode.HUB_TOKEN_INVALID,
      `${action}: the token does not look like a Hugging Face access token (they start with hf_ followed by letters and digits)`,
      {
        expected: "hf_...",
      },
    );
  return token;
}

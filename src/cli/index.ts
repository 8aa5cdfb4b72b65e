/** The `vera` executable. */
import { main } from "./main.js";

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    process.stderr.write(`vera: internal error: ${(e as Error)?.message}\n`);
    process.exitCode = 2;
  },
);

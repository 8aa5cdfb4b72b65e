/**
 * Interoperability check with Python's huggingface_hub and PEFT, run by hand (CI has no Python):
 *
 *   npx esbuild test/hub-server/interop/interop.ts --bundle --platform=node --format=esm --packages=external \
 *     --outfile=.interop.mjs && VERAKIT_PYTHON=.venv-ref/bin/python node .interop.mjs; rm .interop.mjs
 *
 * The Python environment needs huggingface_hub, peft, transformers, torch and safetensors (see
 * fixtures/peft/generate.py for the recipe). It starts the loopback server, pushes an adapter with its
 * PEFT copy, then checks: (1) Python finds what `pullAdapter` cached, offline; (2) `pullAdapter` finds,
 * offline, what Python's hf_hub_download cached from the server; (3) PeftModel.from_pretrained loads
 * the repo through the server and sees the same vectors as the verakit file.
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pushAdapter } from "../../../src/hub/index.js";
import { pullAdapter } from "../../../src/hub/node/index.js";
import { writeVera } from "../../../src/format/write.js";
import { makeAdapter, TOKEN, USERS } from "../helpers.js";
import { startHubServer } from "../server.js";

const python = process.env["VERAKIT_PYTHON"] ?? ".venv-ref/bin/python";
const root = resolve(".");
const server = await startHubServer({ users: USERS });
const dir = mkdtempSync(join(tmpdir(), "vera-interop-"));
const results: Record<string, unknown> = {};
try {
  const file = writeVera({ adapter: makeAdapter({ seed: 42, baseModel: "acme/tiny-llama", taskType: "CAUSAL_LM" }) });
  const pushed = await pushAdapter({
    repo: "alice/interop",
    file,
    accessToken: TOKEN,
    hubUrl: server.url,
    create: true,
    withPeft: true,
  });
  results["push"] = { commit: pushed.commit, files: pushed.files.map((f) => f.path) };
  const py = (args: string[], cache: string): Promise<unknown> =>
    new Promise((res, rej) => {
      const c = spawn(python, [join(root, "test/hub-server/interop/check.py"), ...args], {
        env: {
          ...process.env,
          HF_ENDPOINT: server.url,
          HF_TOKEN: TOKEN,
          HF_HUB_CACHE: cache,
          HF_HUB_DISABLE_TELEMETRY: "1",
        },
      });
      let out = "";
      let err = "";
      c.stdout.on("data", (d: Buffer) => (out += d.toString()));
      c.stderr.on("data", (d: Buffer) => (err += d.toString()));
      c.on("close", (code) =>
        code === 0
          ? res(JSON.parse(out.trim().split("\n").pop()!))
          : rej(new Error(`python ${args[0]} failed:\n${err}`)),
      );
    });

  const cacheA = join(dir, "a");
  await pullAdapter({ repo: "alice/interop", hubUrl: server.url, cacheDir: cacheA, env: {} });
  results["python reads verakit's cache"] = await py(
    ["cache-read", "alice/interop", createHash("sha256").update(file).digest("hex")],
    cacheA,
  );

  const cacheB = join(dir, "b");
  results["python download"] = await py(["download", "alice/interop"], cacheB);
  const off = await pullAdapter({ repo: "alice/interop", offline: true, cacheDir: cacheB, env: {} });
  results["verakit reads python's cache"] = {
    ok: Buffer.from(off.bytes).equals(Buffer.from(file)),
    commit: off.commit,
  };

  results["peft"] = await py(
    ["peft-load", "alice/interop", join(root, "fixtures/peft/bases/llama/config.json")],
    join(dir, "c"),
  );
  console.log(JSON.stringify(results, null, 2));
} finally {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
}

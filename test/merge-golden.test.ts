/**
 * The merged bytes of every committed fixture model (ONNX, safetensors, GGUF), into new files and in place, by the
 * reference and WebAssembly backends, against the SHA-256 of each output file that verakit 0.1.0 wrote
 * (fixtures/merge-golden: generate.mjs, expected.json). A change of the merge pipeline must not change one byte.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import * as api from "../src/merge/index.js";
import { createReferenceBackend } from "../src/compute/reference-backend.js";
import { createWasmBackend } from "../src/compute/wasm-backend.js";
// @ts-expect-error: a plain JavaScript module shared with the fixture's generator
import { goldenCases, runCase } from "../fixtures/merge-golden/cases.mjs";

interface Digests {
  newFiles: Record<string, string>;
  inPlace: Record<string, string>;
}
const expected = JSON.parse(readFileSync(join(__dirname, "../fixtures/merge-golden/expected.json"), "utf8")) as {
  made_by: { version: string };
  cases: Record<string, Digests>;
};
const backends = { reference: createReferenceBackend, wasm: () => createWasmBackend() };
const work = mkdtempSync(join(tmpdir(), "vera-golden-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe(`merged bytes equal verakit ${expected.made_by.version}'s`, () => {
  const cases = goldenCases() as Array<{ name: string }>;
  it("every case has expected digests", () => {
    expect(Object.keys(expected.cases).sort()).toEqual(
      cases.flatMap((c) => Object.keys(backends).map((b) => `${c.name} ${b}`)).sort(),
    );
  });
  for (const c of cases)
    for (const [name, backend] of Object.entries(backends))
      it(`${c.name}, ${name} backend: into new files and in place`, async () => {
        const got = (await runCase({ api, backend, c, work: mkdtempSync(join(work, "c-")) })) as Digests;
        expect(got).toEqual(expected.cases[`${c.name} ${name}`]);
      });
});

/**
 * Greedy generation with a KV cache on grafted decoders (fixtures/serve/llama-kv, generate_kv.py): the dynamo export
 * with past_key_values inputs and present outputs, and a merged decoder (If on use_cache_branch, the decoder in both
 * branches). Three real PEFT adapters mixed in one batch, one per row, must give PEFT's generate() tokens.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { VeraAdapter } from "../src/format/types.js";
import {
  greedyGenerate,
  readOnnxModelInputs,
  ServeErrorCode,
  type GenerateTensor,
  type GraftSpec,
} from "../src/serve/index.js";
import { graftOnnxFile } from "../src/serve/node/index.js";
import { loadOrt } from "./onnx-helpers.js";
import { caseAdapter, SERVE_FIXTURES } from "./serve-helpers.js";

const dir = join(SERVE_FIXTURES, "llama-kv");
const doc = JSON.parse(readFileSync(join(dir, "generate.json"), "utf8")) as {
  prompts: number[][];
  new_tokens: number;
  adapters: string[];
  tokens: Record<string, number[][]>;
};
const work = mkdtempSync(join(tmpdir(), "vera-gen-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

async function generate(
  path: string,
  spec: GraftSpec,
  adapters: Array<VeraAdapter | null>,
  prompts = doc.prompts,
): Promise<number[][]> {
  const ort = await loadOrt();
  const session = await ort.InferenceSession.create(path, { logSeverityLevel: 3 });
  try {
    const { inputs } = readOnnxModelInputs({ bytes: new Uint8Array(readFileSync(path)) });
    const run = async (feeds: Record<string, GenerateTensor>) => {
      const t: Record<string, import("onnxruntime-node").Tensor> = {};
      for (const [k, v] of Object.entries(feeds)) t[k] = new ort.Tensor(v.type, v.data, v.dims);
      return session.run(t);
    };
    return (await greedyGenerate({ run, inputs, spec, prompts, adapters, newTokens: doc.new_tokens })).tokens;
  } finally {
    await session.release();
  }
}

describe.each([
  ["model.onnx", 1],
  ["merged.onnx", 2],
])("llama-kv %s (default flags, --batched)", (file, branches) => {
  let adapters: VeraAdapter[];
  let path: string;
  let spec: GraftSpec;
  beforeAll(async () => {
    const modelPath = join(dir, file);
    adapters = await Promise.all(
      doc.adapters.map((a) => caseAdapter({ modelPath, adapterDir: join(dir, "adapters") }, a)),
    );
    path = join(work, file.replace(".onnx", ""), "model.onnx");
    const r = await graftOnnxFile({
      model: modelPath,
      adapter: join(dir, "adapters", "a1"),
      output: path,
      batched: true,
    });
    spec = r.spec;
    expect(r.modules.length).toBe(14);
    // every grafted module has a branch on each copy of its layer (both If branches of a merged decoder)
    expect(r.modules.every((m) => m.nodes.length === branches)).toBe(true);
  });

  it("three adapters, one per row, generate PEFT's tokens for each row", async () => {
    const got = await generate(path, spec, adapters);
    for (let i = 0; i < 3; i++) expect(got[i]).toEqual(doc.tokens[doc.adapters[i]!]![i]);
    // the adapters do change the tokens (the test could not pass with the branch ignored)
    for (let i = 0; i < 3; i++) expect(doc.tokens[doc.adapters[i]!]![i]).not.toEqual(doc.tokens.base![i]);
  });

  it("another mix with a base row: rows follow their own adapter", async () => {
    const got = await generate(path, spec, [adapters[2]!, null, adapters[0]!]);
    expect(got[0]).toEqual(doc.tokens.a3![0]);
    expect(got[1]).toEqual(doc.tokens.base![1]);
    expect(got[2]).toEqual(doc.tokens.a1![2]);
  });
});

describe("greedyGenerate refusals", () => {
  it("prompts of different lengths and a model without past inputs are SERVE_FEEDS", async () => {
    const spec = { batched: true } as GraftSpec;
    const run = async () => ({});
    await expect(
      greedyGenerate({ run, inputs: [], spec, prompts: [[1, 2], [3]], adapters: [null, null], newTokens: 1 }),
    ).rejects.toMatchObject({ code: ServeErrorCode.SERVE_FEEDS });
    await expect(
      greedyGenerate({
        run,
        inputs: [{ name: "input_ids", dims: ["b", "s"] }],
        spec,
        prompts: [[1]],
        adapters: [null],
        newTokens: 1,
      }),
    ).rejects.toMatchObject({ code: ServeErrorCode.SERVE_FEEDS });
  });
});

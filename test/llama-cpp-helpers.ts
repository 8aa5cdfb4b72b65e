/** What the llama.cpp consumer tests share: next-token log-probabilities from node-llama-cpp, and log-softmax. */
import type { ControlledEvaluateInputItem, LlamaModel, Token } from "node-llama-cpp";

/** Parameters of {@link llamaCppLogProbs}. */
export interface LlamaCppLogProbsParams {
  /** The loaded model. */
  model: LlamaModel;
  /** Token ids to evaluate. */
  tokens: readonly number[];
  /** Vocabulary size (length of each row). */
  vocab: number;
  /** A GGUF LoRA file to apply at scale 1. @default none */
  lora?: string;
}

/**
 * llama.cpp's next-token log-probabilities at every position of `tokens` (CPU, one thread, float32 KV cache);
 * temperature 1 and no top-k/top-p/min-p filtering, so they are the plain log-softmax of the logits.
 */
export async function llamaCppLogProbs(params: LlamaCppLogProbsParams): Promise<number[][]> {
  const ctx = await params.model.createContext({
    contextSize: 64,
    batchSize: 16,
    threads: 1,
    flashAttention: false,
    experimentalKvCacheKeyType: "F32",
    experimentalKvCacheValueType: "F32",
    ...(params.lora ? { lora: { adapters: [{ filePath: params.lora, scale: 1 }] } } : {}),
  });
  try {
    const input: ControlledEvaluateInputItem[] = params.tokens.map((t) => [
      t as Token,
      { generateNext: { probabilities: true, options: { temperature: 1, topK: 0, topP: 1, minP: 0 } } },
    ]);
    const out = await ctx.getSequence().controlledEvaluate(input);
    return out.map((r) => {
      const row = new Array<number>(params.vocab).fill(-Infinity);
      for (const [tok, p] of r!.next!.probabilities!) row[tok] = Math.log(p);
      return row;
    });
  } finally {
    await ctx.dispose();
  }
}

/** log-softmax of one row of logits. */
export function logSoftmax(row: readonly number[]): number[] {
  const m = Math.max(...row);
  const z = Math.log(row.reduce((s, x) => s + Math.exp(x - m), 0));
  return row.map((x) => x - m - z);
}

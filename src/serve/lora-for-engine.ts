import { VeraError } from "../errors.js";
import type { VeraAdapter } from "../format/types.js";
import { PeftErrorCode } from "../peft/error-codes.js";
import type { ExpandToLoraParams } from "../peft/expand-to-lora.js";
import { refuseCarriedTensors } from "../peft/refuse-carried-tensors.js";

/** Engines with a LoRA loader of their own: what each reads is written down in the README ("Serving engines"). */
export type LoraEngine = "vllm" | "tgi" | "lorax";
const ENGINE_NAMES: Record<LoraEngine, string> = { vllm: "vLLM", tgi: "TGI", lorax: "LoRAX" };

/** Every {@link LoraEngine}. */
export const LORA_ENGINES: readonly LoraEngine[] = ["vllm", "tgi", "lorax"];

/**
 * The values vLLM's `--max-lora-rank` accepts (vllm/config/lora.py `MaxLoRARanks`; recent versions also accept 1). An
 * adapter loads when its r is at most the server's max_lora_rank.
 */
export const VLLM_MAX_LORA_RANKS = [8, 16, 32, 64, 128, 256, 320, 512] as const;

/**
 * Layer types the llama-family models of TGI and LoRAX apply LoRA to (their `ADAPTER_LAYERS`); the servers skip other
 * modules of an adapter with a warning.
 */
export const TGI_LORA_LAYERS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"];

/** Parameters of {@link planLoraForEngine}. */
export interface PlanLoraForEngineParams {
  adapter: VeraAdapter;
  engine: LoraEngine;
  /**
   * LoRA rank wanted (<= the VeRA rank); below r the best rank-k approximation.
   * @default the VeRA rank, or for vLLM 512 when r is larger
   */
  rank?: number;
  /**
   * Leave out the tensors the adapter carries besides its VeRA vectors (modules_to_save heads, biases), which these
   * engines do not apply, instead of refusing (`ADAPTER_CARRIED_TENSORS`); the plan lists them in `dropped`.
   * @default false
   */
  dropCarried?: boolean;
}

/** How to expand an adapter for an engine, and what to tell the user. */
export interface LoraEnginePlan {
  engine: LoraEngine;
  /** Parameters for `expandToLora` / `expandToLoraStream`. */
  expand: ExpandToLoraParams;
  /** Rank of the values (the VeRA rank when exact). */
  rank: number;
  /** r and lora_alpha of the written config (the rank padded with zeros for vLLM). */
  fileRank: number;
  /** vLLM: the `--max-lora-rank` to serve it with. */
  maxLoraRank?: number;
  /** Things the user must know (truncation, modules the engine skips, carried tensors dropped). */
  notes: string[];
  /** Carried tensors left out of the folder (dropCarried): the served model differs from PEFT's where they matter. */
  dropped: string[];
}

/**
 * Decide how a VeRA adapter becomes a LoRA folder a given engine loads:
 * - vLLM (PEFTHelper): r is padded with zeros to the next `--max-lora-rank` value (exact), or, above 512, truncated to
 *   512 (the error is in expandToLora's report); lora_alpha = the padded r keeps the scale 1.
 * - TGI and LoRAX (PEFT's LoraConfig.from_pretrained, then their own rank padding): the config keeps only fields PEFT
 *   0.11 knows (older PEFT in a server image rejects unknown keys); modules outside their LoRA layer types are noted.
 * None of them applies modules_to_save heads or adapter biases (vLLM refuses them, TGI and LoRAX ignore them): an
 * adapter that carries such tensors is refused (`ADAPTER_CARRIED_TENSORS`) unless `dropCarried` drops them knowingly.
 * A rank above what the engine takes is `PEFT_LORA_RANK`.
 */
export function planLoraForEngine(params: PlanLoraForEngineParams): LoraEnginePlan {
  const { engine } = params;
  const notes: string[] = [];
  const { adapter, dropped } = refuseCarriedTensors({
    adapter: params.adapter,
    target: `a ${ENGINE_NAMES[engine]} LoRA folder`,
    ...(params.dropCarried !== undefined ? { dropCarried: params.dropCarried } : {}),
  });
  if (dropped.length > 0) notes.push(`dropped (--drop-carried): ${dropped.join(", ")}`);
  if (engine === "vllm") {
    const max = VLLM_MAX_LORA_RANKS[VLLM_MAX_LORA_RANKS.length - 1];
    const rank = params.rank ?? Math.min(adapter.rank, max);
    if (rank > max)
      throw new VeraError(PeftErrorCode.PEFT_LORA_RANK, `vLLM takes LoRA ranks up to ${max}, asked for ${rank}`, {
        path: "rank",
        expected: `<= ${max}`,
        received: rank,
      });
    const fileRank = VLLM_MAX_LORA_RANKS.find((v) => v >= rank)!;
    if (rank < adapter.rank)
      notes.push(
        `rank ${adapter.rank} truncated to ${rank} ` +
          (params.rank !== undefined ? "(--rank)" : `(vLLM takes at most ${max})`) +
          ": see the relative error",
      );
    if (fileRank > rank) notes.push(`rank ${rank} padded with zeros to ${fileRank} (exact)`);
    notes.push(`serve with --enable-lora --max-lora-rank ${fileRank} (or larger)`);
    return {
      engine,
      expand: { adapter, rank, ...(fileRank !== rank ? { padRank: fileRank } : {}) },
      rank,
      fileRank,
      maxLoraRank: fileRank,
      notes,
      dropped,
    };
  }
  const rank = params.rank ?? adapter.rank;
  const other = adapter.modules
    .map((m) => m.name)
    .filter((n) => !TGI_LORA_LAYERS.includes(n.slice(n.lastIndexOf(".") + 1)));
  if (other.length > 0)
    notes.push(
      `${engine === "tgi" ? "TGI" : "LoRAX"} applies LoRA to ${TGI_LORA_LAYERS.join(", ")} layers of its llama-family ` +
        `models; it skips (with a warning) ${other.join(", ")}`,
    );
  return { engine, expand: { adapter, rank, peftCompat: "0.11.0" }, rank, fileRank: rank, notes, dropped };
}

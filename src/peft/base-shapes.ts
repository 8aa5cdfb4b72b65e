import type { Layout } from "../format/types.js";

/** One way a base-model module may be shaped. */
export interface BaseModuleShape {
  inFeatures: number;
  outFeatures: number;
  /** The module's weight layout when the source says (config readers); undefined when it cannot tell (ONNX). */
  layout?: Layout;
}

/** A Linear-like module of a base model. */
export interface BaseModule {
  /** Module path as the source names it (`model.layers.0.self_attn.q_proj`); may carry a wrapper prefix. */
  path: string;
  /** Other names the same module is known by (ONNX readers find several). */
  aliases?: string[];
  /**
   * The possible shapes: one when the source is certain; two for a bare weights file, whose 2-D
   * `weight` is (out, in) for torch Linear but (in, out) for GPT-2 Conv1D. The importer keeps the one
   * that agrees with the adapter's lambda_b (and, for square weights, with fan_in_fan_out).
   */
  shapes: BaseModuleShape[];
}

/** What a base model tells about its Linear-like modules: enough to size every VeRA module. */
export interface BaseShapes {
  /** Which kind of source: a transformers config.json, a safetensors weights header (or sharded index), an ONNX model. */
  source: "config" | "safetensors" | "onnx";
  /** For people: e.g. `config.json (llama, LlamaForCausalLM)`. */
  description: string;
  modules: BaseModule[];
}

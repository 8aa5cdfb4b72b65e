import type { BaseShapes } from "../peft/base-shapes.js";
import type { GgufLoraBase } from "./lora-base.js";
import { ggufTensorName, type GgufNameMapping } from "./tensor-names.js";

/** Parameters of {@link baseShapesFromGguf}. */
export interface BaseShapesFromGgufParams {
  /** A GGUF base (loraBaseFromGguf): its tensors give the shapes. */
  base: GgufLoraBase;
  /** Hugging Face module paths to size (a PEFT adapter's modules). */
  modules: string[];
  /** User tensor-name mapping. @default undefined */
  mapping?: GgufNameMapping;
}

/**
 * Module shapes for importing a PEFT adapter against a GGUF base: each module's llama.cpp tensor
 * (ggml ne = [in, out]) gives in/out features. Modules without a tensor are left out (the importer
 * then names them).
 */
export function baseShapesFromGguf(params: BaseShapesFromGgufParams): BaseShapes {
  const modules: BaseShapes["modules"] = [];
  for (const path of params.modules) {
    const t = ggufTensorName({
      architecture: params.base.architecture,
      module: path,
      ...(params.mapping ? { mapping: params.mapping } : {}),
    });
    const ne = t === undefined ? undefined : params.base.tensors?.get(`${t}.weight`);
    if (ne && ne.length === 2) modules.push({ path, shapes: [{ inFeatures: ne[0]!, outFeatures: ne[1]! }] });
  }
  return { source: "config", description: `${params.base.label} (GGUF, ${params.base.architecture})`, modules };
}

/**
 * The names a safetensors checkpoint's tensors go by: their stored names, and the names transformers 5
 * gives them when it loads the checkpoint (its checkpoint conversion rules rename older checkpoints'
 * tensors, e.g. ViT's `vit.encoder.layer.N.attention.attention.query` is `vit.layers.N.attention.q_proj`
 * in the model PEFT wraps, while save_pretrained writes the old names back). The rules are transformers
 * 5.18's own (`conversion_mapping.py`), by config.json `model_type`, applied to the stored names: a
 * module is then found under the name PEFT uses, and the report says it was `renamed`. Pure.
 */
import { bestPathMatches, type PathMatch } from "./module-path.js";

/** One transformers `WeightRenaming`: a regular expression over the stored name and its replacement. */
interface Renaming {
  source: RegExp;
  target: string;
}

const rule = (source: string, target: string): Renaming => ({ source: new RegExp(source, "g"), target });

/** transformers 5.18 conversion_mapping.py, "ViTModel" (applied to ViT models and the heads built on them). */
const VIT: readonly Renaming[] = [
  rule("encoder\\.layer\\.", "layers."),
  rule("attention.query", "q_proj"),
  rule("attention.key", "k_proj"),
  rule("attention.value", "v_proj"),
  rule("attention.output.dense", "attention.o_proj"),
  rule("intermediate.dense", "mlp.fc1"),
  rule("output.dense", "mlp.fc2"),
];

/** Renaming rules by config.json `model_type`. */
const RULES: Readonly<Record<string, readonly Renaming[]>> = { vit: VIT };

/** The model types whose checkpoint names are renamed on load. */
export const RENAMED_MODEL_TYPES: readonly string[] = Object.keys(RULES);

/** A stored tensor name as transformers names it once loaded (the same name when no rule applies). */
export function loadedName(stored: string, modelType: string | undefined): string {
  const rules = modelType !== undefined && Object.hasOwn(RULES, modelType) ? RULES[modelType]! : [];
  let name = stored;
  for (const r of rules) name = name.replace(r.source, r.target);
  return name;
}

/** A tensor found for a name. */
export interface CheckpointNameMatch {
  /** The stored tensor name. */
  tensor: string;
  /** The name that matched (stored, or as loaded). */
  matched: string;
  matchedBy: "exact" | "suffix" | "renamed";
}

/**
 * The checkpoint tensors a parameter name (`<module>.weight`, `classifier.bias`) matches best: by the
 * stored names and the loaded ones, exact before suffix (a wrapper prefix on either side).
 */
export function matchCheckpointName(
  param: string,
  tensors: Iterable<string>,
  modelType: string | undefined,
): CheckpointNameMatch[] {
  const candidates: Array<{ item: { tensor: string; renamed: boolean }; paths: string[] }> = [];
  for (const t of tensors) {
    candidates.push({ item: { tensor: t, renamed: false }, paths: [t] });
    const loaded = loadedName(t, modelType);
    if (loaded !== t) candidates.push({ item: { tensor: t, renamed: true }, paths: [loaded] });
  }
  const seen = new Map<string, PathMatch<{ tensor: string; renamed: boolean }>>();
  for (const m of bestPathMatches(param, candidates)) if (!seen.has(m.item.tensor)) seen.set(m.item.tensor, m);
  return [...seen.values()].map((m) => ({
    tensor: m.item.tensor,
    matched: m.path,
    matchedBy: m.item.renamed ? "renamed" : m.kind,
  }));
}

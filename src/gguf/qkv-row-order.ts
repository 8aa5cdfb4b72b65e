/** Parameters of {@link qkvRowOrder}. */
export interface QkvRowOrderParams {
  /** llama.cpp architecture (general.architecture). */
  architecture: string;
  /** llama.cpp tensor base name, e.g. `blk.0.attn_qkv`. */
  tensor: string;
  /** Rows of the tensor (out_features; a bias's length). */
  rows: number;
  /** Attention heads (`<arch>.attention.head_count`). */
  nHead: number;
  /** Key/value heads (`<arch>.attention.head_count_kv`; Falcon's multi-query models have one). */
  nHeadKv: number;
}

/** Architectures whose fused query_key_value convert_hf_to_gguf.py stores in another row order. */
const PER_HEAD = new Set(["gptneox", "bloom"]);

/**
 * The row order llama.cpp's converter gives a fused `attn_qkv` tensor (weight or bias) whose Hugging Face checkpoint
 * interleaves q, k and v per head: row i of the GGUF tensor is row `order[i]` of the checkpoint's.
 * - gptneox, bloom (GPTNeoXModel / BloomModel.modify_tensors): the checkpoint is (n_head, 3, head_dim) rows; the GGUF
 *   holds every head's q, then every k, then every v.
 * - falcon (FalconModel.modify_tensors, the "jploski" layout): the checkpoint is (n_head_kv, n_head / n_head_kv + 2,
 *   head_dim) rows (each kv group's q heads, its k, its v); the GGUF holds the q heads, the k heads, the v heads. With
 *   one kv head (Falcon-7B's multi-query) the order is the identity.
 * Undefined for every other tensor (no reordering); a string saying why when the head counts do not split the rows.
 */
export function qkvRowOrder(params: QkvRowOrderParams): Uint32Array | string | undefined {
  const { architecture, rows, nHead, nHeadKv } = params;
  if (!/^blk\.\d+\.attn_qkv$/.test(params.tensor)) return undefined;
  if (PER_HEAD.has(architecture)) {
    if (!(nHead >= 1) || rows % (3 * nHead) !== 0)
      return `${rows} rows are not 3 x ${nHead || "(missing)"} heads of q, k and v`;
    const hd = rows / 3 / nHead;
    const order = new Uint32Array(rows);
    for (let p = 0; p < 3; p++)
      for (let h = 0; h < nHead; h++)
        for (let j = 0; j < hd; j++) order[(p * nHead + h) * hd + j] = (h * 3 + p) * hd + j;
    return order;
  }
  if (architecture === "falcon") {
    const span = nHead + 2 * nHeadKv;
    if (!(nHeadKv >= 1) || !(nHead >= 1) || nHead % nHeadKv !== 0 || rows % span !== 0)
      return `${rows} rows are not ${nHead || "(missing)"} q heads and ${nHeadKv || "(missing)"} k and v heads`;
    const hd = rows / span;
    const perGroup = nHead / nHeadKv;
    const order = new Uint32Array(rows);
    let i = 0;
    const put = (slot: number, g: number): void => {
      for (let j = 0; j < hd; j++) order[i++] = (g * (perGroup + 2) + slot) * hd + j;
    };
    for (let g = 0; g < nHeadKv; g++) for (let q = 0; q < perGroup; q++) put(q, g);
    for (let g = 0; g < nHeadKv; g++) put(perGroup, g);
    for (let g = 0; g < nHeadKv; g++) put(perGroup + 1, g);
    return order;
  }
  return undefined;
}

/**
 * Rows of a row-major matrix moved between the checkpoint's order and the GGUF's (`order` from {@link qkvRowOrder}):
 * `toGguf` puts checkpoint row `order[i]` at row i; otherwise the reverse. Returns a new array of the same type.
 */
export function reorderRows<T extends Uint8Array | Float32Array>(
  data: T,
  order: Uint32Array,
  rowLength: number,
  toGguf: boolean,
): T {
  const out = data.slice() as T;
  for (let i = 0; i < order.length; i++) {
    const [to, from] = toGguf ? [i, order[i]!] : [order[i]!, i];
    out.set(data.subarray(from * rowLength, (from + 1) * rowLength), to * rowLength);
  }
  return out;
}

/** Parameters of {@link permuteQkRows}. */
export interface PermuteQkRowsParams {
  /** Row-major matrix (rows x rowLength): a q/k weight, or a LoRA B (out x r). */
  data: Float32Array;
  rows: number;
  rowLength: number;
  /** Heads of the rows: n_head for attn_q, n_head_kv for attn_k. */
  nHead: number;
}

/**
 * llama.cpp's q/k row permutation (convert_hf_to_gguf.py LlamaModel.permute):
 * `w.reshape(n_head, 2, rows // n_head // 2, *rest).swapaxes(1, 2).reshape(w.shape)`. It turns the
 * rotate-half RoPE layout of Hugging Face checkpoints into ggml's interleaved pairs. Returns a new array.
 * Row i = h * 2 * half + j * 2 + s of the result is row h * 2 * half + s * half + j of the input.
 *
 * @throws RangeError when rows is not a multiple of 2 * nHead.
 */
export function permuteQkRows(params: PermuteQkRowsParams): Float32Array {
  const { data, rows, rowLength, nHead } = params;
  if (!Number.isInteger(nHead) || nHead < 1 || rows % (2 * nHead) !== 0 || data.length !== rows * rowLength)
    throw new RangeError(`permuteQkRows: ${rows} rows cannot be split into ${nHead} heads of pairs`);
  const half = rows / nHead / 2;
  const out = new Float32Array(data.length);
  for (let h = 0; h < nHead; h++)
    for (let j = 0; j < half; j++)
      for (let s = 0; s < 2; s++) {
        const dst = (h * 2 * half + j * 2 + s) * rowLength;
        const src = (h * 2 * half + s * half + j) * rowLength;
        out.set(data.subarray(src, src + rowLength), dst);
      }
  return out;
}

/** Parameters of {@link qkRowOrder}. */
export interface QkRowOrderParams {
  /** Rows of the q/k weight (or of its bias). */
  rows: number;
  /** Heads of the rows: n_head for attn_q, n_head_kv for attn_k. */
  nHead: number;
}

/**
 * {@link permuteQkRows} as a row order: row i of the GGUF tensor is row `order[i]` of the checkpoint's (the form of
 * `qkvRowOrder`, for `reorderRows`).
 *
 * @throws RangeError when rows is not a multiple of 2 * nHead.
 */
export function qkRowOrder(params: QkRowOrderParams): Uint32Array {
  const { rows, nHead } = params;
  if (!Number.isInteger(nHead) || nHead < 1 || rows % (2 * nHead) !== 0)
    throw new RangeError(`qkRowOrder: ${rows} rows cannot be split into ${nHead} heads of pairs`);
  const half = rows / nHead / 2;
  const order = new Uint32Array(rows);
  for (let h = 0; h < nHead; h++)
    for (let j = 0; j < half; j++)
      for (let s = 0; s < 2; s++) order[h * 2 * half + j * 2 + s] = h * 2 * half + s * half + j;
  return order;
}

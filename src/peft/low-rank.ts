/**
 * Best rank-k approximation of a product of two thin factors, in float64, without ever forming the
 * (m x n) product: Householder QR of both factors, then a one-sided Jacobi SVD of the small core.
 */

/** Parameters of {@link bestRankK}. */
export interface BestRankKParams {
  /** Left factor L, row-major m x r. */
  left: Float64Array;
  /** Right factor R, row-major r x n. */
  right: Float64Array;
  m: number;
  r: number;
  n: number;
  /** Target rank, 0 <= k. Values above rank(L R) give an exact factorization. */
  k: number;
}

/** Result of {@link bestRankK}: L R ~= B A with B (m x k) and A (k x n), the singular values split evenly. */
export interface BestRankKResult {
  /** Row-major m x k. */
  B: Float64Array;
  /** Row-major k x n. */
  A: Float64Array;
  /** All singular values of L R, descending (min(m, n, r) of them). */
  singularValues: Float64Array;
  /** ||L R||_F^2 (sum of all squared singular values). */
  totalEnergy: number;
  /** ||L R - B A||_F^2 (sum of the discarded squared singular values). */
  discardedEnergy: number;
}

/**
 * Thin Householder QR of a column-major matrix (m rows, n columns, column j at [j*m, (j+1)*m)).
 * Returns Q column-major (m x p) and R row-major (p x n), p = min(m, n).
 * @internal
 */
export function householderQR(
  cols: Float64Array,
  m: number,
  n: number,
): { Q: Float64Array; R: Float64Array; p: number } {
  const a = Float64Array.from(cols);
  const p = Math.min(m, n);
  const vs: Float64Array[] = [];
  const betas: number[] = [];
  for (let j = 0; j < p; j++) {
    const off = j * m;
    let norm2 = 0;
    for (let i = j; i < m; i++) norm2 += a[off + i]! * a[off + i]!;
    const norm = Math.sqrt(norm2);
    const v = new Float64Array(m - j);
    if (norm === 0) {
      vs.push(v);
      betas.push(0);
      continue;
    }
    const x0 = a[off + j]!;
    const alpha = x0 >= 0 ? -norm : norm;
    for (let i = j; i < m; i++) v[i - j] = a[off + i]!;
    v[0] = x0 - alpha;
    let vnorm2 = 0;
    for (let i = 0; i < v.length; i++) vnorm2 += v[i]! * v[i]!;
    const beta = vnorm2 === 0 ? 0 : 2 / vnorm2;
    vs.push(v);
    betas.push(beta);
    // apply H = I - beta v v^T to columns j..n-1
    a[off + j] = alpha;
    for (let i = j + 1; i < m; i++) a[off + i] = 0;
    for (let c = j + 1; c < n; c++) {
      const co = c * m;
      let dot = 0;
      for (let i = j; i < m; i++) dot += v[i - j]! * a[co + i]!;
      const f = beta * dot;
      if (f !== 0) for (let i = j; i < m; i++) a[co + i] = a[co + i]! - f * v[i - j]!;
    }
  }
  const R = new Float64Array(p * n);
  for (let i = 0; i < p; i++) for (let c = i; c < n; c++) R[i * n + c] = a[c * m + i]!;
  const Q = new Float64Array(m * p);
  for (let c = 0; c < p; c++) Q[c * m + c] = 1;
  for (let j = p - 1; j >= 0; j--) {
    const v = vs[j]!;
    const beta = betas[j]!;
    if (beta === 0) continue;
    for (let c = j; c < p; c++) {
      const co = c * m;
      let dot = 0;
      for (let i = j; i < m; i++) dot += v[i - j]! * Q[co + i]!;
      const f = beta * dot;
      if (f !== 0) for (let i = j; i < m; i++) Q[co + i] = Q[co + i]! - f * v[i - j]!;
    }
  }
  return { Q, R, p };
}

/**
 * SVD of a small dense matrix by one-sided (Hestenes) Jacobi rotations, float64.
 * Input row-major rows x cols. Returns U (rows x q), S (q, descending), V (cols x q), all row-major, q = min(rows, cols).
 * @internal
 */
export function jacobiSVD(
  M: Float64Array,
  rows: number,
  cols: number,
): { U: Float64Array; S: Float64Array; V: Float64Array; q: number } {
  const transpose = rows < cols;
  const m = transpose ? cols : rows; // rows of G (>= n)
  const n = transpose ? rows : cols;
  // G column-major m x n: column j = column j of (M or M^T)
  const G = new Float64Array(m * n);
  for (let i = 0; i < rows; i++)
    for (let j = 0; j < cols; j++) {
      const v = M[i * cols + j]!;
      if (transpose)
        G[i * m + j] = v; // M^T: column i holds row i of M
      else G[j * m + i] = v;
    }
  const V = new Float64Array(n * n); // column-major
  for (let j = 0; j < n; j++) V[j * n + j] = 1;
  const eps = 2.220446049250313e-16;
  for (let sweep = 0; sweep < 80; sweep++) {
    let rotated = false;
    for (let i = 0; i < n - 1; i++) {
      const oi = i * m;
      for (let j = i + 1; j < n; j++) {
        const oj = j * m;
        let alpha = 0;
        let beta = 0;
        let gamma = 0;
        for (let k = 0; k < m; k++) {
          const x = G[oi + k]!;
          const y = G[oj + k]!;
          alpha += x * x;
          beta += y * y;
          gamma += x * y;
        }
        if (gamma === 0 || Math.abs(gamma) <= eps * Math.sqrt(alpha * beta)) continue;
        rotated = true;
        const zeta = (beta - alpha) / (2 * gamma);
        const t = (zeta >= 0 ? 1 : -1) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta));
        const c = 1 / Math.sqrt(1 + t * t);
        const s = c * t;
        for (let k = 0; k < m; k++) {
          const x = G[oi + k]!;
          const y = G[oj + k]!;
          G[oi + k] = c * x - s * y;
          G[oj + k] = s * x + c * y;
        }
        const vi = i * n;
        const vj = j * n;
        for (let k = 0; k < n; k++) {
          const x = V[vi + k]!;
          const y = V[vj + k]!;
          V[vi + k] = c * x - s * y;
          V[vj + k] = s * x + c * y;
        }
      }
    }
    if (!rotated) break;
  }
  const sig = new Float64Array(n);
  for (let j = 0; j < n; j++) {
    let s2 = 0;
    for (let k = 0; k < m; k++) s2 += G[j * m + k]! * G[j * m + k]!;
    sig[j] = Math.sqrt(s2);
  }
  const order = Array.from({ length: n }, (_, j) => j).sort((x, y) => sig[y]! - sig[x]! || x - y);
  const q = n;
  // Left vectors of G: G = Ug S V^T with Ug (m x n); for M: if !transpose, U = Ug, V = V; else U = V, V = Ug.
  const Ug = new Float64Array(m * q);
  const Vg = new Float64Array(n * q);
  const S = new Float64Array(q);
  order.forEach((j, c) => {
    const s = sig[j]!;
    S[c] = s;
    for (let k = 0; k < m; k++) Ug[k * q + c] = s > 0 ? G[j * m + k]! / s : 0;
    for (let k = 0; k < n; k++) Vg[k * q + c] = V[j * n + k]!;
  });
  return transpose ? { U: Vg, S, V: Ug, q } : { U: Ug, S, V: Vg, q };
}

/**
 * Best rank-k approximation (Eckart-Young, Frobenius norm) of L R, computed exactly in float64 through
 * QR of the two thin factors and an SVD of the (at most r x r) core; never forms an m x n matrix.
 */
export function bestRankK(params: BestRankKParams): BestRankKResult {
  const { left, right, m, r, n } = params;
  if (left.length !== m * r || right.length !== r * n)
    throw new RangeError("bestRankK: factor sizes disagree with m, r, n");
  // L column-major (m x r): column c = L[:, c]
  const Lc = new Float64Array(m * r);
  for (let i = 0; i < m; i++) for (let c = 0; c < r; c++) Lc[c * m + i] = left[i * r + c]!;
  // R^T column-major (n x r): column c = row c of R
  const qrL = householderQR(Lc, m, r);
  const qrR = householderQR(right, n, r);
  const p1 = qrL.p;
  const p2 = qrR.p;
  // core = R1 (p1 x r) * R2^T (r x p2)
  const core = new Float64Array(p1 * p2);
  for (let i = 0; i < p1; i++)
    for (let j = 0; j < p2; j++) {
      let s = 0;
      for (let c = 0; c < r; c++) s += qrL.R[i * r + c]! * qrR.R[j * r + c]!;
      core[i * p2 + j] = s;
    }
  const svd = jacobiSVD(core, p1, p2);
  const q = svd.q;
  const k = Math.max(0, Math.min(params.k, q));
  let total = 0;
  let discarded = 0;
  for (let i = 0; i < q; i++) {
    const e = svd.S[i]! * svd.S[i]!;
    total += e;
    if (i >= k) discarded += e;
  }
  const B = new Float64Array(m * k);
  const A = new Float64Array(k * n);
  for (let t = 0; t < k; t++) {
    const root = Math.sqrt(svd.S[t]!);
    // B[:, t] = Q1 (m x p1) * U[:, t] * root
    for (let i = 0; i < m; i++) {
      let s = 0;
      for (let c = 0; c < p1; c++) s += qrL.Q[c * m + i]! * svd.U[c * q + t]!;
      B[i * k + t] = s * root;
    }
    // A[t, :] = root * V[:, t]^T Q2^T, Q2 (n x p2)
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let c = 0; c < p2; c++) s += qrR.Q[c * n + j]! * svd.V[c * q + t]!;
      A[t * n + j] = s * root;
    }
  }
  return { B, A, singularValues: svd.S, totalEnergy: total, discardedEnergy: discarded };
}

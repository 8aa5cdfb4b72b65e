/**
 * WGSL kernels of the WebGPU backend (internal). All conversions are done with integer bit
 * operations, because WGSL leaves the rounding of f32 -> f16 conversions (pack2x16float) and
 * out-of-range results implementation-defined; these match IEEE round-to-nearest-even exactly.
 */

/** Tile edge (outputs per workgroup per dimension) and the k-step of the GEMM kernel. */
export const TILE = 64;
export const TK = 16;

const convert = /* wgsl */ `
fn f16_to_f32(h: u32) -> f32 {
  let s = (h & 0x8000u) << 16u;
  let e = (h >> 10u) & 0x1fu;
  let m = h & 0x3ffu;
  if (e == 0u) {
    let v = f32(m) * 5.9604644775390625e-8;
    return bitcast<f32>(bitcast<u32>(v) | s);
  }
  if (e == 31u) { return bitcast<f32>(s | 0x7f800000u | (m << 13u)); }
  return bitcast<f32>(s | ((e + 112u) << 23u) | (m << 13u));
}
fn f32_to_f16(x: f32) -> u32 {
  let b = bitcast<u32>(x);
  let s = (b >> 16u) & 0x8000u;
  let ex = (b >> 23u) & 0xffu;
  var m = b & 0x7fffffu;
  if (ex == 0xffu) { return s | 0x7c00u | select(0u, 0x200u | (m >> 13u), m != 0u); }
  let e = i32(ex) - 112;
  if (e >= 31) { return s | 0x7c00u; }
  if (e <= 0) {
    if (e < -10) { return s; }
    m = m | 0x800000u;
    let shift = u32(14 - e);
    var h = m >> shift;
    let rem = m & ((1u << shift) - 1u);
    let mid = 1u << (shift - 1u);
    if (rem > mid || (rem == mid && (h & 1u) != 0u)) { h = h + 1u; }
    return s | h;
  }
  var h = (u32(e) << 10u) | (m >> 13u);
  let rem = m & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u) != 0u)) { h = h + 1u; }
  return s | h;
}
fn bf16_to_f32(h: u32) -> f32 { return bitcast<f32>(h << 16u); }
fn f32_to_bf16(x: f32) -> u32 {
  let b = bitcast<u32>(x);
  if ((b & 0x7f800000u) == 0x7f800000u && (b & 0x7fffffu) != 0u) { return ((b >> 16u) & 0x8000u) | 0x7fc0u; }
  return ((b + 0x7fffu + ((b >> 16u) & 1u)) >> 16u) & 0xffffu;
}
fn half_to_f32(h: u32, bf: bool) -> f32 { if (bf) { return bf16_to_f32(h); } return f16_to_f32(h); }
fn f32_to_half(x: f32, bf: bool) -> u32 { if (bf) { return f32_to_bf16(x); } return f32_to_f16(x); }
fn half_is_inf(h: u32, bf: bool) -> bool { return (h & 0x7fffu) == select(0x7c00u, 0x7f80u, bf); }
fn half_is_inf_or_nan(h: u32, bf: bool) -> bool {
  if (bf) { return (h & 0x7f80u) == 0x7f80u; }
  return (h & 0x7c00u) == 0x7c00u;
}
`;

/**
 * A conversion pass over 16-bit pairs: one invocation per 32-bit word `w` holding elements `e` and `e + 1`.
 * `P` is what the passes share: element count and dtype flag (1 = bf16).
 */
const conversionPass = (bindings: string, body: string): string => /* wgsl */ `
${convert}
struct P { count: u32, bf: u32, pad0: u32, pad1: u32 }
${bindings}
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let w = gid.x + gid.y * nw.x * 256u;
  let e = w * 2u;
  if (e >= prm.count) { return; }
  let bf = prm.bf == 1u;
${body}
}
`;

/** Widens 16-bit values (f16 or bf16, two per word) to float32. */
export const UNPACK_WGSL = conversionPass(
  /* wgsl */ `@group(0) @binding(0) var<storage, read> packed: array<u32>;
@group(0) @binding(1) var<storage, read_write> wide: array<f32>;
@group(0) @binding(2) var<uniform> prm: P;`,
  /* wgsl */ `  let word = packed[w];
  wide[e] = half_to_f32(word & 0xffffu, bf);
  if (e + 1u < prm.count) { wide[e + 1u] = half_to_f32(word >> 16u, bf); }`,
);

/** Packs float32 back to 16-bit values, flagging elements that became infinite (overflow). */
export const PACK_WGSL = conversionPass(
  /* wgsl */ `@group(0) @binding(0) var<storage, read_write> packed: array<u32>;
@group(0) @binding(1) var<storage, read> wide: array<f32>;
@group(0) @binding(2) var<uniform> prm: P;
@group(0) @binding(3) var<storage, read_write> stats: array<atomic<u32>, 4>;`,
  /* wgsl */ `  let old = packed[w];
  var lo = f32_to_half(wide[e], bf);
  var hi = old >> 16u;
  if (e + 1u < prm.count) { hi = f32_to_half(wide[e + 1u], bf); }
  if (half_is_inf(lo, bf) && !half_is_inf_or_nan(old & 0xffffu, bf)) { atomicMin(&stats[1], e); }
  if (e + 1u < prm.count && half_is_inf(hi, bf) && !half_is_inf_or_nan(old >> 16u, bf)) { atomicMin(&stats[1], e + 1u); }
  packed[w] = lo | (hi << 16u);`,
);

/**
 * Tiled GEMM in place on a float32 row block: Wf[p, q] += sum_k L[p, k] R[k, q], each workgroup a
 * TILE x TILE output tile, each invocation 4 x 4 outputs; lambda_d and lambda_b are folded in
 * while loading the tiles.
 *   mode 0 (out_in): L[p,k] = B[p,k] lb[p] ld[k]   R[k,q] = A[k,q]
 *   mode 1 (in_out): L[p,k] = A[k,p] ld[k]         R[k,q] = B[q,k] lb[q]
 * stats[0] collects max |delta| (as f32 bits, valid for non-negative values), stats[1] the first
 * element index that overflowed (f32 weights only; 16-bit weights are checked when packing).
 */
export const GEMM_WGSL = /* wgsl */ `
struct P {
  rows: u32, cols: u32, k: u32, mode: u32,
  row0: u32, inF: u32, checkOverflow: u32, pad: u32,
}
@group(0) @binding(0) var<storage, read_write> W: array<f32>;
@group(0) @binding(1) var<storage, read> A: array<f32>;
@group(0) @binding(2) var<storage, read> B: array<f32>;
@group(0) @binding(3) var<storage, read> lb: array<f32>;
@group(0) @binding(4) var<storage, read> ld: array<f32>;
@group(0) @binding(5) var<storage, read_write> stats: array<atomic<u32>, 4>;
@group(0) @binding(6) var<uniform> prm: P;
var<workgroup> tl: array<array<f32, ${TILE}>, ${TK}>;
var<workgroup> tr: array<array<f32, ${TILE}>, ${TK}>;

fn loadL(p: u32, k: u32) -> f32 {
  if (p >= prm.rows || k >= prm.k) { return 0.0; }
  let gp = prm.row0 + p;
  if (prm.mode == 0u) { return B[gp * prm.k + k] * lb[gp] * ld[k]; }
  return A[k * prm.inF + gp] * ld[k];
}
fn loadR(k: u32, q: u32) -> f32 {
  if (q >= prm.cols || k >= prm.k) { return 0.0; }
  if (prm.mode == 0u) { return A[k * prm.inF + q]; }
  return B[q * prm.k + k] * lb[q];
}

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let p0 = wg.y * ${TILE}u;
  let q0 = wg.x * ${TILE}u;
  let t = lid.y * 16u + lid.x;
  var acc: array<array<f32, 4>, 4>;
  for (var i = 0u; i < 4u; i++) { for (var j = 0u; j < 4u; j++) { acc[i][j] = 0.0; } }
  for (var k0 = 0u; k0 < prm.k; k0 += ${TK}u) {
    for (var s = 0u; s < 4u; s++) {
      let idx = t + s * 256u;           // 0..1023 over a TK x TILE tile
      let kk = idx / ${TILE}u;
      let xx = idx % ${TILE}u;
      tl[kk][xx] = loadL(p0 + xx, k0 + kk);
      tr[kk][xx] = loadR(k0 + kk, q0 + xx);
    }
    workgroupBarrier();
    for (var kk = 0u; kk < ${TK}u; kk++) {
      var lv: array<f32, 4>;
      var rv: array<f32, 4>;
      for (var i = 0u; i < 4u; i++) { lv[i] = tl[kk][lid.y + i * 16u]; rv[i] = tr[kk][lid.x + i * 16u]; }
      for (var i = 0u; i < 4u; i++) { for (var j = 0u; j < 4u; j++) { acc[i][j] = fma(lv[i], rv[j], acc[i][j]); } }
    }
    workgroupBarrier();
  }
  var mx = 0.0;
  var firstBad = 0xffffffffu;
  for (var i = 0u; i < 4u; i++) {
    let p = p0 + lid.y + i * 16u;
    if (p >= prm.rows) { continue; }
    for (var j = 0u; j < 4u; j++) {
      let q = q0 + lid.x + j * 16u;
      if (q >= prm.cols) { continue; }
      let e = p * prm.cols + q;
      let w = W[e];
      let d = acc[i][j];
      let y = w + d;
      mx = max(mx, abs(d));
      if (prm.checkOverflow == 1u) {
        let wb = bitcast<u32>(w) & 0x7f800000u;
        let yb = bitcast<u32>(y) & 0x7fffffffu;
        if (wb != 0x7f800000u && yb == 0x7f800000u) { firstBad = min(firstBad, e); }
      }
      W[e] = y;
    }
  }
  atomicMax(&stats[0], bitcast<u32>(mx));
  if (firstBad != 0xffffffffu) { atomicMin(&stats[1], firstBad); }
}
`;

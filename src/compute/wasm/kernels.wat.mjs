// The WebAssembly text of the merge kernels, as a function of the variant: SIMD128 (every engine
// with WebAssembly SIMD) and the same GEMM with relaxed-SIMD fused multiply-add
// (f32x4.relaxed_madd), used only where the engine validates it. Assembled into kernels-wasm.ts by
// src/wasm/build-wasm.mjs (`npm run build:wasm`; the output is committed and checked by
// test/wasm-build.test.ts).

/** acc = acc + x * y, plain (mul then add) or relaxed (fused or not, engine's choice). */
const madd = (relaxed, acc, x, y) =>
  relaxed
    ? `(f32x4.relaxed_madd (local.get ${x}) (local.get ${y}) (local.get ${acc}))`
    : `(f32x4.add (local.get ${acc}) (f32x4.mul (local.get ${x}) (local.get ${y})))`;

const c4 = (v) => `(v128.const i32x4 ${v} ${v} ${v} ${v})`;

// The conversions below are written inline (expressions over locals suffixed `x`) rather than as
// function calls, which V8 in Node 20 does not inline (they cost ~1.4x).

/** bfloat16 -> float32 (exact). */
const b2f = (h) => `(i32x4.shl ${h} (i32.const 16))`;

/** float32 -> bfloat16 bit patterns (in i32 lanes), round to nearest even; NaN -> quiet NaN with its sign. */
const f2b = (f, x) => `(v128.bitselect
    (v128.or (i32x4.shr_u (v128.and (local.tee $f${x} ${f}) ${c4("0x80000000")}) (i32.const 16)) ${c4("0x7fc0")})
    (i32x4.shr_u (i32x4.add (i32x4.add (local.get $f${x}) ${c4("0x7fff")}) (v128.and (i32x4.shr_u (local.get $f${x}) (i32.const 16)) ${c4("1")})) (i32.const 16))
    (i32x4.gt_u (v128.and (local.get $f${x}) ${c4("0x7fffffff")}) ${c4("0x7f800000")}))`;

/**
 * `bf16_add`: W16 = round(float32(W16) + M) in place over n elements, with max |M| (NaN ignored,
 * as the reference does) stored as a float32 at byte offset $st. (An f16 variant, exact too,
 * measured slower than onnxruntime's Cast kernels, which run on every intra-op thread: f16 weights
 * are widened and rounded inside the graph.)
 */
const bf16Add = () => {
  const up = (h) => b2f(h);
  const down = (f, x) => f2b(f, x);
  return hoistConstants(`  ;; bf16 weight W (n bit patterns at $w) += float32 delta M (at $m), rounded to nearest even;
  ;; max |M| (NaN ignored) stored as float32 at $st.
  (func (export "bf16_add") (param $w i32) (param $m i32) (param $n i32) (param $st i32)
    (local $i i32) (local $h v128) (local $ma v128) (local $mb v128) (local $mx v128) (local $x f32)
    (local $f0 v128) (local $f1 v128)
    (block $done (loop $l
      (br_if $done (i32.gt_u (i32.add (local.get $i) (i32.const 8)) (local.get $n)))
      (local.set $h (v128.load (i32.add (local.get $w) (i32.shl (local.get $i) (i32.const 1)))))
      (local.set $ma (v128.load (i32.add (local.get $m) (i32.shl (local.get $i) (i32.const 2)))))
      (local.set $mb (v128.load offset=16 (i32.add (local.get $m) (i32.shl (local.get $i) (i32.const 2)))))
      (local.set $mx (f32x4.pmax (f32x4.pmax (local.get $mx) (f32x4.abs (local.get $ma))) (f32x4.abs (local.get $mb))))
      (v128.store (i32.add (local.get $w) (i32.shl (local.get $i) (i32.const 1)))
        (i16x8.narrow_i32x4_u
          ${down(`(f32x4.add ${up("(i32x4.extend_low_i16x8_u (local.get $h))")} (local.get $ma))`, "0")}
          ${down(`(f32x4.add ${up("(i32x4.extend_high_i16x8_u (local.get $h))")} (local.get $mb))`, "1")}))
      (local.set $i (i32.add (local.get $i) (i32.const 8)))
      (br $l)))
    (block $td (loop $tl
      (br_if $td (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $ma (f32x4.splat (f32.load (i32.add (local.get $m) (i32.shl (local.get $i) (i32.const 2))))))
      (local.set $mx (f32x4.pmax (local.get $mx) (f32x4.abs (local.get $ma))))
      (i32.store16 (i32.add (local.get $w) (i32.shl (local.get $i) (i32.const 1)))
        (i32x4.extract_lane 0
          ${down(`(f32x4.add ${up("(i32x4.splat (i32.load16_u (i32.add (local.get $w) (i32.shl (local.get $i) (i32.const 1)))))")} (local.get $ma))`, "0")}))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $tl)))
    (local.set $x (f32x4.extract_lane 0 (local.get $mx)))
    (if (f32.gt (f32x4.extract_lane 1 (local.get $mx)) (local.get $x)) (then (local.set $x (f32x4.extract_lane 1 (local.get $mx)))))
    (if (f32.gt (f32x4.extract_lane 2 (local.get $mx)) (local.get $x)) (then (local.set $x (f32x4.extract_lane 2 (local.get $mx)))))
    (if (f32.gt (f32x4.extract_lane 3 (local.get $mx)) (local.get $x)) (then (local.set $x (f32x4.extract_lane 3 (local.get $mx)))))
    (f32.store (local.get $st) (local.get $x)))`);
};

/**
 * Move every v128 constant of a function into a local set once before its body: V8 rebuilds a
 * constant at each use inside a loop, a local is one register or stack read.
 */
function hoistConstants(fn) {
  const consts = [...new Set(fn.match(/\(v128\.const [^)]*\)/g) ?? [])];
  let body = fn;
  consts.forEach((c, i) => (body = body.split(c).join(`(local.get $k${i})`)));
  const decl = consts.map((_, i) => `(local $k${i} v128)`).join(" ");
  const init = consts.map((c, i) => `(local.set $k${i} ${c})`).join(" ");
  return body.replace(/\n {4}\(block \$done/, `\n    ${decl}\n    ${init}\n    (block $done`);
}

/** The kernels module's text; `relaxed`: the GEMM uses f32x4.relaxed_madd. */
export function wat(relaxed) {
  const rows = [0, 1, 2, 3];
  const accs = rows.flatMap((r) => [`$c${r}0`, `$c${r}1`]);
  return `(module
  (memory (export "memory") 1)

  ;; bfloat16 -> float32 (exact): n elements from byte offset $s to byte offset $d
  (func (export "bf16_to_f32") (param $s i32) (param $d i32) (param $n i32)
    (local $i i32) (local $v v128)
    (block $done (loop $l
      (br_if $done (i32.gt_u (i32.add (local.get $i) (i32.const 8)) (local.get $n)))
      (local.set $v (v128.load (i32.add (local.get $s) (i32.shl (local.get $i) (i32.const 1)))))
      (v128.store (i32.add (local.get $d) (i32.shl (local.get $i) (i32.const 2)))
        (i32x4.shl (i32x4.extend_low_i16x8_u (local.get $v)) (i32.const 16)))
      (v128.store offset=16 (i32.add (local.get $d) (i32.shl (local.get $i) (i32.const 2)))
        (i32x4.shl (i32x4.extend_high_i16x8_u (local.get $v)) (i32.const 16)))
      (local.set $i (i32.add (local.get $i) (i32.const 8)))
      (br $l)))
    (block $td (loop $tl
      (br_if $td (i32.ge_u (local.get $i) (local.get $n)))
      (i32.store (i32.add (local.get $d) (i32.shl (local.get $i) (i32.const 2)))
        (i32.shl (i32.load16_u (i32.add (local.get $s) (i32.shl (local.get $i) (i32.const 1)))) (i32.const 16)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $tl))))

  ;; float32 -> bfloat16, round to nearest even, NaN stays a quiet NaN with its sign
  (func $rne4 (param $b v128) (result v128)
    (v128.bitselect
      (v128.or (i32x4.shr_u (v128.and (local.get $b) (v128.const i32x4 0x80000000 0x80000000 0x80000000 0x80000000)) (i32.const 16))
               (v128.const i32x4 0x7fc0 0x7fc0 0x7fc0 0x7fc0))
      (i32x4.shr_u
        (i32x4.add (i32x4.add (local.get $b) (v128.const i32x4 0x7fff 0x7fff 0x7fff 0x7fff))
                   (v128.and (i32x4.shr_u (local.get $b) (i32.const 16)) (v128.const i32x4 1 1 1 1)))
        (i32.const 16))
      (i32x4.gt_u (v128.and (local.get $b) (v128.const i32x4 0x7fffffff 0x7fffffff 0x7fffffff 0x7fffffff))
                  (v128.const i32x4 0x7f800000 0x7f800000 0x7f800000 0x7f800000))))
  (func (export "f32_to_bf16") (param $s i32) (param $d i32) (param $n i32)
    (local $i i32) (local $p i32) (local $b i32)
    (block $done (loop $l
      (br_if $done (i32.gt_u (i32.add (local.get $i) (i32.const 8)) (local.get $n)))
      (local.set $p (i32.add (local.get $s) (i32.shl (local.get $i) (i32.const 2))))
      (v128.store (i32.add (local.get $d) (i32.shl (local.get $i) (i32.const 1)))
        (i16x8.narrow_i32x4_u (call $rne4 (v128.load (local.get $p))) (call $rne4 (v128.load offset=16 (local.get $p)))))
      (local.set $i (i32.add (local.get $i) (i32.const 8)))
      (br $l)))
    (block $td (loop $tl
      (br_if $td (i32.ge_u (local.get $i) (local.get $n)))
      (i32.store16 (i32.add (local.get $d) (i32.shl (local.get $i) (i32.const 1)))
        (i32x4.extract_lane 0 (call $rne4 (i32x4.splat (i32.load (i32.add (local.get $s) (i32.shl (local.get $i) (i32.const 2))))))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $tl))))

${bf16Add()}
  ;; The largest magnitude bit pattern (bits & 0x7fff) of n 16-bit values at $p.
  (func (export "max_bits16") (param $p i32) (param $n i32) (result i32)
    (local $i i32) (local $mx v128) (local $r i32)
    (block $done (loop $l
      (br_if $done (i32.gt_u (i32.add (local.get $i) (i32.const 8)) (local.get $n)))
      (local.set $mx (i16x8.max_u (local.get $mx)
        (v128.and (v128.load (i32.add (local.get $p) (i32.shl (local.get $i) (i32.const 1)))) (v128.const i16x8 0x7fff 0x7fff 0x7fff 0x7fff 0x7fff 0x7fff 0x7fff 0x7fff))))
      (local.set $i (i32.add (local.get $i) (i32.const 8)))
      (br $l)))
    (block $td (loop $tl
      (br_if $td (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $mx (i16x8.max_u (local.get $mx)
        (i16x8.splat (i32.and (i32.load16_u (i32.add (local.get $p) (i32.shl (local.get $i) (i32.const 1)))) (i32.const 0x7fff)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $tl)))
    (local.set $mx (i16x8.max_u (local.get $mx) (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $mx) (local.get $mx))))
    (local.set $mx (i16x8.max_u (local.get $mx) (i8x16.shuffle 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 (local.get $mx) (local.get $mx))))
    (local.set $mx (i16x8.max_u (local.get $mx) (i8x16.shuffle 2 3 0 1 2 3 0 1 2 3 0 1 2 3 0 1 (local.get $mx) (local.get $mx))))
    (i16x8.extract_lane_u 0 (local.get $mx)))

  ;; C[M x N] += A[M x K] B[K x N], row-major float32, 4 x 8 register blocks, scalar edges.
  (func $edge (param $a i32) (param $b i32) (param $c i32) (param $N i32) (param $K i32)
                (param $i0 i32) (param $i1 i32) (param $j0 i32) (param $j1 i32)
    (local $i i32) (local $j i32) (local $k i32) (local $s f32)
    (local.set $i (local.get $i0))
    (block $id (loop $il
      (br_if $id (i32.ge_u (local.get $i) (local.get $i1)))
      (local.set $j (local.get $j0))
      (block $jd (loop $jl
        (br_if $jd (i32.ge_u (local.get $j) (local.get $j1)))
        (local.set $s (f32.const 0))
        (local.set $k (i32.const 0))
        (block $kd (loop $kl
          (br_if $kd (i32.ge_u (local.get $k) (local.get $K)))
          (local.set $s (f32.add (local.get $s)
            (f32.mul (f32.load (i32.add (local.get $a) (i32.shl (i32.add (i32.mul (local.get $i) (local.get $K)) (local.get $k)) (i32.const 2))))
                     (f32.load (i32.add (local.get $b) (i32.shl (i32.add (i32.mul (local.get $k) (local.get $N)) (local.get $j)) (i32.const 2)))))))
          (local.set $k (i32.add (local.get $k) (i32.const 1)))
          (br $kl)))
        (local.set $k (i32.add (local.get $c) (i32.shl (i32.add (i32.mul (local.get $i) (local.get $N)) (local.get $j)) (i32.const 2))))
        (f32.store (local.get $k) (f32.add (f32.load (local.get $k)) (local.get $s)))
        (local.set $j (i32.add (local.get $j) (i32.const 1)))
        (br $jl)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $il))))
  (func (export "gemm") (param $a i32) (param $b i32) (param $c i32) (param $M i32) (param $N i32) (param $K i32)
    (local $i i32) (local $j i32) (local $k i32) (local $M4 i32) (local $N8 i32)
    (local $pa i32) (local $pb i32) (local $pc i32) (local $rk i32) (local $rn i32)
    ${accs.map((a) => `(local ${a} v128)`).join(" ")}
    (local $b0 v128) (local $b1 v128) (local $x v128)
    (local.set $M4 (i32.and (local.get $M) (i32.const -4)))
    (local.set $N8 (i32.and (local.get $N) (i32.const -8)))
    (local.set $rk (i32.shl (local.get $K) (i32.const 2)))
    (local.set $rn (i32.shl (local.get $N) (i32.const 2)))
    (block $id (loop $il
      (br_if $id (i32.ge_u (local.get $i) (local.get $M4)))
      (local.set $j (i32.const 0))
      (block $jd (loop $jl
        (br_if $jd (i32.ge_u (local.get $j) (local.get $N8)))
        ${accs.map((a) => `(local.set ${a} (v128.const i32x4 0 0 0 0))`).join(" ")}
        (local.set $pa (i32.add (local.get $a) (i32.mul (local.get $i) (local.get $rk))))
        (local.set $pb (i32.add (local.get $b) (i32.shl (local.get $j) (i32.const 2))))
        (local.set $k (i32.const 0))
        (block $kd (loop $kl
          (br_if $kd (i32.ge_u (local.get $k) (local.get $K)))
          (local.set $b0 (v128.load (local.get $pb)))
          (local.set $b1 (v128.load offset=16 (local.get $pb)))
          ${rows
            .map(
              (
                r,
              ) => `(local.set $x (f32x4.splat (f32.load (i32.add (local.get $pa) (i32.mul (local.get $rk) (i32.const ${r}))))))
          (local.set $c${r}0 ${madd(relaxed, `$c${r}0`, "$x", "$b0")})
          (local.set $c${r}1 ${madd(relaxed, `$c${r}1`, "$x", "$b1")})`,
            )
            .join("\n          ")}
          (local.set $pa (i32.add (local.get $pa) (i32.const 4)))
          (local.set $pb (i32.add (local.get $pb) (local.get $rn)))
          (local.set $k (i32.add (local.get $k) (i32.const 1)))
          (br $kl)))
        (local.set $pc (i32.add (local.get $c) (i32.shl (i32.add (i32.mul (local.get $i) (local.get $N)) (local.get $j)) (i32.const 2))))
        ${rows
          .map(
            (r) => `(v128.store (local.get $pc) (f32x4.add (v128.load (local.get $pc)) (local.get $c${r}0)))
        (v128.store offset=16 (local.get $pc) (f32x4.add (v128.load offset=16 (local.get $pc)) (local.get $c${r}1)))
        (local.set $pc (i32.add (local.get $pc) (local.get $rn)))`,
          )
          .join("\n        ")}
        (local.set $j (i32.add (local.get $j) (i32.const 8)))
        (br $jl)))
      (local.set $i (i32.add (local.get $i) (i32.const 4)))
      (br $il)))
    (call $edge (local.get $a) (local.get $b) (local.get $c) (local.get $N) (local.get $K) (i32.const 0) (local.get $M4) (local.get $N8) (local.get $N))
    (call $edge (local.get $a) (local.get $b) (local.get $c) (local.get $N) (local.get $K) (local.get $M4) (local.get $M) (i32.const 0) (local.get $N)))
)`;
}

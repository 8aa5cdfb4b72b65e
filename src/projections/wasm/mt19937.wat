;; MT19937 + PyTorch's float32 uniform transform, with WebAssembly SIMD for tempering and conversion.
;; Memory: state mt[624] at byte 0; output scratch from byte 4096. Built into mt19937-wasm.ts by build-wasm.mjs.
(module
  (memory (export "memory") 2)
  (global $mti (mut i32) (i32.const 624))

  (func (export "seed") (param $s i32)
    (local $i i32) (local $prev i32)
    (i32.store (i32.const 0) (local.get $s))
    (local.set $i (i32.const 1))
    (loop $l
      (local.set $prev (i32.load (i32.shl (i32.sub (local.get $i) (i32.const 1)) (i32.const 2))))
      (i32.store (i32.shl (local.get $i) (i32.const 2))
        (i32.add
          (i32.mul (i32.const 1812433253) (i32.xor (local.get $prev) (i32.shr_u (local.get $prev) (i32.const 30))))
          (local.get $i)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 624))))
    (global.set $mti (i32.const 624)))

  (func $mix (param $i i32) (param $next i32) (param $far i32) (result i32)
    (local $y i32)
    (local.set $y
      (i32.or
        (i32.and (i32.load (i32.shl (local.get $i) (i32.const 2))) (i32.const 0x80000000))
        (i32.and (i32.load (i32.shl (local.get $next) (i32.const 2))) (i32.const 0x7fffffff))))
    (i32.xor
      (i32.xor (i32.load (i32.shl (local.get $far) (i32.const 2))) (i32.shr_u (local.get $y) (i32.const 1)))
      (i32.and (i32.sub (i32.const 0) (i32.and (local.get $y) (i32.const 1))) (i32.const 0x9908b0df))))

  ;; 4 lanes of the twist at word $i: mt[i..i+3] = mt[far..far+3] ^ (y >>> 1) ^ (MATRIX if y odd)
  (func $mix4 (param $i i32) (param $far i32)
    (local $y v128)
    (local.set $y
      (v128.or
        (v128.and (v128.load (i32.shl (local.get $i) (i32.const 2))) (v128.const i32x4 0x80000000 0x80000000 0x80000000 0x80000000))
        (v128.and (v128.load (i32.shl (i32.add (local.get $i) (i32.const 1)) (i32.const 2))) (v128.const i32x4 0x7fffffff 0x7fffffff 0x7fffffff 0x7fffffff))))
    (v128.store (i32.shl (local.get $i) (i32.const 2))
      (v128.xor
        (v128.xor (v128.load (i32.shl (local.get $far) (i32.const 2))) (i32x4.shr_u (local.get $y) (i32.const 1)))
        (v128.and
          (i32x4.sub (v128.const i32x4 0 0 0 0) (v128.and (local.get $y) (v128.const i32x4 1 1 1 1)))
          (v128.const i32x4 0x9908b0df 0x9908b0df 0x9908b0df 0x9908b0df)))))

  ;; The twist, 4 words at a time where the recurrence allows (reads of old values stay >= 4 words ahead).
  (func $twist
    (local $i i32)
    (local.set $i (i32.const 0))
    (loop $a
      (call $mix4 (local.get $i) (i32.add (local.get $i) (i32.const 397)))
      (local.set $i (i32.add (local.get $i) (i32.const 4)))
      (br_if $a (i32.lt_u (local.get $i) (i32.const 224))))
    (loop $a2
      (i32.store (i32.shl (local.get $i) (i32.const 2))
        (call $mix (local.get $i) (i32.add (local.get $i) (i32.const 1)) (i32.add (local.get $i) (i32.const 397))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $a2 (i32.lt_u (local.get $i) (i32.const 227))))
    (loop $b
      (call $mix4 (local.get $i) (i32.sub (local.get $i) (i32.const 227)))
      (local.set $i (i32.add (local.get $i) (i32.const 4)))
      (br_if $b (i32.lt_u (local.get $i) (i32.const 623))))
    (i32.store (i32.const 2492) (call $mix (i32.const 623) (i32.const 0) (i32.const 396)))
    (global.set $mti (i32.const 0)))

  ;; one element, scalar
  (func $one (param $dst i32) (param $from f64) (param $scale f64) (param $fused i32)
    (local $y i32) (local $k f64)
    (local.set $y (i32.load (i32.shl (global.get $mti) (i32.const 2))))
    (global.set $mti (i32.add (global.get $mti) (i32.const 1)))
    (local.set $y (i32.xor (local.get $y) (i32.shr_u (local.get $y) (i32.const 11))))
    (local.set $y (i32.xor (local.get $y) (i32.and (i32.shl (local.get $y) (i32.const 7)) (i32.const 0x9d2c5680))))
    (local.set $y (i32.xor (local.get $y) (i32.and (i32.shl (local.get $y) (i32.const 15)) (i32.const 0xefc60000))))
    (local.set $y (i32.xor (local.get $y) (i32.shr_u (local.get $y) (i32.const 18))))
    (local.set $k (f64.convert_i32_u (i32.and (local.get $y) (i32.const 0xffffff))))
    (if (local.get $fused)
      (then (f32.store (local.get $dst) (f32.demote_f64 (f64.add (f64.mul (local.get $k) (local.get $scale)) (local.get $from)))))
      (else (f32.store (local.get $dst)
        (f32.add (f32.demote_f64 (f64.mul (local.get $k) (local.get $scale))) (f32.demote_f64 (local.get $from)))))))

  ;; fill n float32 values at $out: from + x * span, x = (u & 0xFFFFFF) * 2^-24, scale = span * 2^-24
  (func (export "fill") (param $out i32) (param $n i32) (param $from f64) (param $scale f64) (param $fused i32)
    (local $k i32) (local $cnt i32) (local $v v128) (local $kv v128) (local $lo v128) (local $hi v128)
    (local $s2 v128) (local $f2 v128) (local $s4 v128) (local $f4 v128)
    (local.set $s2 (f64x2.splat (local.get $scale)))
    (local.set $f2 (f64x2.splat (local.get $from)))
    (local.set $s4 (f32x4.splat (f32.demote_f64 (local.get $scale))))
    (local.set $f4 (f32x4.splat (f32.demote_f64 (local.get $from))))
    (block $done
      (loop $outer
        (br_if $done (i32.ge_u (local.get $k) (local.get $n)))
        (if (i32.ge_u (global.get $mti) (i32.const 624)) (then (call $twist)))
        ;; cnt = min(624 - mti, n - k)
        (local.set $cnt (i32.sub (i32.const 624) (global.get $mti)))
        (if (i32.gt_u (local.get $cnt) (i32.sub (local.get $n) (local.get $k)))
          (then (local.set $cnt (i32.sub (local.get $n) (local.get $k)))))
        ;; scalar head until mti is a multiple of 4
        (block $hd (loop $h
          (br_if $hd (i32.eqz (local.get $cnt)))
          (br_if $hd (i32.eqz (i32.and (global.get $mti) (i32.const 3))))
          (call $one (i32.add (local.get $out) (i32.shl (local.get $k) (i32.const 2))) (local.get $from) (local.get $scale) (local.get $fused))
          (local.set $k (i32.add (local.get $k) (i32.const 1)))
          (local.set $cnt (i32.sub (local.get $cnt) (i32.const 1)))
          (br $h)))
        ;; SIMD body, 4 at a time
        (block $bd (loop $b
          (br_if $bd (i32.lt_u (local.get $cnt) (i32.const 4)))
          (local.set $v (v128.load (i32.shl (global.get $mti) (i32.const 2))))
          (local.set $v (v128.xor (local.get $v) (i32x4.shr_u (local.get $v) (i32.const 11))))
          (local.set $v (v128.xor (local.get $v) (v128.and (i32x4.shl (local.get $v) (i32.const 7)) (v128.const i32x4 0x9d2c5680 0x9d2c5680 0x9d2c5680 0x9d2c5680))))
          (local.set $v (v128.xor (local.get $v) (v128.and (i32x4.shl (local.get $v) (i32.const 15)) (v128.const i32x4 0xefc60000 0xefc60000 0xefc60000 0xefc60000))))
          (local.set $v (v128.xor (local.get $v) (i32x4.shr_u (local.get $v) (i32.const 18))))
          (local.set $kv (v128.and (local.get $v) (v128.const i32x4 0xffffff 0xffffff 0xffffff 0xffffff)))
          (if (local.get $fused)
            (then
              (local.set $lo (f64x2.add (f64x2.mul (f64x2.convert_low_i32x4_s (local.get $kv)) (local.get $s2)) (local.get $f2)))
              (local.set $hi (f64x2.add (f64x2.mul
                (f64x2.convert_low_i32x4_s (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $kv) (local.get $kv)))
                (local.get $s2)) (local.get $f2)))
              (v128.store (i32.add (local.get $out) (i32.shl (local.get $k) (i32.const 2)))
                (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
                  (f32x4.demote_f64x2_zero (local.get $lo)) (f32x4.demote_f64x2_zero (local.get $hi)))))
            (else
              (v128.store (i32.add (local.get $out) (i32.shl (local.get $k) (i32.const 2)))
                (f32x4.add (f32x4.mul (f32x4.convert_i32x4_s (local.get $kv)) (local.get $s4)) (local.get $f4)))))
          (global.set $mti (i32.add (global.get $mti) (i32.const 4)))
          (local.set $k (i32.add (local.get $k) (i32.const 4)))
          (local.set $cnt (i32.sub (local.get $cnt) (i32.const 4)))
          (br $b)))
        ;; scalar tail
        (block $td (loop $t
          (br_if $td (i32.eqz (local.get $cnt)))
          (call $one (i32.add (local.get $out) (i32.shl (local.get $k) (i32.const 2))) (local.get $from) (local.get $scale) (local.get $fused))
          (local.set $k (i32.add (local.get $k) (i32.const 1)))
          (local.set $cnt (i32.sub (local.get $cnt) (i32.const 1)))
          (br $t)))
        (br $outer))))
)

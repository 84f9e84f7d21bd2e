// secp256k1 field and group arithmetic for VERIFYING public data (NUT-12 DLEQ proofs), compiled to
// WebAssembly with AssemblyScript (`npm run wasm`; the .wasm beside this file is committed and a test
// rebuilds it and compares). Why: BigInt arithmetic allocates on every operation and capped P2PK
// verification near 1,300 proofs/s; 64-bit integer arithmetic on unboxed limbs does the same work several
// times faster. Variable time throughout: never feed it a secret.
//
// Layout in linear memory (little-endian): a field element is 8 × u32 limbs (32 bytes) holding a value
// below 2^256 that is congruent to the element mod p (not necessarily below p until normalised); an affine
// point is x‖y (64 bytes); a Jacobian point is X‖Y‖Z (96 bytes, X/Z², Y/Z³) with Z ≡ 0 meaning infinity.
// The caller (src/rails/cashu/secp256k1.ts) owns every buffer; this module only keeps its temporaries.

const M32: u64 = 0xffffffff;

// p = 2^256 − 2^32 − 977, so 2^256 ≡ 2^32 + 977 (mod p).
const FIELD_P = memory.data<u32>([0xfffffc2f, 0xfffffffe, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff]);
// β, a cube root of unity mod p: (x, y) ↦ (βx, y) is multiplication by the GLV λ.
const BETA = memory.data<u32>([0x719501ee, 0xc1396c28, 0x12f58995, 0x9cf04975, 0xac3434e9, 0x6e64479e, 0x657c0710, 0x7ae96a2b]);

// Temporaries (field elements), one block per routine so nested calls never share a slot.
const TMP = memory.data(32 * 64);
@inline function tmp(i: i32): usize {
  return TMP + (<usize>i << 5);
}

// ---- field ----------------------------------------------------------------------------------------------

@inline function ld(p: usize, i: i32): u64 {
  return <u64>load<u32>(p + (<usize>i << 2));
}

/** Writes c0..c15 (columns below 2^37 each, value below 2^512) reduced below 2^256. */
@inline function reduce512(
  r: usize,
  c0: u64, c1: u64, c2: u64, c3: u64, c4: u64, c5: u64, c6: u64, c7: u64,
  c8: u64, c9: u64, c10: u64, c11: u64, c12: u64, c13: u64, c14: u64, c15: u64,
): void {
  c1 += c0 >> 32; c0 &= M32;
  c2 += c1 >> 32; c1 &= M32;
  c3 += c2 >> 32; c2 &= M32;
  c4 += c3 >> 32; c3 &= M32;
  c5 += c4 >> 32; c4 &= M32;
  c6 += c5 >> 32; c5 &= M32;
  c7 += c6 >> 32; c6 &= M32;
  c8 += c7 >> 32; c7 &= M32;
  c9 += c8 >> 32; c8 &= M32;
  c10 += c9 >> 32; c9 &= M32;
  c11 += c10 >> 32; c10 &= M32;
  c12 += c11 >> 32; c11 &= M32;
  c13 += c12 >> 32; c12 &= M32;
  c14 += c13 >> 32; c13 &= M32;
  c15 += c14 >> 32; c14 &= M32;
  // Fold the high half H (limbs 8..15): H·2^256 ≡ H·977 + H·2^32.
  let d: u64 = c0 + c8 * 977;
  let r0 = d & M32; d >>= 32;
  d += c1 + c9 * 977 + c8;
  let r1 = d & M32; d >>= 32;
  d += c2 + c10 * 977 + c9;
  let r2 = d & M32; d >>= 32;
  d += c3 + c11 * 977 + c10;
  let r3 = d & M32; d >>= 32;
  d += c4 + c12 * 977 + c11;
  let r4 = d & M32; d >>= 32;
  d += c5 + c13 * 977 + c12;
  let r5 = d & M32; d >>= 32;
  d += c6 + c14 * 977 + c13;
  let r6 = d & M32; d >>= 32;
  d += c7 + c15 * 977 + c14;
  let r7 = d & M32; d >>= 32;
  d += c15; // what is left at 2^256 (below 2^35): fold once more
  let e: u64 = r0 + d * 977;
  r0 = e & M32; e >>= 32;
  e += r1 + d;
  r1 = e & M32; e >>= 32;
  e += r2; r2 = e & M32; e >>= 32;
  e += r3; r3 = e & M32; e >>= 32;
  e += r4; r4 = e & M32; e >>= 32;
  e += r5; r5 = e & M32; e >>= 32;
  e += r6; r6 = e & M32; e >>= 32;
  e += r7; r7 = e & M32; e >>= 32;
  // e is 0 or 1; when 1 the value just passed 2^256 and is now small, so this last fold cannot carry out.
  let f: u64 = r0 + e * 977;
  r0 = f & M32; f >>= 32;
  f += r1 + e; r1 = f & M32; f >>= 32;
  f += r2; r2 = f & M32; f >>= 32;
  f += r3; r3 = f & M32; f >>= 32;
  f += r4; r4 = f & M32; f >>= 32;
  f += r5; r5 = f & M32; f >>= 32;
  f += r6; r6 = f & M32; f >>= 32;
  r7 += f;
  store<u32>(r, <u32>r0, 0);
  store<u32>(r, <u32>r1, 4);
  store<u32>(r, <u32>r2, 8);
  store<u32>(r, <u32>r3, 12);
  store<u32>(r, <u32>r4, 16);
  store<u32>(r, <u32>r5, 20);
  store<u32>(r, <u32>r6, 24);
  store<u32>(r, <u32>r7, 28);
}

// Schoolbook products, unrolled on purpose: every limb and column stays in a local (a register), where a
// loop would go through memory. Column k collects the low halves of a_i·b_j with i + j = k and the high
// halves with i + j = k − 1: at most 16 terms below 2^32 each, so no column overflows 64 bits.
export function fe_mul(r: usize, a: usize, b: usize): void {
  const a0: u64 = <u64>load<u32>(a, 0);
  const a1: u64 = <u64>load<u32>(a, 4);
  const a2: u64 = <u64>load<u32>(a, 8);
  const a3: u64 = <u64>load<u32>(a, 12);
  const a4: u64 = <u64>load<u32>(a, 16);
  const a5: u64 = <u64>load<u32>(a, 20);
  const a6: u64 = <u64>load<u32>(a, 24);
  const a7: u64 = <u64>load<u32>(a, 28);
  const b0: u64 = <u64>load<u32>(b, 0);
  const b1: u64 = <u64>load<u32>(b, 4);
  const b2: u64 = <u64>load<u32>(b, 8);
  const b3: u64 = <u64>load<u32>(b, 12);
  const b4: u64 = <u64>load<u32>(b, 16);
  const b5: u64 = <u64>load<u32>(b, 20);
  const b6: u64 = <u64>load<u32>(b, 24);
  const b7: u64 = <u64>load<u32>(b, 28);
  let c0: u64 = 0, c1: u64 = 0, c2: u64 = 0, c3: u64 = 0, c4: u64 = 0, c5: u64 = 0, c6: u64 = 0, c7: u64 = 0, c8: u64 = 0, c9: u64 = 0, c10: u64 = 0, c11: u64 = 0, c12: u64 = 0, c13: u64 = 0, c14: u64 = 0, c15: u64 = 0;
  let p: u64;
  p = a0 * b0; c0 += p & M32; c1 += p >> 32;
  p = a0 * b1; c1 += p & M32; c2 += p >> 32;
  p = a0 * b2; c2 += p & M32; c3 += p >> 32;
  p = a0 * b3; c3 += p & M32; c4 += p >> 32;
  p = a0 * b4; c4 += p & M32; c5 += p >> 32;
  p = a0 * b5; c5 += p & M32; c6 += p >> 32;
  p = a0 * b6; c6 += p & M32; c7 += p >> 32;
  p = a0 * b7; c7 += p & M32; c8 += p >> 32;
  p = a1 * b0; c1 += p & M32; c2 += p >> 32;
  p = a1 * b1; c2 += p & M32; c3 += p >> 32;
  p = a1 * b2; c3 += p & M32; c4 += p >> 32;
  p = a1 * b3; c4 += p & M32; c5 += p >> 32;
  p = a1 * b4; c5 += p & M32; c6 += p >> 32;
  p = a1 * b5; c6 += p & M32; c7 += p >> 32;
  p = a1 * b6; c7 += p & M32; c8 += p >> 32;
  p = a1 * b7; c8 += p & M32; c9 += p >> 32;
  p = a2 * b0; c2 += p & M32; c3 += p >> 32;
  p = a2 * b1; c3 += p & M32; c4 += p >> 32;
  p = a2 * b2; c4 += p & M32; c5 += p >> 32;
  p = a2 * b3; c5 += p & M32; c6 += p >> 32;
  p = a2 * b4; c6 += p & M32; c7 += p >> 32;
  p = a2 * b5; c7 += p & M32; c8 += p >> 32;
  p = a2 * b6; c8 += p & M32; c9 += p >> 32;
  p = a2 * b7; c9 += p & M32; c10 += p >> 32;
  p = a3 * b0; c3 += p & M32; c4 += p >> 32;
  p = a3 * b1; c4 += p & M32; c5 += p >> 32;
  p = a3 * b2; c5 += p & M32; c6 += p >> 32;
  p = a3 * b3; c6 += p & M32; c7 += p >> 32;
  p = a3 * b4; c7 += p & M32; c8 += p >> 32;
  p = a3 * b5; c8 += p & M32; c9 += p >> 32;
  p = a3 * b6; c9 += p & M32; c10 += p >> 32;
  p = a3 * b7; c10 += p & M32; c11 += p >> 32;
  p = a4 * b0; c4 += p & M32; c5 += p >> 32;
  p = a4 * b1; c5 += p & M32; c6 += p >> 32;
  p = a4 * b2; c6 += p & M32; c7 += p >> 32;
  p = a4 * b3; c7 += p & M32; c8 += p >> 32;
  p = a4 * b4; c8 += p & M32; c9 += p >> 32;
  p = a4 * b5; c9 += p & M32; c10 += p >> 32;
  p = a4 * b6; c10 += p & M32; c11 += p >> 32;
  p = a4 * b7; c11 += p & M32; c12 += p >> 32;
  p = a5 * b0; c5 += p & M32; c6 += p >> 32;
  p = a5 * b1; c6 += p & M32; c7 += p >> 32;
  p = a5 * b2; c7 += p & M32; c8 += p >> 32;
  p = a5 * b3; c8 += p & M32; c9 += p >> 32;
  p = a5 * b4; c9 += p & M32; c10 += p >> 32;
  p = a5 * b5; c10 += p & M32; c11 += p >> 32;
  p = a5 * b6; c11 += p & M32; c12 += p >> 32;
  p = a5 * b7; c12 += p & M32; c13 += p >> 32;
  p = a6 * b0; c6 += p & M32; c7 += p >> 32;
  p = a6 * b1; c7 += p & M32; c8 += p >> 32;
  p = a6 * b2; c8 += p & M32; c9 += p >> 32;
  p = a6 * b3; c9 += p & M32; c10 += p >> 32;
  p = a6 * b4; c10 += p & M32; c11 += p >> 32;
  p = a6 * b5; c11 += p & M32; c12 += p >> 32;
  p = a6 * b6; c12 += p & M32; c13 += p >> 32;
  p = a6 * b7; c13 += p & M32; c14 += p >> 32;
  p = a7 * b0; c7 += p & M32; c8 += p >> 32;
  p = a7 * b1; c8 += p & M32; c9 += p >> 32;
  p = a7 * b2; c9 += p & M32; c10 += p >> 32;
  p = a7 * b3; c10 += p & M32; c11 += p >> 32;
  p = a7 * b4; c11 += p & M32; c12 += p >> 32;
  p = a7 * b5; c12 += p & M32; c13 += p >> 32;
  p = a7 * b6; c13 += p & M32; c14 += p >> 32;
  p = a7 * b7; c14 += p & M32; c15 += p >> 32;
  reduce512(r, c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15);
}

/** As fe_mul with b = a: each cross product once, doubled (halves below 2^33, at most 8 per column). */
export function fe_sqr(r: usize, a: usize): void {
  const a0: u64 = <u64>load<u32>(a, 0);
  const a1: u64 = <u64>load<u32>(a, 4);
  const a2: u64 = <u64>load<u32>(a, 8);
  const a3: u64 = <u64>load<u32>(a, 12);
  const a4: u64 = <u64>load<u32>(a, 16);
  const a5: u64 = <u64>load<u32>(a, 20);
  const a6: u64 = <u64>load<u32>(a, 24);
  const a7: u64 = <u64>load<u32>(a, 28);
  let c0: u64 = 0, c1: u64 = 0, c2: u64 = 0, c3: u64 = 0, c4: u64 = 0, c5: u64 = 0, c6: u64 = 0, c7: u64 = 0, c8: u64 = 0, c9: u64 = 0, c10: u64 = 0, c11: u64 = 0, c12: u64 = 0, c13: u64 = 0, c14: u64 = 0, c15: u64 = 0;
  let p: u64;
  p = a0 * a0; c0 += p & M32; c1 += p >> 32;
  p = a0 * a1; c1 += (p & M32) << 1; c2 += (p >> 32) << 1;
  p = a0 * a2; c2 += (p & M32) << 1; c3 += (p >> 32) << 1;
  p = a0 * a3; c3 += (p & M32) << 1; c4 += (p >> 32) << 1;
  p = a0 * a4; c4 += (p & M32) << 1; c5 += (p >> 32) << 1;
  p = a0 * a5; c5 += (p & M32) << 1; c6 += (p >> 32) << 1;
  p = a0 * a6; c6 += (p & M32) << 1; c7 += (p >> 32) << 1;
  p = a0 * a7; c7 += (p & M32) << 1; c8 += (p >> 32) << 1;
  p = a1 * a1; c2 += p & M32; c3 += p >> 32;
  p = a1 * a2; c3 += (p & M32) << 1; c4 += (p >> 32) << 1;
  p = a1 * a3; c4 += (p & M32) << 1; c5 += (p >> 32) << 1;
  p = a1 * a4; c5 += (p & M32) << 1; c6 += (p >> 32) << 1;
  p = a1 * a5; c6 += (p & M32) << 1; c7 += (p >> 32) << 1;
  p = a1 * a6; c7 += (p & M32) << 1; c8 += (p >> 32) << 1;
  p = a1 * a7; c8 += (p & M32) << 1; c9 += (p >> 32) << 1;
  p = a2 * a2; c4 += p & M32; c5 += p >> 32;
  p = a2 * a3; c5 += (p & M32) << 1; c6 += (p >> 32) << 1;
  p = a2 * a4; c6 += (p & M32) << 1; c7 += (p >> 32) << 1;
  p = a2 * a5; c7 += (p & M32) << 1; c8 += (p >> 32) << 1;
  p = a2 * a6; c8 += (p & M32) << 1; c9 += (p >> 32) << 1;
  p = a2 * a7; c9 += (p & M32) << 1; c10 += (p >> 32) << 1;
  p = a3 * a3; c6 += p & M32; c7 += p >> 32;
  p = a3 * a4; c7 += (p & M32) << 1; c8 += (p >> 32) << 1;
  p = a3 * a5; c8 += (p & M32) << 1; c9 += (p >> 32) << 1;
  p = a3 * a6; c9 += (p & M32) << 1; c10 += (p >> 32) << 1;
  p = a3 * a7; c10 += (p & M32) << 1; c11 += (p >> 32) << 1;
  p = a4 * a4; c8 += p & M32; c9 += p >> 32;
  p = a4 * a5; c9 += (p & M32) << 1; c10 += (p >> 32) << 1;
  p = a4 * a6; c10 += (p & M32) << 1; c11 += (p >> 32) << 1;
  p = a4 * a7; c11 += (p & M32) << 1; c12 += (p >> 32) << 1;
  p = a5 * a5; c10 += p & M32; c11 += p >> 32;
  p = a5 * a6; c11 += (p & M32) << 1; c12 += (p >> 32) << 1;
  p = a5 * a7; c12 += (p & M32) << 1; c13 += (p >> 32) << 1;
  p = a6 * a6; c12 += p & M32; c13 += p >> 32;
  p = a6 * a7; c13 += (p & M32) << 1; c14 += (p >> 32) << 1;
  p = a7 * a7; c14 += p & M32; c15 += p >> 32;
  reduce512(r, c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15);
}

/** r = a + b. */
export function fe_add(r: usize, a: usize, b: usize): void {
  let d: u64 = 0;
  for (let i = 0; i < 8; i++) {
    d += ld(a, i) + ld(b, i);
    store<u32>(r + (<usize>i << 2), <u32>d);
    d >>= 32;
  }
  // A carry out means the sum passed 2^256: add 2^256 − p (= 2^32 + 977) back in, at most twice.
  carryFold(r, d);
}

/** Adds k·(2^32 + 977) to r (k small) and folds any carry out again. */
@inline function carryFold(r: usize, k: u64): void {
  while (k != 0) {
    let d: u64 = ld(r, 0) + k * 977;
    store<u32>(r, <u32>d);
    d = (d >> 32) + ld(r, 1) + k;
    store<u32>(r, <u32>d, 4);
    d >>= 32;
    for (let i = 2; i < 8 && d != 0; i++) {
      d += ld(r, i);
      store<u32>(r + (<usize>i << 2), <u32>d);
      d >>= 32;
    }
    k = d;
  }
}

/** r = a − b. */
export function fe_sub(r: usize, a: usize, b: usize): void {
  let d: i64 = 0;
  for (let i = 0; i < 8; i++) {
    d += <i64>ld(a, i) - <i64>ld(b, i);
    store<u32>(r + (<usize>i << 2), <u32>d);
    d >>= 32;
  }
  // A borrow means we hold a − b + 2^256; subtract 2^256 − p to get a − b + p, again if that borrows.
  while (d != 0) {
    let e: i64 = <i64>ld(r, 0) - 977;
    store<u32>(r, <u32>e);
    e = (e >> 32) + <i64>ld(r, 1) - 1;
    store<u32>(r, <u32>e, 4);
    e >>= 32;
    for (let i = 2; i < 8 && e != 0; i++) {
      e += <i64>ld(r, i);
      store<u32>(r + (<usize>i << 2), <u32>e);
      e >>= 32;
    }
    d = e;
  }
}

/** Makes r canonical (below p). A value below 2^256 needs at most one subtraction of p. */
export function fe_normalize(r: usize): void {
  // r ≥ p exactly when r + (2^256 − p) carries out of 256 bits.
  let d: u64 = ld(r, 0) + 977;
  d = (d >> 32) + ld(r, 1) + 1;
  d >>= 32;
  for (let i = 2; i < 8; i++) d = (d + ld(r, i)) >> 32;
  if (d == 0) return;
  d = ld(r, 0) + 977;
  store<u32>(r, <u32>d);
  d = (d >> 32) + ld(r, 1) + 1;
  store<u32>(r, <u32>d, 4);
  d >>= 32;
  for (let i = 2; i < 8; i++) {
    d += ld(r, i);
    store<u32>(r + (<usize>i << 2), <u32>d);
    d >>= 32;
  }
}

@inline function copy(r: usize, a: usize): void {
  memory.copy(r, a, 32);
}

@inline function setSmall(r: usize, v: u32): void {
  memory.fill(r, 0, 32);
  store<u32>(r, v);
}

export function fe_is_zero(a: usize): bool {
  const t = tmp(0);
  copy(t, a);
  fe_normalize(t);
  let acc: u32 = 0;
  for (let i = 0; i < 8; i++) acc |= load<u32>(t + (<usize>i << 2));
  return acc == 0;
}

function fe_equal(a: usize, b: usize): bool {
  const t = tmp(1);
  fe_sub(t, a, b);
  return fe_is_zero(t);
}

function sqrN(r: usize, a: usize, n: i32): void {
  fe_sqr(r, a);
  for (let i = 1; i < n; i++) fe_sqr(r, r);
}

/**
 * Shared start of the inversion and square-root addition chains (p's exponents share the run of 223
 * ones): leaves a^(2^k − 1) in x2, x3 and x22, and a^(2^223 − 1) in r.
 */
function chain223(r: usize, a: usize, x2: usize, x3: usize, x22: usize): void {
  const x6 = tmp(10), x9 = tmp(11), x11 = tmp(12), x44 = tmp(13), x88 = tmp(14), x176 = tmp(15), x220 = tmp(16);
  fe_sqr(x2, a); fe_mul(x2, x2, a);
  fe_sqr(x3, x2); fe_mul(x3, x3, a);
  sqrN(x6, x3, 3); fe_mul(x6, x6, x3);
  sqrN(x9, x6, 3); fe_mul(x9, x9, x3);
  sqrN(x11, x9, 2); fe_mul(x11, x11, x2);
  sqrN(x22, x11, 11); fe_mul(x22, x22, x11);
  sqrN(x44, x22, 22); fe_mul(x44, x44, x22);
  sqrN(x88, x44, 44); fe_mul(x88, x88, x44);
  sqrN(x176, x88, 88); fe_mul(x176, x176, x88);
  sqrN(x220, x176, 44); fe_mul(x220, x220, x44);
  sqrN(r, x220, 3); fe_mul(r, r, x3);
}

/** r = a^(p−2) = 1/a (0 for 0). r may alias a. */
export function fe_inv(r: usize, a: usize): void {
  const x2 = tmp(17), x3 = tmp(18), x22 = tmp(19), t = tmp(20), a0 = tmp(21);
  copy(a0, a);
  chain223(t, a0, x2, x3, x22);
  sqrN(t, t, 23); fe_mul(t, t, x22);
  sqrN(t, t, 5); fe_mul(t, t, a0);
  sqrN(t, t, 3); fe_mul(t, t, x2);
  sqrN(t, t, 2); fe_mul(r, t, a0);
}

/** r = a^((p+1)/4), a square root of a when one exists. Returns whether r² = a. r must not alias a. */
function fe_sqrt(r: usize, a: usize): bool {
  const x2 = tmp(17), x3 = tmp(18), x22 = tmp(19), t = tmp(20);
  chain223(t, a, x2, x3, x22);
  sqrN(t, t, 23); fe_mul(t, t, x22);
  sqrN(t, t, 6); fe_mul(t, t, x2);
  sqrN(r, t, 2);
  const c = tmp(21);
  fe_sqr(c, r);
  return fe_equal(c, a);
}

/** Reads 32 big-endian bytes; returns false when the value is not below p. */
function fe_from_be(r: usize, src: usize): bool {
  for (let i = 0; i < 8; i++) store<u32>(r + (<usize>i << 2), bswap<u32>(load<u32>(src + 28 - (<usize>i << 2))));
  for (let i = 7; i >= 0; i--) {
    const x = load<u32>(r + (<usize>i << 2));
    const q = load<u32>(FIELD_P + (<usize>i << 2));
    if (x != q) return x < q;
  }
  return false;
}

/** Writes the canonical value as 32 big-endian bytes. */
function fe_to_be(dst: usize, a: usize): void {
  const t = tmp(2);
  copy(t, a);
  fe_normalize(t);
  for (let i = 0; i < 8; i++) store<u32>(dst + 28 - (<usize>i << 2), bswap<u32>(load<u32>(t + (<usize>i << 2))));
}

// ---- points -----------------------------------------------------------------------------------------------

@inline function X(p: usize): usize { return p; }
@inline function Y(p: usize): usize { return p + 32; }
@inline function Z(p: usize): usize { return p + 64; }

function jac_set_inf(r: usize): void {
  setSmall(X(r), 1);
  setSmall(Y(r), 1);
  setSmall(Z(r), 0);
}

export function jac_is_inf(p: usize): bool {
  return fe_is_zero(Z(p));
}

export function jac_from_aff(r: usize, a: usize): void {
  memory.copy(r, a, 64);
  setSmall(Z(r), 1);
}

/** y² = x³ + 7 with both coordinates below p. */
export function aff_on_curve(a: usize): bool {
  const l = tmp(3), rr = tmp(4), seven = tmp(5);
  if (!belowP(X(a)) || !belowP(Y(a))) return false;
  fe_sqr(l, Y(a));
  fe_sqr(rr, X(a)); fe_mul(rr, rr, X(a));
  setSmall(seven, 7);
  fe_add(rr, rr, seven);
  return fe_equal(l, rr);
}

function belowP(a: usize): bool {
  for (let i = 7; i >= 0; i--) {
    const x = load<u32>(a + (<usize>i << 2));
    const q = load<u32>(FIELD_P + (<usize>i << 2));
    if (x != q) return x < q;
  }
  return false;
}

/**
 * Affine point from 32 big-endian x bytes and the parity of y (SEC1 02/03). Returns false when x is not
 * below p or x³ + 7 has no square root.
 */
export function aff_decompress(r: usize, xBe: usize, odd: bool): bool {
  if (!fe_from_be(X(r), xBe)) return false;
  const rhs = tmp(6), seven = tmp(7);
  fe_sqr(rhs, X(r)); fe_mul(rhs, rhs, X(r));
  setSmall(seven, 7);
  fe_add(rhs, rhs, seven);
  if (!fe_sqrt(Y(r), rhs)) return false;
  fe_normalize(Y(r));
  if (((load<u32>(Y(r)) & 1) != 0) != odd) {
    const z = tmp(8);
    setSmall(z, 0);
    fe_sub(Y(r), z, Y(r));
    fe_normalize(Y(r));
  }
  return true;
}

/** Writes an affine point as x‖y, 64 big-endian bytes. */
export function aff_to_be(dst: usize, a: usize): void {
  fe_to_be(dst, X(a));
  fe_to_be(dst + 32, Y(a));
}

/** Reads x‖y (64 big-endian bytes) known to be a curve point. */
export function aff_from_be(r: usize, src: usize): void {
  fe_from_be(X(r), src);
  fe_from_be(Y(r), src + 32);
}

/** r = 2p (a = 0 curve). r may alias p. */
function jac_dbl(r: usize, p: usize): void {
  if (fe_is_zero(Z(p)) || fe_is_zero(Y(p))) {
    jac_set_inf(r);
    return;
  }
  const A = tmp(22), B = tmp(23), C = tmp(24), D = tmp(25), E = tmp(26), F = tmp(27), t = tmp(28);
  fe_sqr(A, X(p));
  fe_sqr(B, Y(p));
  fe_sqr(C, B);
  fe_add(t, X(p), B);
  fe_sqr(t, t);
  fe_sub(t, t, A);
  fe_sub(t, t, C);
  fe_add(D, t, t);
  fe_add(E, A, A);
  fe_add(E, E, A);
  fe_sqr(F, E);
  // Z3 first: it needs the old Y and Z, and r may alias p.
  fe_mul(Z(r), Y(p), Z(p));
  fe_add(Z(r), Z(r), Z(r));
  fe_add(t, D, D);
  fe_sub(X(r), F, t);
  fe_sub(t, D, X(r));
  fe_mul(t, E, t);
  fe_add(C, C, C);
  fe_add(C, C, C);
  fe_add(C, C, C);
  fe_sub(Y(r), t, C);
}

/** r = p + q for affine q, negated first when `negate` (mixed addition). r may alias p. */
export function jac_madd(r: usize, p: usize, q: usize, negate: bool): void {
  const qy = tmp(29);
  if (negate) {
    setSmall(qy, 0);
    fe_sub(qy, qy, Y(q));
  } else {
    copy(qy, Y(q));
  }
  if (fe_is_zero(Z(p))) {
    copy(X(r), X(q));
    copy(Y(r), qy);
    setSmall(Z(r), 1);
    return;
  }
  const Z1Z1 = tmp(30), U2 = tmp(31), S2 = tmp(32), H = tmp(33), R = tmp(34), HH = tmp(35), HHH = tmp(36), V = tmp(37), t = tmp(38);
  fe_sqr(Z1Z1, Z(p));
  fe_mul(U2, X(q), Z1Z1);
  fe_mul(S2, Z(p), Z1Z1);
  fe_mul(S2, qy, S2);
  fe_sub(H, U2, X(p));
  fe_sub(R, S2, Y(p));
  if (fe_is_zero(H)) {
    if (fe_is_zero(R)) jac_dbl(r, p);
    else jac_set_inf(r);
    return;
  }
  fe_sqr(HH, H);
  fe_mul(HHH, H, HH);
  fe_mul(V, X(p), HH);
  fe_mul(Z(r), Z(p), H);
  fe_mul(t, Y(p), HHH);
  fe_sqr(X(r), R);
  fe_sub(X(r), X(r), HHH);
  fe_sub(X(r), X(r), V);
  fe_sub(X(r), X(r), V);
  fe_sub(V, V, X(r));
  fe_mul(V, R, V);
  fe_sub(Y(r), V, t);
}

/** r = p + q, both Jacobian. r may alias p or q. */
export function jac_add(r: usize, p: usize, q: usize): void {
  if (fe_is_zero(Z(p))) {
    memory.copy(r, q, 96);
    return;
  }
  if (fe_is_zero(Z(q))) {
    memory.copy(r, p, 96);
    return;
  }
  const Z1Z1 = tmp(39), Z2Z2 = tmp(40), U1 = tmp(41), U2 = tmp(42), S1 = tmp(43), S2 = tmp(44), H = tmp(45), R = tmp(46), HH = tmp(47), HHH = tmp(48), V = tmp(49), t = tmp(50);
  fe_sqr(Z1Z1, Z(p));
  fe_sqr(Z2Z2, Z(q));
  fe_mul(U1, X(p), Z2Z2);
  fe_mul(U2, X(q), Z1Z1);
  fe_mul(S1, Z(q), Z2Z2);
  fe_mul(S1, Y(p), S1);
  fe_mul(S2, Z(p), Z1Z1);
  fe_mul(S2, Y(q), S2);
  fe_sub(H, U2, U1);
  fe_sub(R, S2, S1);
  if (fe_is_zero(H)) {
    if (fe_is_zero(R)) jac_dbl(r, p);
    else jac_set_inf(r);
    return;
  }
  fe_sqr(HH, H);
  fe_mul(HHH, H, HH);
  fe_mul(V, U1, HH);
  fe_mul(t, Z(p), Z(q));
  fe_mul(Z(r), t, H);
  fe_mul(t, S1, HHH);
  fe_sqr(X(r), R);
  fe_sub(X(r), X(r), HHH);
  fe_sub(X(r), X(r), V);
  fe_sub(X(r), X(r), V);
  fe_sub(V, V, X(r));
  fe_mul(V, R, V);
  fe_sub(Y(r), V, t);
}

export function jac_neg(r: usize, p: usize): void {
  memory.copy(r, p, 96);
  const z = tmp(9);
  setSmall(z, 0);
  fe_sub(Y(r), z, Y(p));
}

/**
 * n Jacobian points (stride 96) to affine (stride 64) with one inversion (Montgomery's trick); `scratch`
 * holds n field elements. Returns false, writing nothing useful, if any point is infinity.
 */
export function batch_to_aff(out: usize, jac: usize, n: i32, scratch: usize): bool {
  if (n == 0) return true;
  const acc = tmp(51), inv = tmp(52), zi = tmp(53), zi2 = tmp(54);
  setSmall(acc, 1);
  for (let i = 0; i < n; i++) {
    const z = Z(jac + <usize>i * 96);
    if (fe_is_zero(z)) return false;
    copy(scratch + (<usize>i << 5), acc);
    fe_mul(acc, acc, z);
  }
  fe_inv(inv, acc);
  for (let i = n - 1; i >= 0; i--) {
    const p = jac + <usize>i * 96;
    const o = out + <usize>i * 64;
    fe_mul(zi, inv, scratch + (<usize>i << 5));
    fe_mul(inv, inv, Z(p));
    fe_sqr(zi2, zi);
    fe_mul(X(o), X(p), zi2);
    fe_mul(zi2, zi2, zi);
    fe_mul(Y(o), Y(p), zi2);
    fe_normalize(X(o));
    fe_normalize(Y(o));
  }
  return true;
}

/** out[i] = (β·x, y) for n affine points: the GLV image of each. */
export function aff_beta(out: usize, a: usize, n: i32): void {
  for (let i = 0; i < n; i++) {
    const s = a + <usize>i * 64, o = out + <usize>i * 64;
    fe_mul(X(o), X(s), BETA);
    copy(Y(o), Y(s));
  }
}

/** out[i] = (2i+1)·p for i < count, Jacobian (stride 96). */
export function odd_multiples(out: usize, p: usize, count: i32): void {
  const twice = TWICE;
  jac_dbl(twice, p);
  memory.copy(out, p, 96);
  for (let i = 1; i < count; i++) jac_add(out + <usize>i * 96, out + <usize>(i - 1) * 96, twice);
}
const TWICE = memory.data(96);

// ---- scalar multiplication -------------------------------------------------------------------------------

/**
 * Strauss–Shamir: r = Σ lanes, each lane a table of odd multiples (affine, stride 64), a negate flag and
 * `len` signed odd digits (i8, least significant first). Lane descriptors are 3 × u32: table, negate, digits.
 */
export function strauss(r: usize, lanes: usize, nLanes: i32, len: i32): void {
  jac_set_inf(r);
  for (let bit = len - 1; bit >= 0; bit--) {
    jac_dbl(r, r);
    for (let l = 0; l < nLanes; l++) {
      const desc = lanes + <usize>l * 12;
      const d = <i32>load<i8>(<usize>load<u32>(desc, 8) + <usize>bit);
      if (d == 0) continue;
      const idx = (d < 0 ? -d : d) >> 1;
      jac_madd(r, r, <usize>load<u32>(desc) + (<usize>idx << 6), (d < 0) != (load<u32>(desc, 4) != 0));
    }
  }
}

/**
 * Fixed-base table for base b (affine): row j holds (i+1)·2^(w·j)·b for i < 2^(w−1), affine, `rows` rows.
 * `jac` holds rows·2^(w−1) Jacobian points of scratch and `scratch` as many field elements.
 */
export function fixed_build(table: usize, b: usize, w: i32, rows: i32, jac: usize, scratch: usize): bool {
  const half = 1 << (w - 1);
  const rowBase = ROWBASE, rbAff = RBAFF;
  jac_from_aff(rowBase, b);
  for (let j = 0; j < rows; j++) {
    if (!batch_to_aff(rbAff, rowBase, 1, scratch)) return false;
    const first = jac + <usize>j * half * 96;
    jac_from_aff(first, rbAff);
    for (let i = 1; i < half; i++) jac_madd(first + <usize>i * 96, first + <usize>(i - 1) * 96, rbAff, false);
    for (let s = 0; s < w; s++) jac_dbl(rowBase, rowBase);
  }
  return batch_to_aff(table, jac, rows * half, scratch);
}
const ROWBASE = memory.data(96);
const RBAFF = memory.data(64);

/**
 * r = k·b from b's fixed-base table; k is 8 × u32 little-endian limbs followed by 8 zero bytes (k < 2^256).
 * Signed windows in (−2^(w−1), 2^(w−1)], so each row costs at most one mixed addition.
 */
export function fixed_mul(r: usize, table: usize, w: i32, rows: i32, k: usize): void {
  const half = 1 << (w - 1);
  const full = 1 << w;
  const mask: u64 = <u64>(full - 1);
  jac_set_inf(r);
  let carry = 0;
  for (let j = 0; j < rows; j++) {
    const bit = j * w;
    let d = <i32>((load<u64>(k + (<usize>bit >> 3)) >> <u64>(bit & 7)) & mask) + carry;
    if (d > half) {
      d -= full;
      carry = 1;
    } else {
      carry = 0;
    }
    if (d == 0) continue;
    const idx = (d < 0 ? -d : d) - 1;
    jac_madd(r, r, table + (<usize>(j * half + idx) << 6), d < 0);
  }
}

/** First byte the caller may use: everything below is this module's constants and temporaries. */
export function heap_base(): usize {
  return __heap_base;
}

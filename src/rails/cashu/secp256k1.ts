// Variable-time secp256k1 arithmetic for VERIFYING public data (NUT-12 DLEQ proofs) only.
//
// Why this exists: the generic library path (cashu-ts `hasValidDleq`, noble projective points with
// complete formulas and constant-time ladders) verifies ~130 proofs/s here; a DLEQ check is the hot path
// of P2PK acceptance. This module uses Jacobian coordinates with a = 0 formulas, a reduction specialised
// to p = 2^256 - 2^32 - 977, the GLV endomorphism with interleaved wNAF for the two per-proof variable
// bases, and large affine tables for fixed bases (G and each mint key). Nothing here touches a secret:
// never use it for signing. Every result is checked against @noble/curves in test/unit/cashu-secp.test.ts.
import { ECDH, createHash } from 'node:crypto';

export const P = 0xfffffffffffffffffffffffffffffffffffffffffffffffffffffffefffffc2fn;
export const N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;
const M256 = (1n << 256n) - 1n;
const FOLD = 0x1000003d1n; // 2^256 mod p
const GX = 0x79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798n;
const GY = 0x483ada7726a3c4655da4fbfc0e1108a8fd17b448a68554199c47d08ffb10d4b8n;
// GLV endomorphism: phi(x, y) = (BETA * x, y) = LAMBDA * (x, y). Decomposition basis from the curve's
// published parameters (SEC 2 / libsecp256k1).
const BETA = 0x7ae96a2b657c07106e64479eac3434e99cf0497512f58995c1396c28719501een;
const A1 = 0x3086d221a7d46bcde86c90e49284eb15n;
const B1 = -0xe4437ed6010e88286f547fa90abfe4c3n;
const A2 = 0x114ca50f7a8e2f3f657c1108d9d44cfd8n;
const B2 = A1;

// ---- field ----------------------------------------------------------------------------------------------

function red(x: bigint): bigint {
  x = (x & M256) + (x >> 256n) * FOLD;
  const h = x >> 256n;
  if (h !== 0n) x = (x & M256) + h * FOLD;
  return x >= P ? x - P : x;
}
const fmul = (a: bigint, b: bigint): bigint => red(a * b);
const fsqr = (a: bigint): bigint => red(a * a);
function fadd(a: bigint, b: bigint): bigint {
  const s = a + b;
  return s >= P ? s - P : s;
}
function fsub(a: bigint, b: bigint): bigint {
  const d = a - b;
  return d < 0n ? d + P : d;
}
function sqrN(a: bigint, n: number): bigint {
  for (let i = 0; i < n; i++) a = fsqr(a);
  return a;
}
/** a^(p-2) through the standard addition chain for this p (255 squarings, 15 multiplications). */
function finv(a: bigint): bigint {
  if (a === 0n) throw new RangeError('inverse of zero');
  const x2 = fmul(fsqr(a), a);
  const x3 = fmul(fsqr(x2), a);
  const x6 = fmul(sqrN(x3, 3), x3);
  const x9 = fmul(sqrN(x6, 3), x3);
  const x11 = fmul(sqrN(x9, 2), x2);
  const x22 = fmul(sqrN(x11, 11), x11);
  const x44 = fmul(sqrN(x22, 22), x22);
  const x88 = fmul(sqrN(x44, 44), x44);
  const x176 = fmul(sqrN(x88, 88), x88);
  const x220 = fmul(sqrN(x176, 44), x44);
  const x223 = fmul(sqrN(x220, 3), x3);
  let t = fmul(sqrN(x223, 23), x22);
  t = fmul(sqrN(t, 5), a);
  t = fmul(sqrN(t, 3), x2);
  return fmul(sqrN(t, 2), a);
}

/** Montgomery's trick: one inversion for many elements (none may be zero). */
function finvBatch(xs: bigint[]): bigint[] {
  const n = xs.length;
  const acc = new Array<bigint>(n);
  let a = 1n;
  for (let i = 0; i < n; i++) {
    acc[i] = a;
    a = fmul(a, xs[i]!);
  }
  let inv = finv(a);
  const out = new Array<bigint>(n);
  for (let i = n - 1; i >= 0; i--) {
    out[i] = fmul(inv, acc[i]!);
    inv = fmul(inv, xs[i]!);
  }
  return out;
}

// ---- points -----------------------------------------------------------------------------------------------

/** Affine point; the point at infinity is never represented as Affine. */
export interface Affine {
  x: bigint;
  y: bigint;
}
/** Jacobian (X/Z^2, Y/Z^3); Z = 0 is infinity. */
interface Jac {
  X: bigint;
  Y: bigint;
  Z: bigint;
}
const INF: Jac = { X: 1n, Y: 1n, Z: 0n };
export const G: Affine = { x: GX, y: GY };

function isOnCurve(p: Affine): boolean {
  return p.x < P && p.y < P && fsqr(p.y) === fadd(fmul(fsqr(p.x), p.x), 7n);
}

function dbl(p: Jac): Jac {
  if (p.Z === 0n || p.Y === 0n) return INF;
  const A = fsqr(p.X);
  const B = fsqr(p.Y);
  const C = fsqr(B);
  const t = fsqr(fadd(p.X, B));
  let D = fsub(fsub(t, A), C);
  D = fadd(D, D);
  const E = fadd(fadd(A, A), A);
  const F = fsqr(E);
  const X3 = fsub(F, fadd(D, D));
  let C8 = fadd(C, C);
  C8 = fadd(C8, C8);
  C8 = fadd(C8, C8);
  const Y3 = fsub(fmul(E, fsub(D, X3)), C8);
  const yz = fmul(p.Y, p.Z);
  return { X: X3, Y: Y3, Z: fadd(yz, yz) };
}

/** p + q with q affine (mixed addition); handles doubling and opposite points. */
function madd(p: Jac, q: Affine): Jac {
  if (p.Z === 0n) return { X: q.x, Y: q.y, Z: 1n };
  const Z1Z1 = fsqr(p.Z);
  const U2 = fmul(q.x, Z1Z1);
  const S2 = fmul(q.y, fmul(p.Z, Z1Z1));
  const H = fsub(U2, p.X);
  const R = fsub(S2, p.Y);
  if (H === 0n) return R === 0n ? dbl(p) : INF;
  const HH = fsqr(H);
  const HHH = fmul(H, HH);
  const V = fmul(p.X, HH);
  const X3 = fsub(fsub(fsqr(R), HHH), fadd(V, V));
  const Y3 = fsub(fmul(R, fsub(V, X3)), fmul(p.Y, HHH));
  return { X: X3, Y: Y3, Z: fmul(p.Z, H) };
}

/** Full Jacobian addition (only used while building tables). */
function jadd(p: Jac, q: Jac): Jac {
  if (p.Z === 0n) return q;
  if (q.Z === 0n) return p;
  const Z1Z1 = fsqr(p.Z);
  const Z2Z2 = fsqr(q.Z);
  const U1 = fmul(p.X, Z2Z2);
  const U2 = fmul(q.X, Z1Z1);
  const S1 = fmul(p.Y, fmul(q.Z, Z2Z2));
  const S2 = fmul(q.Y, fmul(p.Z, Z1Z1));
  const H = fsub(U2, U1);
  const R = fsub(S2, S1);
  if (H === 0n) return R === 0n ? dbl(p) : INF;
  const HH = fsqr(H);
  const HHH = fmul(H, HH);
  const V = fmul(U1, HH);
  const X3 = fsub(fsub(fsqr(R), HHH), fadd(V, V));
  const Y3 = fsub(fmul(R, fsub(V, X3)), fmul(S1, HHH));
  return { X: X3, Y: Y3, Z: fmul(fmul(p.Z, q.Z), H) };
}

const neg = (p: Affine): Affine => ({ x: p.x, y: p.y === 0n ? 0n : P - p.y });

/** Converts many Jacobian points to affine with one inversion. Throws on infinity. */
function toAffineBatch(ps: Jac[]): Affine[] {
  for (const p of ps) if (p.Z === 0n) throw new RangeError('point at infinity');
  const zi = finvBatch(ps.map((p) => p.Z));
  return ps.map((p, i) => {
    const z = zi[i]!;
    const z2 = fsqr(z);
    return { x: fmul(p.X, z2), y: fmul(p.Y, fmul(z2, z)) };
  });
}

// ---- encoding --------------------------------------------------------------------------------------------

const hex64 = (v: bigint): string => v.toString(16).padStart(64, '0');

/** Uncompressed SEC1 hex (04 || x || y), as NUT-12's hash_e expects. */
export const toUncompressedHex = (p: Affine): string => '04' + hex64(p.x) + hex64(p.y);

/** Parses a 33-byte compressed (or 65-byte uncompressed) SEC1 point; undefined if invalid. */
export function parsePoint(hex: string): Affine | undefined {
  if (!/^(0[23][0-9a-fA-F]{64}|04[0-9a-fA-F]{128})$/.test(hex)) return undefined;
  let full: string;
  try {
    // OpenSSL decompresses (a modular square root) about 8x faster than BigInt exponentiation here.
    full = hex.length === 130 ? hex : (ECDH.convertKey(hex, 'secp256k1', 'hex', 'hex', 'uncompressed') as string);
  } catch {
    return undefined;
  }
  const p = { x: BigInt('0x' + full.slice(2, 66)), y: BigInt('0x' + full.slice(66, 130)) };
  return isOnCurve(p) ? p : undefined;
}

const DST = Buffer.from('Secp256k1_HashToCurve_Cashu_', 'utf8');

/** NUT-00 hash_to_curve(secret) → Y, returned affine together with its compressed hex (the NUT-07 "Y"). */
export function hashToCurve(secret: string | Uint8Array): { point: Affine; hex: string } {
  const msgHash = createHash('sha256').update(DST).update(typeof secret === 'string' ? Buffer.from(secret, 'utf8') : secret).digest();
  const ctr = Buffer.alloc(4);
  for (let i = 0; i < 65536; i++) {
    ctr.writeUInt32LE(i);
    const candidate = '02' + createHash('sha256').update(msgHash).update(ctr).digest('hex');
    const p = parsePoint(candidate);
    if (p) return { point: p, hex: candidate };
  }
  throw new Error('hash_to_curve found no point');
}

// ---- scalar multiplication -------------------------------------------------------------------------------

/** Signed window-w NAF digits, least significant first (k >= 0); bit twiddling on small ints, not BigInt. */
function wnaf(k: bigint, w: number): Int8Array {
  const str = k.toString(2);
  const L = str.length;
  const bits = new Uint8Array(L + w + 2);
  for (let j = 0; j < L; j++) bits[j] = str.charCodeAt(L - 1 - j) - 48;
  const out = new Int8Array(L + 1);
  const full = 1 << w;
  const half = full >> 1;
  let i = 0;
  while (i <= L) {
    if (bits[i] === 0) {
      i++;
      continue;
    }
    let v = 0;
    for (let t = 0; t < w; t++) v |= bits[i + t]! << t;
    if (v >= half) {
      v -= full;
      let j = i + w;
      while (bits[j] === 1) bits[j++] = 0;
      bits[j] = 1;
    }
    out[i] = v;
    i += w;
  }
  return k === 0n ? new Int8Array(0) : out;
}

function divRound(a: bigint, b: bigint): bigint {
  // b > 0; rounds half up for a >= 0 and symmetric for a < 0.
  return a >= 0n ? (a + b / 2n) / b : -((-a + b / 2n) / b);
}

/** k ≡ k1 + k2·λ (mod n) with |k1|, |k2| ≲ 2^128. */
function glvSplit(k: bigint): [bigint, bigint] {
  const c1 = divRound(B2 * k, N);
  const c2 = divRound(-B1 * k, N);
  const k1 = k - c1 * A1 - c2 * A2;
  const k2 = -c1 * B1 - c2 * B2;
  return [k1, k2];
}

const WVAR = 5;

/** Odd multiples P, 3P, ..., (2^(w-1)-1)P of a base, Jacobian (converted in the caller's batch). */
function oddMultiplesJac(b: Jac, into: Jac[]): void {
  const count = 1 << (WVAR - 2);
  const twice = dbl(b);
  let cur = b;
  into.push(cur);
  for (let i = 1; i < count; i++) {
    cur = jadd(cur, twice);
    into.push(cur);
  }
}

/** Σ k_i·P_i given each base's affine odd-multiples table (Strauss–Shamir, GLV, wNAF); k_i in [0, n). */
function strauss(pairs: Array<{ table: Affine[]; k: bigint }>): Jac {
  const lanes: Array<{ digits: Int8Array; table: Affine[]; negate: boolean }> = [];
  for (const pair of pairs) {
    const [k1, k2] = glvSplit(pair.k);
    lanes.push({ digits: wnaf(k1 < 0n ? -k1 : k1, WVAR), table: pair.table, negate: k1 < 0n });
    lanes.push({ digits: wnaf(k2 < 0n ? -k2 : k2, WVAR), table: pair.table.map((q) => ({ x: fmul(q.x, BETA), y: q.y })), negate: k2 < 0n });
  }
  let len = 0;
  for (const l of lanes) len = Math.max(len, l.digits.length);
  let acc: Jac = INF;
  for (let bit = len - 1; bit >= 0; bit--) {
    acc = dbl(acc);
    for (const l of lanes) {
      const d = bit < l.digits.length ? l.digits[bit]! : 0;
      if (d === 0) continue;
      let q = l.table[(d < 0 ? -d : d) >> 1]!;
      if (d < 0 !== l.negate) q = neg(q);
      acc = madd(acc, q);
    }
  }
  return acc;
}

/** Σ k_i·P_i for variable affine bases; k_i in [0, n). */
export function mulAddVar(pairs: Array<{ p: Affine; k: bigint }>): Jac {
  const jac: Jac[] = [];
  for (const { p } of pairs) oddMultiplesJac({ X: p.x, Y: p.y, Z: 1n }, jac);
  const aff = toAffineBatch(jac);
  const count = 1 << (WVAR - 2);
  return strauss(pairs.map((x, i) => ({ table: aff.slice(i * count, (i + 1) * count), k: x.k })));
}

/**
 * Fixed-base table: T[j][i] = (i+1)·2^(w·j)·B, signed digits in (-2^(w-1), 2^(w-1)], so a multiplication
 * is about 256/w mixed additions and no doublings.
 */
export class FixedBase {
  private readonly rows: Affine[][];
  constructor(readonly base: Affine, private readonly w: number) {
    const windows = Math.ceil(257 / w);
    const half = 1 << (w - 1);
    const jac: Jac[] = [];
    let rowBase: Jac = { X: base.x, Y: base.y, Z: 1n };
    for (let j = 0; j < windows; j++) {
      const rb = toAffineBatch([rowBase])[0]!;
      let cur: Jac = { X: rb.x, Y: rb.y, Z: 1n };
      jac.push(cur);
      for (let i = 1; i < half; i++) {
        cur = madd(cur, rb);
        jac.push(cur);
      }
      // Next row base = 2^w · rowBase.
      for (let s = 0; s < w; s++) rowBase = dbl(rowBase);
    }
    const aff = toAffineBatch(jac);
    this.rows = [];
    for (let j = 0; j < windows; j++) this.rows.push(aff.slice(j * half, (j + 1) * half));
  }

  /** k·B for k in [0, n). */
  mul(k: bigint): Jac {
    const w = this.w;
    const full = 1 << w;
    const half = full >> 1;
    const mask = BigInt(full - 1);
    let acc: Jac = INF;
    let carry = 0;
    for (let j = 0; j < this.rows.length; j++) {
      let d = Number(k & mask) + carry;
      k >>= BigInt(w);
      if (d > half) {
        d -= full;
        carry = 1;
      } else {
        carry = 0;
      }
      if (d === 0) continue;
      const q = this.rows[j]![Math.abs(d) - 1]!;
      acc = madd(acc, d < 0 ? neg(q) : q);
    }
    return acc;
  }
}

let gTable: FixedBase | undefined;
/** k·G through a lazily built 12-bit table (~45k points, built once per process). */
export function mulG(k: bigint): Jac {
  gTable ??= new FixedBase(G, 12);
  return gTable.mul(k);
}

export const jacToAffine = (p: Jac): Affine => toAffineBatch([p])[0]!;

export type { Jac };

// ---- NUT-12 ----------------------------------------------------------------------------------------------

/** A scalar in [1, n-1] from hex, or undefined. */
export function scalarFromHex(hex: string | undefined): bigint | undefined {
  if (typeof hex !== 'string' || !/^[0-9a-fA-F]{1,64}$/.test(hex)) return undefined;
  const v = BigInt('0x' + hex);
  return v > 0n && v < N ? v : undefined;
}

export interface DleqInput {
  /** hash_to_curve(secret). */
  Y: Affine;
  /** The proof's unblinded signature. */
  C: Affine;
  /** The mint's key for the proof's amount, with its fixed-base table. */
  key: FixedBase;
  e: bigint;
  s: bigint;
  r: bigint;
}

/**
 * NUT-12 "Carol" verification of many proofs' DLEQ {e, s, r}, each against its mint key A:
 *   C' = C + r·A, B' = Y + r·G, R1 = s·G − e·A, R2 = s·B' − e·C', check e == SHA256(hex(R1)‖hex(R2)‖hex(A)‖hex(C'))
 * with uncompressed hex. Two field inversions for the whole batch. Returns one verdict per input; anything
 * degenerate (a point at infinity, which only a forged proof produces) is false.
 */
export function verifyDleqBatch(items: DleqInput[]): boolean[] {
  const verdict = new Array<boolean>(items.length).fill(false);
  const live: number[] = [];
  const jac: Jac[] = [];
  const r1s: Jac[] = [];
  for (let i = 0; i < items.length; i++) {
    const it = items[i]!;
    const Bp = madd(mulG(it.r), it.Y);
    const Cp = madd(it.key.mul(it.r), it.C);
    const eA = it.key.mul(it.e);
    const R1 = jadd(mulG(it.s), { X: eA.X, Y: eA.Y === 0n ? 0n : P - eA.Y, Z: eA.Z });
    if (Bp.Z === 0n || Cp.Z === 0n || R1.Z === 0n) continue;
    live.push(i);
    oddMultiplesJac(Bp, jac);
    oddMultiplesJac(Cp, jac);
    r1s.push(R1);
  }
  if (live.length === 0) return verdict;
  const count = 1 << (WVAR - 2);
  let aff: Affine[];
  try {
    aff = toAffineBatch([...jac, ...r1s]);
  } catch {
    // A table entry at infinity (e.g. 3·B' = O) cannot happen for prime-order points; fall back per item.
    return items.length === 1 ? verdict : items.map((it) => verifyDleqBatch([it])[0]!);
  }
  const r2j: Jac[] = [];
  live.forEach((i, n) => {
    const it = items[i]!;
    const tb = aff.slice(2 * n * count, (2 * n + 1) * count);
    const tc = aff.slice((2 * n + 1) * count, (2 * n + 2) * count);
    r2j.push(strauss([{ table: tb, k: it.s }, { table: tc, k: N - it.e }]));
  });
  const okIdx: number[] = [];
  const okJac: Jac[] = [];
  r2j.forEach((p, n) => {
    if (p.Z !== 0n) {
      okIdx.push(n);
      okJac.push(p);
    }
  });
  const r2 = okJac.length ? toAffineBatch(okJac) : [];
  okIdx.forEach((n, m) => {
    const i = live[n]!;
    const it = items[i]!;
    const R1 = aff[jac.length + n]!;
    const Cp = aff[(2 * n + 1) * count]!;
    const h = createHash('sha256')
      .update(toUncompressedHex(R1) + toUncompressedHex(r2[m]!) + toUncompressedHex(it.key.base) + toUncompressedHex(Cp), 'utf8')
      .digest();
    verdict[i] = BigInt('0x' + h.toString('hex')) === it.e;
  });
  return verdict;
}

export const verifyDleq = (item: DleqInput): boolean => verifyDleqBatch([item])[0]!;

// secp256k1 for VERIFYING public data (NUT-12 DLEQ proofs, hash_to_curve, point parsing), on libsecp256k1.
//
// The curve arithmetic is Bitcoin Core's libsecp256k1 through the `secp256k1` N-API package, loaded by its
// native-only entry (src/util/libsecp256k1.ts: never the pure-JS `elliptic` fallback). This module keeps
// the NUT-12 bookkeeping (the challenge hash, scalar ranges) and the small interface its callers use. Every
// result is checked against @noble/curves and cashu-ts in test/unit/cashu-secp.test.ts.
import { createHash } from 'node:crypto';
import { libsecp256k1 } from '../../util/libsecp256k1.js';

export const P = 0xfffffffffffffffffffffffffffffffffffffffffffffffffffffffefffffc2fn;
export const N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;

// ---- encoding --------------------------------------------------------------------------------------------

/** An affine curve point as x‖y, 64 big-endian bytes. The point at infinity is never a Point. */
export type Point = Uint8Array;

const hexOf = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');

/** Uncompressed SEC1 hex (04 ‖ x ‖ y), as NUT-12's hash_e expects. */
export const toUncompressedHex = (p: Point): string => '04' + hexOf(p);

/** Compressed SEC1 hex (02/03 ‖ x). */
export const toCompressedHex = (p: Point): string => ((p[63]! & 1) === 1 ? '03' : '02') + hexOf(p.subarray(0, 32));

/** SEC1 uncompressed bytes (65) of a Point, the form handed to libsecp256k1. */
const sec1 = (p: Point): Uint8Array => {
  const out = new Uint8Array(65);
  out[0] = 4;
  out.set(p, 1);
  return out;
};

/** A Point from libsecp256k1's 65-byte uncompressed output. */
const fromSec1 = (u: Uint8Array): Point => u.slice(1, 65);

const HEX_POINT = /^(0[23][0-9a-fA-F]{64}|04[0-9a-fA-F]{128})$/;

/** Parses a 33-byte compressed (or 65-byte uncompressed) SEC1 point; undefined if invalid. */
export function parsePoint(hex: string): Point | undefined {
  if (!HEX_POINT.test(hex)) return undefined;
  return parsePointBytes(Buffer.from(hex, 'hex'));
}

/** `bytes` is 02/03 ‖ x or 04 ‖ x ‖ y (never libsecp256k1's hybrid 06/07 form: callers check the prefix). */
function parsePointBytes(bytes: Uint8Array): Point | undefined {
  // libsecp256k1 refuses coordinates at or above p and points off the curve.
  if (!libsecp256k1.publicKeyVerify(bytes)) return undefined;
  return bytes[0] === 4 ? bytes.slice(1, 65) : fromSec1(libsecp256k1.publicKeyConvert(bytes, false));
}

const DST = Buffer.from('Secp256k1_HashToCurve_Cashu_', 'utf8');

/** NUT-00 hash_to_curve(secret) → Y, returned affine together with its compressed hex (the NUT-07 "Y"). */
export function hashToCurve(secret: string | Uint8Array): { point: Point; hex: string } {
  const msgHash = createHash('sha256').update(DST).update(typeof secret === 'string' ? Buffer.from(secret, 'utf8') : secret).digest();
  const ctr = Buffer.alloc(4);
  const candidate = Buffer.alloc(33, 2);
  for (let i = 0; i < 65536; i++) {
    ctr.writeUInt32LE(i);
    createHash('sha256').update(msgHash).update(ctr).digest().copy(candidate, 1);
    const p = parsePointBytes(candidate);
    if (p) return { point: p, hex: candidate.toString('hex') };
  }
  throw new Error('hash_to_curve found no point');
}

// ---- scalar multiplication -------------------------------------------------------------------------------

/** A scalar in [1, n-1] from hex, or undefined. */
export function scalarFromHex(hex: string | undefined): bigint | undefined {
  if (typeof hex !== 'string' || !/^[0-9a-fA-F]{1,64}$/.test(hex)) return undefined;
  const v = BigInt('0x' + hex);
  return v > 0n && v < N ? v : undefined;
}

/** A scalar in [1, n-1] as 32 big-endian bytes (libsecp256k1 refuses 0 and values >= n as tweaks). */
const scalarBytes = (k: bigint): Uint8Array => Buffer.from(k.toString(16).padStart(64, '0'), 'hex');

/** k·P in SEC1 uncompressed form, k in [1, n-1]. */
const mulSec1 = (p: Uint8Array, k: bigint): Uint8Array => libsecp256k1.publicKeyTweakMul(p, scalarBytes(k), false);

/** Σ of SEC1 points; undefined for the point at infinity (libsecp256k1 refuses to return it). */
function combine(points: Uint8Array[]): Uint8Array | undefined {
  if (points.length === 1) return points[0];
  try {
    return libsecp256k1.publicKeyCombine(points, false);
  } catch {
    return undefined;
  }
}

/** Σ k_i·P_i for k_i in [0, n); undefined for the point at infinity. The tests hold it against noble. */
export function mulAddVar(pairs: Array<{ p: Point; k: bigint }>): Point | undefined {
  const terms = pairs.filter(({ k }) => k % N !== 0n).map(({ p, k }) => mulSec1(sec1(p), k % N));
  if (terms.length === 0) return undefined;
  const sum = combine(terms);
  return sum && fromSec1(sum);
}

/**
 * A mint key (or any base) prepared for verification: its SEC1 form and the uncompressed hex NUT-12 hashes.
 * libsecp256k1 needs no per-key table, so `w` and `rows` only keep the former interface; the pin count
 * still tells a cache when a verification is using the key.
 */
export class FixedBase {
  readonly rows: number;
  /** Uncompressed hex of the base, for NUT-12's hash. */
  readonly baseHex: string;
  /** SEC1 uncompressed bytes of the base. */
  readonly sec1: Uint8Array;

  constructor(readonly base: Point, readonly w: number) {
    this.rows = Math.ceil(257 / w);
    this.baseHex = toUncompressedHex(base);
    this.sec1 = sec1(base);
    if (!libsecp256k1.publicKeyVerify(this.sec1)) throw new RangeError('base is not a curve point');
  }

  /** k·B for k in [0, n); undefined for the point at infinity. */
  mul(k: bigint): Point | undefined {
    if (this.disposed && this.pins === 0) throw new Error('fixed-base table used after dispose');
    return k % N === 0n ? undefined : fromSec1(mulSec1(this.sec1, k % N));
  }

  /** The object must not be used for new work afterwards. */
  dispose(): void {
    this.disposed = true;
  }

  /** Marks the key in use across the awaits of a chunked verification, so its cache keeps it. */
  pin(): void {
    if (this.disposed && this.pins === 0) throw new Error('fixed-base table pinned after dispose');
    this.pins++;
  }

  unpin(): void {
    this.pins--;
  }

  /** Some verification holds the key: a cache must not drop it now. */
  get pinned(): boolean {
    return this.pins > 0;
  }

  private pins = 0;
  private disposed = false;
}

export const G: Point = parsePoint('0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798')!;

/** Kept for callers that warmed the former generator table: libsecp256k1 loads (and is checked) on import. */
export const warmGenerator = (): void => undefined;

/** k·G for k in [0, n); undefined for the point at infinity. */
export const mulG = (k: bigint): Point | undefined => (k % N === 0n ? undefined : fromSec1(libsecp256k1.publicKeyCreate(scalarBytes(k % N), false)));

// ---- NUT-12 ----------------------------------------------------------------------------------------------

export interface DleqInput {
  /** hash_to_curve(secret). */
  Y: Point;
  /** The proof's unblinded signature. */
  C: Point;
  /** The mint's key for the proof's amount. */
  key: FixedBase;
  e: bigint;
  s: bigint;
  r: bigint;
}

/**
 * NUT-12 "Carol" verification of one proof's DLEQ {e, s, r} against its mint key A:
 *   C' = C + r·A, B' = Y + r·G, R1 = s·G − e·A, R2 = s·B' − e·C', check e == SHA256(hex(R1)‖hex(R2)‖hex(A)‖hex(C'))
 * with uncompressed hex. Anything degenerate (a scalar out of [1, n-1], a point at infinity, which only a
 * forged proof produces) is false.
 */
function verifyDleq(it: DleqInput): boolean {
  const { e, s, r } = it;
  if (!(e > 0n && e < N && s > 0n && s < N && r > 0n && r < N)) return false;
  try {
    const lib = libsecp256k1;
    const A = it.key.sec1;
    const rb = scalarBytes(r);
    const negE = scalarBytes(N - e);
    const Cp = combine([sec1(it.C), lib.publicKeyTweakMul(A, rb, false)]);
    if (!Cp) return false;
    const Bp = lib.publicKeyTweakAdd(sec1(it.Y), rb, false);
    const sb = scalarBytes(s);
    // R1 = (−e)·A + s·G
    const R1 = lib.publicKeyTweakAdd(lib.publicKeyTweakMul(A, negE, false), sb, false);
    const R2 = combine([lib.publicKeyTweakMul(Bp, sb, false), lib.publicKeyTweakMul(Cp, negE, false)]);
    if (!R2) return false;
    const h = createHash('sha256')
      .update(hexOf(R1) + hexOf(R2) + it.key.baseHex + hexOf(Cp), 'utf8')
      .digest('hex');
    return BigInt('0x' + h) === e;
  } catch {
    // libsecp256k1 reports a point at infinity (a forged proof) as an error.
    return false;
  }
}

/** One verdict per input, in order (see verifyDleq). */
export function verifyDleqBatch(items: DleqInput[]): boolean[] {
  return items.map(verifyDleq);
}

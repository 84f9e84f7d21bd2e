// NUT-18 payment requests (creqA: "creq" + "A" + base64url(CBOR)) for the NUT-24 `X-Cashu` challenge header.
// Encoded here rather than with cashu-ts's PaymentRequest because that one writes CBOR `undefined` for
// absent tags and padded base64; this writes only the fields we set, definite lengths, base64url without
// padding (what ngx_l402 and the spec examples use). Interop is tested against cashu-ts's decoder.

export type CashuUnit = 'sat' | 'msat';

/** msat per unit. */
export const MSAT_PER_UNIT: Record<CashuUnit, number> = { sat: 1000, msat: 1 };

/** The amount to ask for: the price in the mint's unit, rounded UP (never ask for less than the price). */
export function priceInUnit(priceMsat: number, unit: CashuUnit): number {
  if (!Number.isSafeInteger(priceMsat) || priceMsat <= 0) throw new RangeError(`price must be a positive integer msat amount, got ${priceMsat}`);
  return Math.ceil(priceMsat / MSAT_PER_UNIT[unit]);
}

type Cbor = string | number | boolean | Cbor[] | { [k: string]: Cbor };

function head(major: number, n: number, out: number[]): void {
  if (n < 24) out.push((major << 5) | n);
  else if (n < 0x100) out.push((major << 5) | 24, n);
  else if (n < 0x10000) out.push((major << 5) | 25, n >> 8, n & 0xff);
  else if (n < 0x100000000) out.push((major << 5) | 26, (n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff);
  else {
    const big = BigInt(n);
    out.push((major << 5) | 27);
    for (let i = 7; i >= 0; i--) out.push(Number((big >> BigInt(i * 8)) & 0xffn));
  }
}

function encode(v: Cbor, out: number[]): void {
  if (typeof v === 'string') {
    const b = Buffer.from(v, 'utf8');
    head(3, b.length, out);
    for (const x of b) out.push(x);
  } else if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError('only unsigned integers are encoded');
    head(0, v, out);
  } else if (typeof v === 'boolean') {
    out.push(v ? 0xf5 : 0xf4);
  } else if (Array.isArray(v)) {
    head(4, v.length, out);
    for (const x of v) encode(x, out);
  } else {
    const keys = Object.keys(v);
    head(5, keys.length, out);
    for (const k of keys) {
      encode(k, out);
      encode(v[k]!, out);
    }
  }
}

export interface PaymentRequestFields {
  amount: number;
  unit: CashuUnit;
  /** Accepted mints (the gate always has some; NUT-18 leaves the field out when a list is empty). */
  mints: string[];
  /** Compressed pubkey hex the proofs must be locked to (NUT-10 P2PK), if any. */
  p2pkPubkey?: string;
  description?: string;
}

/** Encodes a NUT-18 request as `creqA…`. `t` is an empty list: the token travels in-band (NUT-24 X-Cashu). */
export function encodePaymentRequest(f: PaymentRequestFields): string {
  const req: { [k: string]: Cbor } = { a: f.amount, u: f.unit };
  if (f.mints.length) req.m = f.mints;
  if (f.description) req.d = f.description;
  req.t = [];
  if (f.p2pkPubkey) req.nut10 = { k: 'P2PK', d: f.p2pkPubkey };
  const out: number[] = [];
  encode(req, out);
  return 'creqA' + Buffer.from(out).toString('base64url');
}

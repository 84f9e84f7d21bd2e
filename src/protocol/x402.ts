// x402 v2 (coinbase/x402 specs/x402-specification-v2.md, transports-v2/http.md) with the `exact` scheme on
// Lightning (specs/schemes/exact/scheme_exact_lightning.md), as @getalby/lightning-tools' fetchWithX402 speaks it.
// Pure codec: the PAYMENT-REQUIRED offer, the PAYMENT-SIGNATURE payload's parse and binding, PAYMENT-RESPONSE.
import { createHmac, timingSafeEqual } from 'node:crypto';
import { decodeBase64Loose } from './base64.js';
import { proofStillHonoured } from './late-proof.js';

/** Longest PAYMENT-SIGNATURE value read (an invoice twice plus the offer fit in well under 8 KiB). */
export const MAX_X402_SIGNATURE_LENGTH = 16384;

/** CAIP-2 ids of the Bitcoin networks (bip122:<first 16 bytes of the genesis block hash>), by invoice prefix. */
export function caip2Network(bolt11: string): string {
  const i = bolt11.toLowerCase();
  if (i.startsWith('lnbcrt')) return 'bip122:0f9188f13cb7b2c71f2a335e3a4fc328';
  if (i.startsWith('lntbs')) return 'bip122:00000008819873e925422c1ff0f99f7c';
  if (i.startsWith('lntb')) return 'bip122:000000000933ea01ad0ee984209779ba';
  return 'bip122:000000000019d6689c085ae165831e93';
}

export interface X402Scope {
  routeId: string;
  method: string;
  path: string;
}

export interface X402Offer {
  invoice: string;
  paymentHash: string;
  amountMsat: number;
  /** Unix seconds: when the invoice expires. */
  expiresAt: number;
}

/** One `accepts` entry: exact, on Lightning, for this invoice; `extra.id` binds it to what we issued. */
export interface X402Requirements {
  scheme: 'exact';
  network: string;
  amount: string;
  asset: 'BTC';
  payTo: 'anonymous';
  maxTimeoutSeconds: number;
  extra: { paymentMethod: 'lightning'; invoice: string; paymentHash: string; expiresAt: number; id: string };
}

const LABEL = 'l402-nginx/x402-offer/v1\0';

function offerId(master: Buffer, scope: X402Scope, f: { invoice: string; paymentHash: string; amount: string; network: string; expiresAt: number }): string {
  const key = createHmac('sha256', master).update(LABEL).update(JSON.stringify([scope.routeId, scope.method, scope.path])).digest();
  return createHmac('sha256', key).update(JSON.stringify([f.invoice, f.paymentHash, f.amount, f.network, f.expiresAt])).digest('base64url');
}

export function buildRequirements(master: Buffer, scope: X402Scope, o: X402Offer, nowSecs: number): X402Requirements {
  const network = caip2Network(o.invoice);
  const amount = String(o.amountMsat);
  const id = offerId(master, scope, { invoice: o.invoice, paymentHash: o.paymentHash, amount, network, expiresAt: o.expiresAt });
  return {
    scheme: 'exact',
    network,
    amount,
    asset: 'BTC',
    payTo: 'anonymous',
    maxTimeoutSeconds: Math.max(1, o.expiresAt - nowSecs),
    extra: { paymentMethod: 'lightning', invoice: o.invoice, paymentHash: o.paymentHash, expiresAt: o.expiresAt, id },
  };
}

/** The PAYMENT-REQUIRED header value: base64 of the PaymentRequired JSON. */
export function paymentRequired(resourceUrl: string, accepts: X402Requirements[], error?: string): string {
  const body = { x402Version: 2, ...(error ? { error } : {}), resource: { url: resourceUrl }, accepts };
  return Buffer.from(JSON.stringify(body), 'utf8').toString('base64');
}

export type X402Failure = 'malformed' | 'unknown_offer' | 'expired';

export interface X402Verified {
  paymentHash: Buffer;
  invoice: string;
  network: string;
  amountMsat: number;
  expiresAt: number;
}

const STR = (v: unknown, max = 8192): v is string => typeof v === 'string' && v.length > 0 && v.length <= max;
const isObj = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v);

/**
 * Reads a PAYMENT-SIGNATURE (or X-PAYMENT) value: base64 JSON with x402Version 2, the `accepted` requirements
 * echoed as we issued them (their `extra.id` verifies under our key for this route, method and path) and
 * `payload.invoice` equal to the offered invoice. Whether the invoice was paid, and single use, are the caller's.
 */
export function verifyPaymentSignature(
  value: string,
  o: { masters: readonly Buffer[]; scope: X402Scope; now: number },
): { ok: true; v: X402Verified } | { ok: false; failure: X402Failure; detail: string } {
  const bad = (detail: string) => ({ ok: false as const, failure: 'malformed' as const, detail });
  if (value.length > MAX_X402_SIGNATURE_LENGTH) return bad('payment signature too long');
  const raw = decodeBase64Loose(value.trim(), MAX_X402_SIGNATURE_LENGTH);
  if (!raw) return bad('payment signature is not base64');
  let p: unknown;
  try {
    p = JSON.parse(raw.toString('utf8'));
  } catch {
    return bad('payment signature is not JSON');
  }
  if (!isObj(p)) return bad('payment signature is not a JSON object');
  if (p.x402Version !== 2) return bad('x402Version must be 2');
  const a = p.accepted;
  const payload = p.payload;
  if (!isObj(a) || !isObj(payload)) return bad('accepted and payload are required');
  const extra = a.extra;
  if (!isObj(extra) || !STR(payload.invoice) || !STR(extra.invoice) || !STR(a.amount, 32) || !STR(a.network, 128) || !STR(extra.paymentHash, 64) || !STR(extra.id, 64) || typeof extra.expiresAt !== 'number') {
    return bad('accepted requirements or payload.invoice missing');
  }
  const unknown = (detail: string) => ({ ok: false as const, failure: 'unknown_offer' as const, detail });
  if (a.scheme !== 'exact' || extra.paymentMethod !== 'lightning') return unknown('not an exact Lightning offer of this server');
  // The invoice paid is the invoice offered (no substitution), and the top-level fields (Alby sends them) agree.
  if (payload.invoice !== extra.invoice) return unknown('payload.invoice is not the offered invoice');
  if ((p.scheme !== undefined && p.scheme !== a.scheme) || (p.network !== undefined && p.network !== a.network)) return unknown('scheme or network differs from the accepted offer');
  if (!/^[0-9a-f]{64}$/.test(extra.paymentHash) || !/^[1-9][0-9]{0,17}$/.test(a.amount) || !Number.isSafeInteger(extra.expiresAt)) return unknown('not an offer of this server');
  const f = { invoice: extra.invoice, paymentHash: extra.paymentHash, amount: a.amount, network: a.network, expiresAt: extra.expiresAt };
  const given = Buffer.from(extra.id, 'utf8');
  const issued = o.masters.some((k) => {
    const want = Buffer.from(offerId(k, o.scope, f), 'utf8');
    return want.length === given.length && timingSafeEqual(want, given);
  });
  if (!issued) return unknown('offer was not issued for this request');
  // Paid (our node says so, checked next) before the invoice expired: honoured a while after (late-proof.ts).
  if (!proofStillHonoured(extra.expiresAt, o.now)) return { ok: false, failure: 'expired', detail: 'invoice expired' };
  return { ok: true, v: { paymentHash: Buffer.from(extra.paymentHash, 'hex'), invoice: extra.invoice, network: a.network, amountMsat: Number(a.amount), expiresAt: extra.expiresAt } };
}

/** The PAYMENT-RESPONSE header value (SettlementResponse, as scheme_exact_lightning.md shows it). */
export function paymentResponse(v: Pick<X402Verified, 'invoice' | 'network'>, settledAt: number): string {
  const body = { success: true, transaction: v.invoice, network: v.network, payer: 'anonymous', extra: { invoice: v.invoice, settledAt } };
  return Buffer.from(JSON.stringify(body), 'utf8').toString('base64');
}

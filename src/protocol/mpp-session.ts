// The Lightning `session` intent of the HTTP `Payment` scheme (tempoxyz/mpp-specs
// draft-lightning-session-00): a prepaid deposit opened by its preimage, bearer use, top-ups, close with the
// unspent part refunded to the client's return invoice. Pure codec like mpp.ts: the challenge, the four
// credential actions' parse and verification, the return invoice's checks, the receipt and the close body.
// No HTTP, no store: which challenges were consumed, the session record and its balance are the caller's.
//
// Served on `access: balance` routes that offer mpp (policy/mpp-session-decide.ts decides open and bearer,
// server/mpp-session-render.ts answers topUp and close; docs/protocol.md "MPP: Lightning `session`").
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { base64url, challengeId, jcs, paymentCredentialObject, rfc3339, type MppChallenge, type MppScope } from './mpp.js';
import { proofStillHonoured } from './late-proof.js';

/** Problem type URIs of draft-lightning-session-00 ("Error Responses"): every one is a 402 with a fresh challenge. */
export const SESSION_PROBLEM = {
  malformed: 'https://paymentauth.org/problems/lightning/malformed-credential',
  unknown_challenge: 'https://paymentauth.org/problems/lightning/unknown-challenge',
  invalid_preimage: 'https://paymentauth.org/problems/lightning/invalid-preimage',
  session_not_found: 'https://paymentauth.org/problems/lightning/session-not-found',
  session_closed: 'https://paymentauth.org/problems/lightning/session-closed',
  insufficient_balance: 'https://paymentauth.org/problems/lightning/insufficient-balance',
  challenge_expired: 'https://paymentauth.org/problems/lightning/challenge-expired',
  invalid_return_invoice: 'https://paymentauth.org/problems/lightning/invalid-return-invoice',
} as const;

export type SessionFailure = keyof typeof SESSION_PROBLEM;

/** What a session challenge sells: a fresh deposit invoice (open or top-up) and the per-unit price. */
export interface SessionOffer {
  invoice: string;
  paymentHash: string;
  /** The price of one unit (one request here), whole satoshis in msat. */
  unitMsat: number;
  /** The deposit the invoice is for (the spec's depositAmount), whole satoshis in msat, at least one unit. */
  depositMsat: number;
  /** Unix seconds: the challenge expires with its invoice. */
  expiresAt: number;
  idleTimeoutSecs?: number;
  description?: string;
  unitType?: string;
}

const wholeSats = (msat: number): boolean => Number.isSafeInteger(msat) && msat >= 1000 && msat % 1000 === 0;

export function buildSessionChallenge(master: Buffer, realm: string, scope: MppScope, o: SessionOffer): MppChallenge {
  if (!wholeSats(o.unitMsat) || !wholeSats(o.depositMsat) || o.depositMsat < o.unitMsat) {
    throw new Error('session challenge: unit and deposit must be whole satoshis, the deposit at least one unit');
  }
  const request = base64url(
    jcs({
      amount: String(o.unitMsat / 1000),
      currency: 'sat',
      ...(o.description ? { description: o.description } : {}),
      ...(o.unitType ? { unitType: o.unitType } : {}),
      depositInvoice: o.invoice,
      paymentHash: o.paymentHash,
      depositAmount: String(o.depositMsat / 1000),
      ...(o.idleTimeoutSecs !== undefined ? { idleTimeout: String(o.idleTimeoutSecs) } : {}),
    }),
  );
  const p = { realm, method: 'lightning' as const, intent: 'session' as const, request, expires: rfc3339(o.expiresAt) };
  return { id: challengeId(master, scope, p), ...p };
}

/** A session credential's parts, syntax checked (nothing verified yet). Preimages and ids are lowercase hex. */
export type SessionCredential = { challenge: Record<string, string> } & (
  | { action: 'open'; preimage: string; returnInvoice: string }
  | { action: 'bearer' | 'close'; sessionId: string; preimage: string }
  | { action: 'topUp'; sessionId: string; topUpPreimage: string }
);

const STR = (v: unknown, max = 4096): v is string => typeof v === 'string' && v.length > 0 && v.length <= max;
const HEX64 = /^[0-9a-fA-F]{64}$/;
const HASH64 = /^[0-9a-f]{64}$/;
/** The auth-params a challenge echo may carry (the base spec's); we issue the first six. */
const ECHOED = new Set(['id', 'realm', 'method', 'intent', 'request', 'expires', 'description', 'opaque', 'digest']);
/** A return invoice longer than this is refused as malformed (BOLT11 invoices with routing hints stay far below). */
const MAX_INVOICE_LENGTH = 2048;

type Parsed = { ok: true; cred: SessionCredential } | { ok: false; failure: 'malformed'; detail: string };

/** Parses `Authorization: Payment <base64url JCS JSON>` as a session credential; unknown payload fields are ignored. */
export function parseSessionCredential(authorization: string): Parsed {
  const bad = (detail: string): Parsed => ({ ok: false, failure: 'malformed', detail });
  const env = paymentCredentialObject(authorization);
  if (!env.ok) return bad(env.detail);
  const isObj = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v);
  const { challenge: c, payload: p } = env.cred;
  if (!isObj(c)) return bad('challenge missing');
  if (!isObj(p)) return bad('payload missing');
  if (!STR(c.id, 128) || !STR(c.realm, 256) || !STR(c.method, 64) || !STR(c.intent, 64) || !STR(c.request)) return bad('challenge fields missing or not strings');
  for (const [k, v] of Object.entries(c)) if (!ECHOED.has(k) || !STR(v)) return bad(`challenge.${k.slice(0, 32)} is not an auth-param of this scheme`);
  const challenge = c as Record<string, string>;
  const hex = (v: unknown, what: string): string | Parsed => (typeof v === 'string' && HEX64.test(v) ? v.toLowerCase() : bad(`payload.${what} must be 64 hex characters`));
  const sid = (): string | Parsed => (typeof p.sessionId === 'string' && HASH64.test(p.sessionId) ? p.sessionId : bad('payload.sessionId must be a payment hash in lowercase hex'));
  switch (p.action) {
    case 'open': {
      const preimage = hex(p.preimage, 'preimage');
      if (typeof preimage !== 'string') return preimage;
      if (!STR(p.returnInvoice, MAX_INVOICE_LENGTH)) return bad('payload.returnInvoice missing');
      return { ok: true, cred: { challenge, action: 'open', preimage, returnInvoice: p.returnInvoice } };
    }
    case 'bearer':
    case 'close': {
      const sessionId = sid();
      if (typeof sessionId !== 'string') return sessionId;
      const preimage = hex(p.preimage, 'preimage');
      if (typeof preimage !== 'string') return preimage;
      return { ok: true, cred: { challenge, action: p.action, sessionId, preimage } };
    }
    case 'topUp': {
      const sessionId = sid();
      if (typeof sessionId !== 'string') return sessionId;
      const topUpPreimage = hex(p.topUpPreimage, 'topUpPreimage');
      if (typeof topUpPreimage !== 'string') return topUpPreimage;
      return { ok: true, cred: { challenge, action: 'topUp', sessionId, topUpPreimage } };
    }
    default:
      return bad('payload.action must be open, bearer, topUp or close');
  }
}

/** What a verified credential establishes. The caller still owns single use (challenge id) and the session record. */
export type SessionVerified =
  | {
      action: 'open' | 'topUp';
      /** The echoed challenge's id: consumed once (the spec's idempotency key). */
      challengeId: string;
      /** The session: the open deposit's payment hash (for topUp, the payload's). */
      sessionId: string;
      /** The deposit invoice this credential proves paid (for open, equal to sessionId). */
      depositHash: string;
      depositInvoice: string;
      depositMsat: number;
      unitMsat: number;
      /** Unix seconds. */
      expiresAt: number;
      /** open only: still to be checked with checkReturnInvoice before anything is stored. */
      returnInvoice?: string;
    }
  | { action: 'bearer' | 'close'; sessionId: string };

type Verified = { ok: true; v: SessionVerified } | { ok: false; failure: SessionFailure; detail: string };

function sha256Equals(preimageHex: string, hashHex: string): boolean {
  const digest = createHash('sha256').update(Buffer.from(preimageHex, 'hex')).digest();
  return timingSafeEqual(digest, Buffer.from(hashHex, 'hex'));
}

/**
 * Verifies a session credential for this scope. open and topUp: the echoed challenge must carry the id our key
 * gives its parameters for this route, method and path (so its request, with the deposit invoice, its hash and
 * amount, is one we minted), must not have expired, and the preimage must hash to that invoice's payment hash.
 * bearer and close: the echo must name this realm, lightning and session (the spec verifies nothing else of it:
 * a session outlives its challenges), and sha256(preimage) must be the session id. Nothing here is single use.
 */
export function verifySessionCredential(authorization: string, o: { masters: readonly Buffer[]; realm: string; scope: MppScope; now: number }): Verified {
  const parsed = parseSessionCredential(authorization);
  if (!parsed.ok) return parsed;
  const { cred } = parsed;
  const c = cred.challenge;
  const unknown = (detail: string): Verified => ({ ok: false, failure: 'unknown_challenge', detail });
  if (c.method !== 'lightning' || c.intent !== 'session' || c.realm !== o.realm) return unknown('not a session challenge issued here');
  if (cred.action === 'bearer' || cred.action === 'close') {
    if (!sha256Equals(cred.preimage, cred.sessionId)) return { ok: false, failure: 'invalid_preimage', detail: 'SHA-256 of the preimage is not the session id' };
    return { ok: true, v: { action: cred.action, sessionId: cred.sessionId } };
  }
  // A parameter we never issue means another server's challenge.
  if (c.expires === undefined || c.opaque !== undefined || c.digest !== undefined || c.description !== undefined) return unknown('not a challenge issued here');
  const p = { realm: c.realm!, method: 'lightning' as const, intent: 'session' as const, request: c.request!, expires: c.expires };
  const given = Buffer.from(c.id!, 'utf8');
  const issued = o.masters.some((k) => {
    const want = Buffer.from(challengeId(k, o.scope, p), 'utf8');
    return want.length === given.length && timingSafeEqual(want, given);
  });
  if (!issued) return unknown('challenge id does not match this request');
  // Ours from here on: the request JSON and the expiry are what we minted.
  const expiresAt = Date.parse(p.expires) / 1000;
  // The deposit's preimage proves it was paid before the invoice expired: honoured a while after (late-proof.ts).
  if (!proofStillHonoured(expiresAt, o.now)) return { ok: false, failure: 'challenge_expired', detail: 'challenge expired' };
  let req: Record<string, unknown>;
  try {
    req = JSON.parse(Buffer.from(p.request, 'base64url').toString('utf8')) as Record<string, unknown>;
  } catch {
    return unknown('challenge request unreadable');
  }
  const sats = (v: unknown): number | undefined => (typeof v === 'string' && /^[1-9][0-9]{0,12}$/.test(v) ? Number(v) * 1000 : undefined);
  const unitMsat = sats(req.amount);
  const depositMsat = sats(req.depositAmount);
  const hash = req.paymentHash;
  if (unitMsat === undefined || depositMsat === undefined || typeof hash !== 'string' || !HASH64.test(hash) || !STR(req.depositInvoice)) return unknown('challenge request unreadable');
  const preimage = cred.action === 'topUp' ? cred.topUpPreimage : cred.preimage;
  if (!sha256Equals(preimage, hash)) return { ok: false, failure: 'invalid_preimage', detail: 'SHA-256 of the preimage is not the deposit invoice\'s payment hash' };
  const common = { challengeId: c.id!, depositHash: hash, depositInvoice: req.depositInvoice, depositMsat, unitMsat, expiresAt };
  if (cred.action === 'open') return { ok: true, v: { action: 'open', sessionId: hash, returnInvoice: cred.returnInvoice, ...common } };
  // A top-up proves a new invoice: the open deposit's own preimage cannot be presented again as one.
  if (hash === cred.sessionId) return { ok: false, failure: 'invalid_preimage', detail: 'a top-up must pay a new deposit invoice' };
  return { ok: true, v: { action: 'topUp', sessionId: cred.sessionId, ...common } };
}

/** The fields of a decoded BOLT11 invoice the return-invoice check reads (codecs/bolt11.ts decodes it). */
export interface DecodedInvoiceFacts {
  amountMsat: number | undefined;
  /** bech32 network prefix after `ln`: bc, tb, tbs, bcrt, sb. */
  network: string;
  /** Unix seconds. */
  expiresAt: number;
}

/**
 * Open verification step 7: the return invoice encodes no amount (or exactly 0), is on the deposit invoice's
 * network, and has not expired. Anything else (including an invoice that does not decode: pass undefined) is
 * `invalid_return_invoice`.
 */
export function checkReturnInvoice(ret: DecodedInvoiceFacts | undefined, deposit: DecodedInvoiceFacts, now: number): { ok: true } | { ok: false; failure: 'invalid_return_invoice'; detail: string } {
  const bad = (detail: string) => ({ ok: false as const, failure: 'invalid_return_invoice' as const, detail });
  if (!ret) return bad('return invoice is not a valid BOLT11 invoice');
  if (ret.amountMsat !== undefined && ret.amountMsat !== 0) return bad('return invoice encodes an amount');
  if (ret.network !== deposit.network) return bad('return invoice is on another network than the deposit');
  if (ret.expiresAt <= now) return bad('return invoice has expired');
  return { ok: true };
}

const SESSION_LABEL = 'l402-nginx/mpp-session/v1\0';

/**
 * A tag binding a session record to what was fixed at its open: the session id, the route (or plan) it draws
 * on and the return invoice its refund may go to. Stored with the record and checked (sessionTagMatches) before
 * a draw or a refund, so a record moved to another session, plan or invoice in the store is refused.
 */
export function sessionTag(master: Buffer, s: { sessionId: string; scopeId: string; returnInvoice: string }): string {
  const key = createHmac('sha256', master).update(SESSION_LABEL).digest();
  return createHmac('sha256', key).update(jcs([s.sessionId, s.scopeId, s.returnInvoice])).digest('base64url');
}

export function sessionTagMatches(masters: readonly Buffer[], s: { sessionId: string; scopeId: string; returnInvoice: string }, tag: string): boolean {
  const given = Buffer.from(tag, 'utf8');
  return masters.some((k) => {
    const want = Buffer.from(sessionTag(k, s), 'utf8');
    return want.length === given.length && timingSafeEqual(want, given);
  });
}

export type RefundStatus = 'succeeded' | 'failed' | 'skipped';

/** The refund on close: the unspent balance in whole satoshis (a sub-satoshi remainder is not refundable). */
export function refundSatsOf(unspentMsat: number): number {
  return unspentMsat > 0 ? Math.floor(unspentMsat / 1000) : 0;
}

/** The `Payment-Receipt` value for a session action (never a preimage); close adds refundSats and refundStatus. */
export function sessionReceipt(sessionId: string, nowSecs: number, refund?: { refundSats: number; refundStatus: RefundStatus }): string {
  return base64url(jcs({ method: 'lightning', reference: sessionId, status: 'success', timestamp: rfc3339(nowSecs), ...(refund ?? {}) }));
}

/** The JSON bodies the server answers management actions with itself (topUp: 200, close: 200). */
export function topUpBody(): string {
  return jcs({ status: 'ok' });
}

export function closeBody(refundSats: number, refundStatus: RefundStatus): string {
  return jcs({ refundSats, refundStatus, status: 'closed' });
}

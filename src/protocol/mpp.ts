// The HTTP `Payment` authentication scheme (MPP: tempoxyz/mpp-specs draft-httpauth-payment-00) with the
// Lightning `charge` intent (draft-lightning-charge-00). Pure codec: challenge parameters, the challenge id's
// stateless binding, the credential's parse, the receipt. No HTTP, no store.
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { proofStillHonoured } from './late-proof.js';

/** Problem type URIs of draft-lightning-charge-00 (section "Error Responses"). */
export const MPP_PROBLEM = {
  malformed: 'https://paymentauth.org/problems/lightning/malformed-credential',
  unknownChallenge: 'https://paymentauth.org/problems/lightning/unknown-challenge',
  invalidPreimage: 'https://paymentauth.org/problems/lightning/invalid-preimage',
  expired: 'https://paymentauth.org/problems/lightning/expired-invoice',
  required: 'https://paymentauth.org/problems/payment-required',
} as const;

/** Longest `Authorization: Payment …` value read (the challenge echo plus a preimage fit in well under 4 KiB). */
export const MAX_MPP_CREDENTIAL_LENGTH = 8192;

export interface MppChallenge {
  id: string;
  realm: string;
  method: 'lightning';
  /** `charge` (this module) or `session` (mpp-session.ts): the id's HMAC covers it, so one never passes as the other. */
  intent: 'charge' | 'session';
  request: string;
  /** RFC 3339, whole seconds, UTC. */
  expires: string;
}

/** What a challenge's id is bound to besides its own parameters: the route, method and path it was sold for. */
export interface MppScope {
  routeId: string;
  method: string;
  path: string;
}

/** RFC 8785 (JCS) for the values this module serialises: strings, safe integers, booleans, null, arrays, objects. */
export function jcs(value: unknown): string {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return JSON.stringify(value);
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) throw new Error('jcs: only safe integers are serialised here');
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(jcs).join(',')}]`;
  if (typeof value === 'object') {
    // JCS sorts member names by their UTF-16 code units: JavaScript's default string order.
    const o = value as Record<string, unknown>;
    const keys = Object.keys(o).filter((k) => o[k] !== undefined).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${jcs(o[k])}`).join(',')}}`;
  }
  throw new Error(`jcs: cannot serialise a ${typeof value}`);
}

export function base64url(b: Buffer | string): string {
  return (typeof b === 'string' ? Buffer.from(b, 'utf8') : b).toString('base64url');
}

/** base64url with or without padding (the Lightning charge spec accepts both); undefined for anything else. */
export function decodeBase64url(text: string, maxBytes: number): Buffer | undefined {
  if (text.length === 0 || text.length > Math.ceil((maxBytes * 4) / 3) + 2) return undefined;
  if (!/^[A-Za-z0-9_-]+={0,2}$/.test(text)) return undefined;
  const body = text.replace(/=+$/, '');
  if (body.length % 4 === 1) return undefined;
  const b = Buffer.from(body, 'base64url');
  // Non-canonical trailing bits would let two spellings carry one value: refuse them.
  if (b.toString('base64url') !== body) return undefined;
  return b.length <= maxBytes ? b : undefined;
}

/** The network named by a BOLT11 invoice's prefix, as the Lightning charge spec spells it (testnet has no name there). */
export function invoiceNetwork(bolt11: string): 'mainnet' | 'regtest' | 'signet' | undefined {
  const i = bolt11.toLowerCase();
  if (i.startsWith('lnbcrt')) return 'regtest';
  if (i.startsWith('lntbs')) return 'signet';
  if (i.startsWith('lnbc')) return 'mainnet';
  return undefined;
}

/** RFC 3339 in whole seconds, UTC. */
export function rfc3339(unixSecs: number): string {
  return new Date(unixSecs * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

const BINDING_LABEL = 'l402-nginx/mpp-challenge/v1\0';

/** The key a challenge id is computed with: the master key, narrowed to one route, method and path. */
function bindingKey(master: Buffer, scope: MppScope): Buffer {
  return createHmac('sha256', master).update(BINDING_LABEL).update(JSON.stringify([scope.routeId, scope.method, scope.path])).digest();
}

/**
 * The challenge id: the spec's recommended HMAC-SHA256 over seven positional slots (realm, method, intent,
 * request, expires, digest, opaque), under a key that also commits to the route, method and path the challenge
 * was issued for. Any l402d process holding the master key can check it; a challenge for another route, path
 * or method does not verify there.
 */
export function challengeId(master: Buffer, scope: MppScope, p: Omit<MppChallenge, 'id'>): string {
  const input = [p.realm, p.method, p.intent, p.request, p.expires, '', ''].join('|');
  return createHmac('sha256', bindingKey(master, scope)).update(input, 'utf8').digest('base64url');
}

export interface MppOffer {
  invoice: string;
  paymentHash: string;
  amountMsat: number;
  /** Unix seconds: the challenge expires with its invoice (never later, as the spec requires). */
  expiresAt: number;
  description?: string;
}

/** Whether an amount can be charged in this scheme: its unit is the satoshi. */
export function mppPayable(amountMsat: number): boolean {
  return amountMsat % 1000 === 0 && amountMsat >= 1000;
}

export function buildChallenge(master: Buffer, realm: string, scope: MppScope, o: MppOffer): MppChallenge {
  const network = invoiceNetwork(o.invoice);
  const request = base64url(
    jcs({
      amount: String(o.amountMsat / 1000),
      currency: 'sat',
      ...(o.description ? { description: o.description } : {}),
      methodDetails: { invoice: o.invoice, paymentHash: o.paymentHash, ...(network ? { network } : {}) },
    }),
  );
  const p = { realm, method: 'lightning' as const, intent: 'charge' as const, request, expires: rfc3339(o.expiresAt) };
  return { id: challengeId(master, scope, p), ...p };
}

/** A quoted-string auth-param value (the values we emit are base64url, RFC 3339 or a service name). */
function quoted(v: string): string {
  return `"${v.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

export function formatChallenge(c: MppChallenge): string {
  return `Payment id=${quoted(c.id)}, realm=${quoted(c.realm)}, method=${quoted(c.method)}, intent=${quoted(c.intent)}, request=${quoted(c.request)}, expires=${quoted(c.expires)}`;
}

/**
 * Whether an Authorization value uses the Payment scheme (case-insensitive, as every HTTP auth scheme). Only
 * HTTP whitespace (SP, HTAB) separates it, as upstream.conf's map reads it: a credential l402d spends is one
 * nginx strips before the upstream (JavaScript's \s also takes the byte 0xA0, which nginx's map does not).
 */
export function isPaymentScheme(authorization: string | undefined): boolean {
  return authorization !== undefined && /^[ \t]*payment([ \t]|$)/i.test(authorization);
}

export type MppFailure = 'malformed' | 'unknown_challenge' | 'invalid_preimage' | 'expired';

export interface MppVerified {
  challengeId: string;
  paymentHash: Buffer;
  amountMsat: number;
  /** Unix seconds. */
  expiresAt: number;
}

const STR = (v: unknown, max = 4096): v is string => typeof v === 'string' && v.length > 0 && v.length <= max;
const HEX64 = /^[0-9a-f]{64}$/;
const ECHOED = new Set(['id', 'realm', 'method', 'intent', 'request', 'expires', 'description', 'opaque', 'digest']);

/**
 * The JSON object of `Authorization: Payment <base64url JSON>` (every intent's credential has this envelope);
 * optional whitespace (space, tab) around the token only.
 */
export function paymentCredentialObject(authorization: string): { ok: true; cred: Record<string, unknown> } | { ok: false; detail: string } {
  if (authorization.length > MAX_MPP_CREDENTIAL_LENGTH) return { ok: false, detail: 'credential too long' };
  const m = /^[ \t]*payment[ \t]+([^ \t]+)[ \t]*$/i.exec(authorization);
  if (!m) return { ok: false, detail: 'expected "Payment <base64url>"' };
  const raw = decodeBase64url(m[1]!, MAX_MPP_CREDENTIAL_LENGTH);
  if (!raw) return { ok: false, detail: 'credential is not base64url' };
  let cred: unknown;
  try {
    cred = JSON.parse(raw.toString('utf8'));
  } catch {
    return { ok: false, detail: 'credential is not JSON' };
  }
  if (!cred || typeof cred !== 'object' || Array.isArray(cred)) return { ok: false, detail: 'credential is not a JSON object' };
  return { ok: true, cred: cred as Record<string, unknown> };
}

/**
 * Verifies `Authorization: Payment <base64url JSON>` against what this gate would have issued for this scope:
 * the echoed challenge must carry the id our key gives its parameters (so the request JSON, with the invoice's
 * payment hash and amount, is the one we minted), must not have expired, and sha256(preimage) must be that hash.
 * Single use is the caller's (the store claim).
 */
export function verifyCredential(
  authorization: string,
  o: { masters: readonly Buffer[]; realm: string; scope: MppScope; now: number },
): { ok: true; v: MppVerified } | { ok: false; failure: MppFailure; detail: string } {
  const bad = (detail: string) => ({ ok: false as const, failure: 'malformed' as const, detail });
  const env = paymentCredentialObject(authorization);
  if (!env.ok) return bad(env.detail);
  const cred = env.cred;
  const { challenge: ch, payload } = cred as Record<string, unknown>;
  if (!ch || typeof ch !== 'object' || Array.isArray(ch)) return bad('challenge missing');
  if (!payload || typeof payload !== 'object' || Array.isArray(payload)) return bad('payload missing');
  const c = ch as Record<string, unknown>;
  if (!STR(c.id, 128) || !STR(c.realm, 256) || !STR(c.method, 64) || !STR(c.intent, 64) || !STR(c.request) || (c.expires !== undefined && !STR(c.expires, 64))) {
    return bad('challenge fields missing or not strings');
  }
  const preimage = (payload as Record<string, unknown>).preimage;
  if (typeof preimage !== 'string' || !HEX64.test(preimage)) return bad('payload.preimage must be 64 lowercase hex characters');
  const unknown = (detail: string) => ({ ok: false as const, failure: 'unknown_challenge' as const, detail });
  // Every parameter we issue is echoed; one we never issue (opaque, digest, description) means another challenge.
  if (Object.keys(c).some((k) => !ECHOED.has(k)) || c.opaque !== undefined || c.digest !== undefined || c.description !== undefined || c.expires === undefined) {
    return unknown('not a challenge issued here');
  }
  if (c.method !== 'lightning' || c.intent !== 'charge' || c.realm !== o.realm) return unknown('not a challenge issued here');
  const p = { realm: c.realm, method: 'lightning' as const, intent: 'charge' as const, request: c.request as string, expires: c.expires as string };
  const given = Buffer.from(c.id as string, 'utf8');
  const issued = o.masters.some((k) => {
    const want = Buffer.from(challengeId(k, o.scope, p), 'utf8');
    return want.length === given.length && timingSafeEqual(want, given);
  });
  if (!issued) return unknown('challenge id does not match this request');
  // Ours from here on: the request JSON and expiry are what we minted.
  const expiresAt = Date.parse(p.expires) / 1000;
  // A preimage proves the invoice was paid before it expired: honoured a while after (late-proof.ts).
  if (!proofStillHonoured(expiresAt, o.now)) return { ok: false, failure: 'expired', detail: 'challenge expired' };
  let req: { amount?: unknown; methodDetails?: { paymentHash?: unknown } };
  try {
    req = JSON.parse(Buffer.from(p.request, 'base64url').toString('utf8')) as typeof req;
  } catch {
    return unknown('challenge request unreadable');
  }
  const hash = req.methodDetails?.paymentHash;
  if (typeof hash !== 'string' || !HEX64.test(hash) || typeof req.amount !== 'string' || !/^[1-9][0-9]{0,15}$/.test(req.amount)) return unknown('challenge request unreadable');
  const paymentHash = Buffer.from(hash, 'hex');
  const digest = createHash('sha256').update(Buffer.from(preimage, 'hex')).digest();
  if (!timingSafeEqual(digest, paymentHash)) return { ok: false, failure: 'invalid_preimage', detail: 'SHA-256 of the preimage is not the payment hash' };
  return { ok: true, v: { challengeId: c.id as string, paymentHash, amountMsat: Number(req.amount) * 1000, expiresAt } };
}

/** The `Payment-Receipt` header value (draft-lightning-charge-00 "Receipt Generation"): never the preimage. */
export function receipt(challengeId: string, paymentHash: Buffer, nowSecs: number): string {
  return base64url(jcs({ challengeId, method: 'lightning', reference: paymentHash.toString('hex'), status: 'success', timestamp: rfc3339(nowSecs) }));
}

// The decision core's side of MPP and x402: which of them a request presents, and verifying it. Single use
// and its claim are decide()'s, shared with L402: MPP spends the same claim as the L402 credential for the
// same invoice (one payment, one request, whichever scheme carries it).
import { isPaymentScheme, verifyCredential as verifyMpp, receipt as mppReceipt } from '../protocol/mpp.js';
import { paymentResponse, verifyPaymentSignature } from '../protocol/x402.js';
import { offers } from './schemes.js';
import { claimKey, type Authenticated, type Clock, type DecideDeps, type Decision, type GateRequest } from './decide.js';
import type { RouteConfig } from './route-config.js';

/** x402's invoices are its own (never an L402/MPP one): their spent marks have their own keys. */
export function x402ClaimKey(paymentHash: Buffer): string {
  return `claim:x402:${paymentHash.toString('hex')}`;
}

export type OtherSchemeReason =
  | 'mpp_malformed_credential'
  | 'mpp_unknown_challenge'
  | 'mpp_invalid_preimage'
  | 'mpp_expired_invoice'
  | 'x402_malformed_payment'
  | 'x402_unknown_offer'
  | 'x402_expired_invoice'
  | 'x402_not_paid'
  | 'x402_already_used';

/**
 * The scheme of the credential this request presents, when it is MPP or x402 and the route offers it over
 * HTTPS. Authorization comes first (Payment, then L402/LSAT/Cashu as before); PAYMENT-SIGNATURE only when
 * Authorization carries none of ours. Over plain HTTP neither is read (their specs forbid it): the answer is
 * the challenge, without them.
 */
export function otherSchemeOf(req: GateRequest, route: RouteConfig): 'mpp' | 'x402' | undefined {
  if (!req.secure) return undefined;
  const auth = req.credentials.authorization;
  if (isPaymentScheme(auth) && offers(route, 'mpp')) return 'mpp';
  if (auth !== undefined && /^\s*(l402|lsat|cashu)(\s|$)/i.test(auth)) return undefined;
  if (req.credentials.paymentSignature !== undefined && offers(route, 'x402')) return 'x402';
  return undefined;
}

/**
 * What an MPP or x402 payment buys on a route that sells capabilities: the route's whole set, as every L402
 * credential of the route is minted with it (neither scheme lets a holder narrow it). The upstream learns it in
 * X-L402-Capabilities as it does for an L402 payer; capability_rules only ever need capabilities of that set.
 */
function soldCapabilities(route: RouteConfig): { capabilities?: string[] } {
  return route.capabilities ? { capabilities: [...route.capabilities] } : {};
}

export async function authenticateOtherScheme(
  scheme: 'mpp' | 'x402',
  req: GateRequest & { path: string },
  route: RouteConfig,
  deps: DecideDeps,
  clock: Clock,
  now: number,
): Promise<Authenticated | Decision> {
  const scope = { routeId: route.id, method: req.method, path: req.path };
  if (scheme === 'mpp') {
    const r = verifyMpp(req.credentials.authorization!, { masters: deps.rootKeys, realm: deps.realm ?? deps.service, scope, now });
    if (!r.ok) {
      const reason = ({ malformed: 'mpp_malformed_credential', unknown_challenge: 'mpp_unknown_challenge', invalid_preimage: 'mpp_invalid_preimage', expired: 'mpp_expired_invoice' } as const)[r.failure];
      return { outcome: 'invalid', route, reason };
    }
    const hash = r.v.paymentHash;
    return {
      tokenId: hash.toString('hex'),
      paymentHash: hash.toString('hex'),
      validUntil: r.v.expiresAt,
      // The L402 credential sold with this invoice may verify for longer than the challenge (a macaroon_timeout
      // past the invoice's expiry, or none): the shared spent mark is kept for ever, like that credential's.
      mintedValidUntil: undefined,
      claimKey: claimKey(hash),
      soldSingleUse: true,
      singleUse: true,
      now,
      usedReason: 'mpp_unknown_challenge',
      receipt: ['Payment-Receipt', mppReceipt(r.v.challengeId, hash, now)],
      ...soldCapabilities(route),
    };
  }
  const r = verifyPaymentSignature(req.credentials.paymentSignature!, { masters: deps.rootKeys, scope, now });
  if (!r.ok) {
    const reason = ({ malformed: 'x402_malformed_payment', unknown_offer: 'x402_unknown_offer', expired: 'x402_expired_invoice' } as const)[r.failure];
    return { outcome: 'invalid', route, reason };
  }
  // x402 on Lightning proves payment by the invoice alone: our node must say it was paid.
  if (!deps.isSettled) return { outcome: 'unavailable', route, reason: 'backend_unavailable' };
  let settled: boolean;
  try {
    clock.waitingOn = 'backend_unavailable';
    settled = await deps.isSettled(r.v.paymentHash);
    clock.waitingOn = 'store_unavailable';
  } catch {
    return { outcome: 'unavailable', route, reason: 'backend_unavailable' };
  }
  if (!settled) return { outcome: 'invalid', route, reason: 'x402_not_paid' };
  const hash = r.v.paymentHash.toString('hex');
  return {
    tokenId: hash,
    paymentHash: hash,
    validUntil: r.v.expiresAt,
    // Its own invoice, which only x402 sells: the spent mark outlives the offer's expiry by the grace period.
    mintedValidUntil: r.v.expiresAt,
    claimKey: x402ClaimKey(r.v.paymentHash),
    soldSingleUse: true,
    singleUse: true,
    now,
    usedReason: 'x402_already_used',
    receipt: ['PAYMENT-RESPONSE', paymentResponse(r.v, now)],
    ...soldCapabilities(route),
  };
}

/**
 * The claim key an MPP or x402 credential of this request spent, if it verifies as ours (for giving back the
 * claim this request made when the upstream failed: release.ts deletes it only when this request owns it).
 */
export function otherSchemeClaimKey(req: GateRequest & { path: string }, route: RouteConfig, masters: readonly Buffer[], realm: string): string | undefined {
  const scheme = otherSchemeOf(req, route);
  if (!scheme) return undefined;
  const scope = { routeId: route.id, method: req.method, path: req.path };
  // Expiry does not matter here (now = 0): only a claim this very request made is ever given back.
  if (scheme === 'mpp') {
    const r = verifyMpp(req.credentials.authorization!, { masters, realm, scope, now: 0 });
    return r.ok ? claimKey(r.v.paymentHash) : undefined;
  }
  const r = verifyPaymentSignature(req.credentials.paymentSignature!, { masters, scope, now: 0 });
  return r.ok ? x402ClaimKey(r.v.paymentHash) : undefined;
}

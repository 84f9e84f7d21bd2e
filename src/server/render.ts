// Turns an outcome into the client's response: status, headers and body. Pure: the challenge (if any)
// has been minted by the caller.
import type { Challenge } from '../policy/challenge.js';
import type { RouteConfig } from '../config/config.js';
import { formatChallenges } from '../protocol/l402-header.js';
import { MPP_PROBLEM } from '../protocol/mpp.js';
import { SESSION_PROBLEM } from '../protocol/mpp-session.js';
import { sessionFailureOf } from '../policy/mpp-session-decide.js';
import { PAYMENT_PAGE_HEADERS, paymentPage, type PageOptions } from './payment-page.js';

export type RenderOutcome = 'challenge' | 'invalid' | 'unavailable' | 'forbidden' | 'method_not_allowed' | 'rate_limited' | 'cashu_rejected';

export interface RenderInput {
  outcome: RenderOutcome;
  reason: string;
  detail?: string;
  route?: RouteConfig;
  challenge?: Challenge;
  /** NUT-18 payment request for X-Cashu, when the route accepts Cashu. */
  cashuRequest?: string;
  /** The price the Cashu request asks for (shown by the payment page when there is no Lightning challenge). */
  cashuAmountMsat?: number;
  /** MPP: the `WWW-Authenticate: Payment …` challenge (on the L402 invoice). */
  mpp?: string;
  /** x402 v2: the PAYMENT-REQUIRED value (on an invoice of its own). */
  x402?: { header: string; amountMsat: number };
  method: string;
  html: boolean;
  grpc: boolean;
  lsat: boolean;
  retryAfterSecs: number;
  /** access: balance, an empty balance: msat left (the challenge is then a top-up for the same credential). */
  balanceMsat?: number;
  /** What the HTML payment page may offer (dev wallet button, auto-detect polling, original URL). */
  page?: PageOptions;
  /** A close of an MPP session closed already: what its close refunded (told to the session's own preimage holder). */
  sessionClosed?: { refundSats: number; refundStatus: string };
}

export interface Rendered {
  status: number;
  headers: Array<[string, string]>;
  body: string;
}

const STATUS: Record<RenderOutcome, number> = { challenge: 402, invalid: 401, unavailable: 503, forbidden: 403, method_not_allowed: 405, rate_limited: 429, cashu_rejected: 400 };
const TITLE: Record<RenderOutcome, string> = {
  challenge: 'Payment Required',
  invalid: 'Invalid payment credential',
  unavailable: 'Payment service temporarily unavailable',
  forbidden: 'Forbidden',
  method_not_allowed: 'Method Not Allowed',
  rate_limited: 'Too Many Requests',
  cashu_rejected: 'Cashu payment rejected',
};
// gRPC status codes (grpc/status.proto): the L402 spec answers an unpaid call with 13 "payment required".
const GRPC: Record<RenderOutcome, [number, string]> = {
  challenge: [13, 'payment required'],
  invalid: [16, 'invalid payment credential'],
  unavailable: [14, 'payment service unavailable'],
  forbidden: [7, 'forbidden'],
  method_not_allowed: [12, 'method not allowed'],
  rate_limited: [8, 'too many invoices requested'],
  cashu_rejected: [3, 'cashu payment rejected'],
};
// What went wrong, never how to pay: that part (payHow) names exactly the rails the answer offers.
const DETAIL: Record<string, string> = {
  no_credential: 'Payment required.',
  payment_pending: 'The invoice has not been paid yet; once it is, the macaroon alone (or macaroon:preimage) opens this route.',
  auto_detect_off: 'Automatic payment detection is not available here: the credential needs its preimage.',
  malformed_credential: 'The payment credential in the request could not be read.',
  malformed_macaroon: 'The macaroon could not be decoded.',
  unknown_identifier: 'The macaroon was not issued by this service.',
  bad_signature: 'The macaroon signature does not verify.',
  expired: 'The credential has expired.',
  wrong_route: 'The credential was bought for another route.',
  wrong_path: 'The credential was bought for another path.',
  wrong_method: 'The credential was bought for another HTTP method.',
  wrong_service: 'The credential was issued for another service.',
  wrong_preimage: 'The preimage does not match the invoice.',
  unknown_caveat: 'The macaroon carries a caveat this service does not understand (strict mode, or one it minted itself).',
  missing_capability: 'The credential does not grant the capability this request needs.',
  malformed_caveat: 'The macaroon carries a malformed caveat.',
  missing_preimage: 'The credential has no preimage.',
  already_used: 'This single-use credential has already been used.',
  balance_empty: 'The prepaid balance of this credential is less than this request draws. Top it up: pay the invoice, then repeat the request with Authorization: L402 <the same macaroon>:<the top-up preimage> (or send X-Cashu with the same credential); the credential stays the same.',
  revoked: 'The operator has revoked this credential; it no longer pays for anything. Pay the new invoice for access.',
  store_unavailable: 'The credential store is unavailable; retry shortly.',
  backend_unavailable: 'The Lightning backend is unavailable; retry shortly.',
  no_route: 'No paid route is configured for this path.',
  bad_path: 'The request path is not valid.',
  method_not_sold: 'This route does not sell access for this method.',
  bad_method: 'This request method cannot be sold by this gate.',
  cashu_rejected: 'The Cashu token was not accepted.',
  cashu_unavailable: 'The Cashu mint or store is unavailable; retry shortly.',
  invoice_rate_limited: 'Too many payment requests from this address; retry after the given time.',
  no_payable_offer: 'No payment scheme of this route can charge its current price; retry shortly.',
  https_required: 'This route is sold only over HTTPS (MPP, x402): repeat the request with https://.',
  mpp_malformed_credential: 'The Payment credential could not be decoded (base64url JSON with challenge and payload.preimage).',
  mpp_unknown_challenge: 'The Payment credential echoes a challenge this server did not issue for this request, or one already used.',
  mpp_invalid_preimage: 'SHA-256 of the preimage is not the payment hash of the challenge invoice.',
  mpp_expired_invoice: 'The challenge and its invoice have expired.',
  x402_malformed_payment: 'PAYMENT-SIGNATURE is not a base64 x402 v2 payment payload.',
  x402_unknown_offer: 'The x402 payment does not carry an offer this server issued for this request.',
  x402_expired_invoice: 'The x402 invoice has expired.',
  x402_not_paid: 'The x402 invoice has not been paid.',
  x402_already_used: 'This x402 payment has been used already.',
  mpp_session_malformed_credential: 'The Payment session credential could not be decoded (base64url JSON with challenge and payload.action).',
  mpp_session_unknown_challenge: 'The session credential echoes a challenge this server did not issue for this request, or its deposit was used already.',
  mpp_session_invalid_preimage: 'SHA-256 of the preimage is not the payment hash of the deposit invoice (open, topUp) or the session id (bearer, close).',
  mpp_session_not_found: 'No open session with this id exists for this route.',
  mpp_session_closed: 'This session is closed; no further actions are accepted. Open a new session.',
  mpp_session_insufficient_balance: 'The session balance is less than this request draws. Top it up: pay the deposit invoice of the session challenge, then send a topUp credential.',
  mpp_session_challenge_expired: 'The session challenge and its deposit invoice have expired.',
  mpp_session_invalid_return_invoice: 'The return invoice is not a BOLT11 invoice without an amount on the deposit invoice\'s network that has not expired.',
};

/** MPP refusals carry the Lightning charge spec's problem types (draft-lightning-charge-00, "Error Responses"). */
const MPP_TYPE: Record<string, string> = {
  mpp_malformed_credential: MPP_PROBLEM.malformed,
  mpp_unknown_challenge: MPP_PROBLEM.unknownChallenge,
  mpp_invalid_preimage: MPP_PROBLEM.invalidPreimage,
  mpp_expired_invoice: MPP_PROBLEM.expired,
};

/** The problem type of a refusal: MPP's charge and session specs name theirs; ours are URNs. */
function problemType(reason: string, outcome: RenderOutcome): string {
  const session = sessionFailureOf(reason);
  if (session) return SESSION_PROBLEM[session];
  return MPP_TYPE[reason] ?? `urn:l402:problem:${outcome === 'challenge' ? 'payment-required' : reason.replace(/_/g, '-')}`;
}

/** A 402 that offers MPP or x402: how to pay with each scheme it carries, and with no other. */
export function describeReason(reason: string): string {
  return DETAIL[reason] ?? reason;
}

/**
 * How to pay, for exactly the schemes this answer offers (an L402 challenge, an X-Cashu request, MPP's Payment
 * challenge, x402's PAYMENT-REQUIRED; any of them, or none).
 */
export function payHow(offer: { lightning: boolean; cashu: boolean; mpp?: boolean; x402?: boolean }): string {
  if (offer.mpp || offer.x402) {
    const ways: string[] = [];
    if (offer.lightning) ways.push('L402: pay the invoice, then repeat the request with Authorization: L402 <macaroon>:<preimage>');
    if (offer.mpp) ways.push('MPP: pay the invoice of the WWW-Authenticate: Payment challenge, then repeat the request with Authorization: Payment <credential>');
    if (offer.x402) ways.push('x402: pay the invoice in PAYMENT-REQUIRED, then repeat the request with PAYMENT-SIGNATURE');
    if (offer.cashu) ways.push('Cashu: pay the X-Cashu payment request, then repeat the request with X-Cashu: <token>');
    return `Pay with one of: ${ways.join('; ')}.`;
  }
  const ln = 'Pay the Lightning invoice, then repeat the request with Authorization: L402 <macaroon>:<preimage>.';
  const cashu = 'pay with a Cashu token for the X-Cashu payment request, sent in the X-Cashu header.';
  if (offer.lightning && offer.cashu) return `${ln} Or ${cashu}`;
  if (offer.lightning) return ln;
  if (offer.cashu) return `P${cashu.slice(1)}`;
  return '';
}

/** The problem's detail: what went wrong (with the Cashu mint's reason, if any), then how to pay what is offered. */
function detailFor(i: RenderInput): string {
  const what = i.detail ? `${describeReason(i.reason)} (${i.detail})` : describeReason(i.reason);
  const how = payHow({ lightning: !!i.challenge, cashu: !!i.cashuRequest, mpp: !!i.mpp, x402: !!i.x402 });
  return how ? `${what} ${how}` : what;
}

export function render(i: RenderInput): Rendered {
  const headers: Array<[string, string]> = [['Cache-Control', 'no-store']];
  const c = i.challenge;
  // The L402 challenge comes first: Go clients (Aperture's, lnget) read only the first WWW-Authenticate line.
  if (c) for (const h of formatChallenges(c.macaroon, c.invoice, { lsat: i.lsat })) headers.push(['WWW-Authenticate', h]);
  if (i.mpp) headers.push(['WWW-Authenticate', i.mpp]);
  if (i.x402) headers.push(['PAYMENT-REQUIRED', i.x402.header]);
  if (i.cashuRequest) headers.push(['X-Cashu', i.cashuRequest]);
  // Every answer of the gate is readable by browser clients (a 429's Retry-After, a 503, a 401's challenge):
  // a refusal the page cannot read is a paying client lost. Nothing here is secret to the requester.
  headers.push(['Access-Control-Allow-Origin', '*'], ['Access-Control-Expose-Headers', 'WWW-Authenticate, X-Cashu, Retry-After, PAYMENT-REQUIRED, Payment-Receipt, PAYMENT-RESPONSE, X-L402-Balance-Msat']);
  // MPP and x402 answer every refused payment with 402 and a fresh offer (their specs), not L402's 401.
  const otherScheme = i.outcome === 'invalid' && /^(mpp|x402)_/.test(i.reason);
  if (i.outcome === 'unavailable' || i.outcome === 'rate_limited') headers.push(['Retry-After', String(i.retryAfterSecs)]);
  if (i.balanceMsat !== undefined) headers.push(['X-L402-Balance-Msat', String(i.balanceMsat)]);
  if (i.outcome === 'method_not_allowed' && i.route?.methods) headers.push(['Allow', i.route.methods.join(', ')]);

  if (i.grpc) {
    const [code, msg] = GRPC[i.outcome];
    headers.push(['Content-Type', 'application/grpc'], ['grpc-status', String(code)], ['grpc-message', encodeURIComponent(msg)]);
    return { status: 200, headers, body: '' };
  }
  const status = otherScheme ? 402 : STATUS[i.outcome];
  if (i.method === 'HEAD') return { status, headers, body: '' };
  if (i.html && i.route?.paymentPage !== false) {
    headers.push(['Content-Type', 'text/html; charset=utf-8'], ...PAYMENT_PAGE_HEADERS.map(([k, v]): [string, string] => [k, v]));
    return {
      status,
      headers,
      body: paymentPage({
        status,
        title: TITLE[i.outcome],
        message: detailFor(i),
        outcome: i.outcome,
        challenge: c,
        route: i.route,
        page: i.page,
        cashu: i.cashuRequest ? { request: i.cashuRequest, amountMsat: i.cashuAmountMsat } : undefined,
      }),
    };
  }
  const problem: Record<string, unknown> = {
    type: problemType(i.reason, i.outcome),
    title: TITLE[i.outcome],
    status,
    reason: i.reason,
    detail: detailFor(i),
  };
  if (c) {
    Object.assign(problem, {
      amount_msat: c.amountMsat,
      invoice: c.invoice,
      macaroon: c.macaroon,
      payment_hash: c.paymentHash,
      expires_at: new Date(c.invoiceExpiresAt * 1000).toISOString(),
      ...(c.validUntil !== undefined ? { valid_until: new Date(c.validUntil * 1000).toISOString() } : {}),
      methods: ['L402'],
    });
  }
  if (i.balanceMsat !== undefined) Object.assign(problem, { balance_msat: i.balanceMsat, topup: true });
  if (i.sessionClosed) Object.assign(problem, { refundSats: i.sessionClosed.refundSats, refundStatus: i.sessionClosed.refundStatus });
  if (i.mpp) problem.methods = [...((problem.methods as string[] | undefined) ?? []), 'MPP'];
  if (i.x402) problem.methods = [...((problem.methods as string[] | undefined) ?? []), 'x402'];
  if (i.cashuRequest) {
    problem.cashu_request = i.cashuRequest;
    problem.methods = [...((problem.methods as string[] | undefined) ?? []), 'Cashu'];
  }
  if (i.outcome === 'unavailable' || i.outcome === 'rate_limited') problem.retry_after = i.retryAfterSecs;
  headers.push(['Content-Type', 'application/problem+json']);
  return { status, headers, body: JSON.stringify(problem) + '\n' };
}

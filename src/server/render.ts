// Turns an outcome into the client's response: status, headers and body. Pure: the challenge (if any)
// has been minted by the caller.
import type { Challenge } from '../policy/challenge.js';
import type { RouteConfig } from '../policy/config.js';
import { formatChallenges } from '../protocol/l402-header.js';
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
  method: string;
  html: boolean;
  grpc: boolean;
  lsat: boolean;
  retryAfterSecs: number;
  /** What the HTML payment page may offer (dev wallet button, auto-detect polling, original URL). */
  page?: PageOptions;
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
const DETAIL: Record<string, string> = {
  no_credential: 'Pay the invoice, then repeat the request with Authorization: L402 <macaroon>:<preimage>.',
  payment_pending: 'The invoice has not been paid yet. Pay it, then retry (with the macaroon alone, or macaroon:preimage).',
  auto_detect_off: 'This route needs the preimage: Authorization: L402 <macaroon>:<preimage>.',
  malformed_credential: 'The Authorization header is not a valid L402 credential.',
  malformed_macaroon: 'The macaroon could not be decoded.',
  unknown_identifier: 'The macaroon was not issued by this service.',
  bad_signature: 'The macaroon signature does not verify.',
  expired: 'The credential has expired.',
  wrong_route: 'The credential was bought for another route.',
  wrong_path: 'The credential was bought for another path.',
  wrong_method: 'The credential was bought for another HTTP method.',
  wrong_service: 'The credential was issued for another service.',
  wrong_preimage: 'The preimage does not match the invoice.',
  unknown_caveat: 'The macaroon carries a caveat this service does not understand.',
  malformed_caveat: 'The macaroon carries a malformed caveat.',
  missing_preimage: 'The credential has no preimage.',
  already_used: 'This single-use credential has already been used.',
  revoked: 'The operator has revoked this credential; it no longer pays for anything. Pay the new invoice for access.',
  store_unavailable: 'The credential store is unavailable; retry shortly.',
  backend_unavailable: 'The Lightning backend is unavailable; retry shortly.',
  no_route: 'No paid route is configured for this path.',
  bad_path: 'The request path is not valid.',
  method_not_sold: 'This route does not sell access for this method.',
  bad_method: 'This request method cannot be sold by this gate.',
  cashu_rejected: 'The Cashu token was not accepted; pay the X-Cashu request with a new token.',
  cashu_unavailable: 'The Cashu mint or store is unavailable; retry shortly.',
  invoice_rate_limited: 'Too many invoices requested from this address; retry after the given time.',
};

export function describeReason(reason: string): string {
  return DETAIL[reason] ?? reason;
}

export function render(i: RenderInput): Rendered {
  const headers: Array<[string, string]> = [['Cache-Control', 'no-store']];
  const c = i.challenge;
  if (c) for (const h of formatChallenges(c.macaroon, c.invoice, { lsat: i.lsat })) headers.push(['WWW-Authenticate', h]);
  if (i.cashuRequest) headers.push(['X-Cashu', i.cashuRequest]);
  // Every answer of the gate is readable by browser clients (a 429's Retry-After, a 503, a 401's challenge):
  // a refusal the page cannot read is a paying client lost. Nothing here is secret to the requester.
  headers.push(['Access-Control-Allow-Origin', '*'], ['Access-Control-Expose-Headers', 'WWW-Authenticate, X-Cashu, Retry-After']);
  if (i.outcome === 'unavailable' || i.outcome === 'rate_limited') headers.push(['Retry-After', String(i.retryAfterSecs)]);
  if (i.outcome === 'method_not_allowed' && i.route?.methods) headers.push(['Allow', i.route.methods.join(', ')]);

  if (i.grpc) {
    const [code, msg] = GRPC[i.outcome];
    headers.push(['Content-Type', 'application/grpc'], ['grpc-status', String(code)], ['grpc-message', encodeURIComponent(msg)]);
    return { status: 200, headers, body: '' };
  }
  const status = STATUS[i.outcome];
  if (i.method === 'HEAD') return { status, headers, body: '' };
  if (i.html && i.route?.paymentPage !== false) {
    headers.push(['Content-Type', 'text/html; charset=utf-8'], ...PAYMENT_PAGE_HEADERS.map(([k, v]): [string, string] => [k, v]));
    return {
      status,
      headers,
      body: paymentPage({
        status,
        title: TITLE[i.outcome],
        message: i.detail ? `${describeReason(i.reason)} (${i.detail})` : describeReason(i.reason),
        outcome: i.outcome,
        challenge: c,
        route: i.route,
        page: i.page,
        cashu: i.cashuRequest ? { request: i.cashuRequest } : undefined,
      }),
    };
  }
  const problem: Record<string, unknown> = {
    type: `urn:l402:problem:${i.outcome === 'challenge' ? 'payment-required' : i.reason.replace(/_/g, '-')}`,
    title: TITLE[i.outcome],
    status,
    reason: i.reason,
    detail: i.detail ? `${describeReason(i.reason)} (${i.detail})` : describeReason(i.reason),
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
  if (i.cashuRequest) {
    problem.cashu_request = i.cashuRequest;
    problem.methods = [...((problem.methods as string[] | undefined) ?? []), 'Cashu'];
  }
  if (i.outcome === 'unavailable' || i.outcome === 'rate_limited') problem.retry_after = i.retryAfterSecs;
  headers.push(['Content-Type', 'application/problem+json']);
  return { status, headers, body: JSON.stringify(problem) + '\n' };
}

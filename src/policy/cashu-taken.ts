// Ecash a client request took, recorded by that request's id (nginx's $request_id, shared by nginx's retries
// of the same request). The rail accepts a token once and then refuses it as spent: when the l402d that took
// it goes away before its answer reaches nginx, nginx retries the same request on another l402d, which finds
// this record (the token's hash must match) and answers as the first attempt did, instead of 400 for ecash
// the gate already has. Only that request id finds it; any other request sending the token is a replay.
import { createHash } from 'node:crypto';

/** How long the record is kept: far longer than nginx retries a request. */
export const TAKEN_RECORD_SECS = 3600;

/** The id of a Cashu token as a payment: SHA-256 of its text, hex (also its credit id and sale id). */
export function cashuPaymentId(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

/**
 * The record's value: `<payment id>:<msat taken>:<scope>`. `scope` names what the ecash paid for where that
 * matters: the route, for a payment that opens one request (an internal redirect reuses the request id, and must
 * not carry a cheap route's payment to a dearer one); '' for a balance top-up, which credits its token's
 * balance whatever route it came through.
 */
export function takenRecord(paymentId: string, msat: number, scope = ''): string {
  return `${paymentId}:${msat}:${scope}`;
}

/** The msat taken, if the record names this very token and scope; else undefined. */
export function takenMsat(v: string | undefined, paymentId: string, scope = ''): number | undefined {
  const m = v === undefined ? null : /^([0-9a-f]{64}):([1-9]\d{0,15}):(.*)$/s.exec(v);
  return m && m[1] === paymentId && m[3] === scope ? Number(m[2]) : undefined;
}

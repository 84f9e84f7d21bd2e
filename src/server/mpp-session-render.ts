// MPP's Lightning `session` intent, the render's side (draft-lightning-session-00): the session challenge a
// 402 on a balance route offers beside L402 (a deposit invoice of its own, never the L402 one: one payment
// must never both open a session and buy an L402 balance), and the management answers l402d gives itself for
// `topUp` (200 {"status":"ok"}) and `close` (200 {"status":"closed","refundSats":N,"refundStatus":…}, the
// unspent balance paid once to the return invoice bound at open), each with its Payment-Receipt. Behind nginx
// these come from the render endpoint (auth answers `management`, error_page 401 goes to @l402_render); in
// standalone mode from the same render call.
import { buildSessionChallenge, closeBody, sessionReceipt, topUpBody, verifySessionCredential, type DecodedInvoiceFacts } from '../protocol/mpp-session.js';
import { formatChallenge, mppPayable, type MppScope } from '../protocol/mpp.js';
import { closedSession, closeSession, topUpSession, type SessionLedgerDeps } from '../policy/mpp-session-ledger.js';
import { SESSION_REASON, type SessionReason } from '../policy/mpp-session-decide.js';
import { soldScope, type RouteConfig } from '../policy/route-config.js';
import type { InvoiceMinter } from '../policy/ports.js';
import { BackendError } from '../policy/challenge.js';
import { mintedInvoice } from '../policy/minted-invoice.js';
import { decodeBolt11 } from '../rails/lightning/codecs/bolt11.js';
import type { Rendered } from './render.js';
import { withTimeout } from '../util/timeout.js';

/** The facts of a BOLT11 invoice a session checks (codecs/bolt11.ts); undefined when it does not decode. */
export function decodeInvoiceFacts(bolt11: string): DecodedInvoiceFacts | undefined {
  try {
    const d = decodeBolt11(bolt11);
    return { amountMsat: d.amountMsat, network: d.network, expiresAt: d.expiresAt };
  } catch {
    return undefined;
  }
}

export interface SessionOfferDeps {
  backend: InvoiceMinter;
  master: Buffer;
  realm: string;
  memo: string;
  invoiceExpirySecs: number;
  backendTimeoutMs: number;
  /** The route's idle timeout (seconds), told to the client as the spec's idleTimeout. */
  idleTimeoutSecs?: number;
}

/**
 * The `WWW-Authenticate: Payment … intent="session"` value for this request: a fresh deposit invoice for the
 * route's balance_msat from our own node, the price of this request as the unit. Undefined when the price is
 * not whole satoshis or more than one deposit (nothing a session could charge). Throws BackendError.
 */
export async function mintSessionOffer(route: RouteConfig, scope: MppScope, unitMsat: number, d: SessionOfferDeps): Promise<string | undefined> {
  const depositMsat = route.balanceMsat;
  if (depositMsat === undefined || !mppPayable(unitMsat) || !mppPayable(depositMsat) || depositMsat < unitMsat) return undefined;
  let returned;
  try {
    returned = await withTimeout(d.backend.createInvoice({ amountMsat: depositMsat, memo: d.memo, expirySecs: d.invoiceExpirySecs }, AbortSignal.timeout(d.backendTimeoutMs)), d.backendTimeoutMs, 'createInvoice');
  } catch (e) {
    throw new BackendError(`${d.backend.kind} createInvoice failed: ${(e as Error).message}`);
  }
  const inv = mintedInvoice(returned, Math.floor(Date.now() / 1000));
  if (!inv) throw new BackendError(`${d.backend.kind} returned a malformed invoice`);
  const c = buildSessionChallenge(d.master, d.realm, scope, { invoice: inv.bolt11, paymentHash: inv.paymentHash.toString('hex'), unitMsat, depositMsat, expiresAt: inv.expiresAt, unitType: 'request', idleTimeoutSecs: d.idleTimeoutSecs });
  return formatChallenge(c);
}

export interface ManageDeps {
  ledger: SessionLedgerDeps;
  realm: string;
  /** Told of a top-up credit that landed (the sales ledger). */
  onTopUp?: (sessionId: string, depositHash: string, msat: number) => void;
}

export type Managed = { ok: true; rendered: Rendered; sessionId: string; closed?: { refundSats: number; refundStatus: string } } | { ok: false; reason: SessionReason | 'store_unavailable'; closed?: { refundSats: number; refundStatus: string } };

/**
 * Performs the topUp or close this request's credential asks for (verified again here: the render trusts
 * nothing of the auth answer but that it was one). A refusal is rendered by the caller as a 402 with the
 * spec's problem type and fresh challenges; a repeated close of a closed session also says what its close paid.
 */
export async function manageSession(authorization: string, route: RouteConfig, scope: MppScope, method: string, d: ManageDeps): Promise<Managed> {
  const now = Math.floor(Date.now() / 1000);
  const v = verifySessionCredential(authorization, { masters: d.ledger.masters, realm: d.realm, scope, now });
  if (!v.ok) return { ok: false, reason: SESSION_REASON[v.failure] };
  const scopeId = soldScope(route);
  const sessionId = v.v.sessionId;
  const headers: Array<[string, string]> = [
    ['Content-Type', 'application/json'],
    ['Cache-Control', 'no-store'],
    ['Access-Control-Allow-Origin', '*'],
    ['Access-Control-Expose-Headers', 'Payment-Receipt, X-L402-Balance-Msat'],
  ];
  try {
    if (v.v.action === 'topUp') {
      const r = await topUpSession(d.ledger, { sessionId, scopeId, depositHash: v.v.depositHash, depositMsat: v.v.depositMsat });
      if (!r.ok) return { ok: false, reason: SESSION_REASON[r.failure] };
      if (r.credited) d.onTopUp?.(sessionId, v.v.depositHash, v.v.depositMsat);
      headers.push(['Payment-Receipt', sessionReceipt(sessionId, now)], ['X-L402-Balance-Msat', String(r.balanceMsat)]);
      return { ok: true, sessionId, rendered: { status: 200, headers, body: method === 'HEAD' ? '' : `${topUpBody()}\n` } };
    }
    if (v.v.action === 'close') {
      const r = await closeSession(d.ledger, { sessionId, scopeId });
      if (!r.ok) {
        const closed = r.failure === 'session_closed' ? await closedSession(d.ledger, sessionId, scopeId).catch(() => undefined) : undefined;
        return { ok: false, reason: SESSION_REASON[r.failure], ...(closed ? { closed } : {}) };
      }
      headers.push(['Payment-Receipt', sessionReceipt(sessionId, now, { refundSats: r.refundSats, refundStatus: r.refundStatus })]);
      return { ok: true, sessionId, closed: { refundSats: r.refundSats, refundStatus: r.refundStatus }, rendered: { status: 200, headers, body: method === 'HEAD' ? '' : `${closeBody(r.refundSats, r.refundStatus)}\n` } };
    }
  } catch {
    return { ok: false, reason: 'store_unavailable' };
  }
  // open and bearer are decided (and drawn) by the auth answer, never managed.
  return { ok: false, reason: SESSION_REASON.malformed };
}

/** A close presented again on a closed session (its preimage verified): what that session's close paid. */
export async function closedSessionOf(authorization: string, route: RouteConfig, scope: MppScope, d: Pick<ManageDeps, 'ledger' | 'realm'>): Promise<{ refundSats: number; refundStatus: string } | undefined> {
  const v = verifySessionCredential(authorization, { masters: d.ledger.masters, realm: d.realm, scope, now: Math.floor(Date.now() / 1000) });
  if (!v.ok || v.v.action !== 'close') return undefined;
  return closedSession(d.ledger, v.v.sessionId, soldScope(route)).catch(() => undefined);
}

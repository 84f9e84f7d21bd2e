// MPP's Lightning `session` intent on a balance route that offers mpp (draft-lightning-session-00), the
// decision core's side: `open` (the deposit proven by its preimage, credited once, the return invoice bound)
// and `bearer` draw this request's price from the session's balance, exactly as an L402 balance credential
// draws (the same atomic store draw under nginx's request id, given back when the upstream did not serve the
// request: release.ts). `topUp` and `close` are answered by l402d itself, never by the upstream: the decision
// is `management`, and the render (server/mpp-session-render.ts) performs them. Only over HTTPS (pay-schemes.ts).
import { checkReturnInvoice, sessionReceipt, verifySessionCredential, type DecodedInvoiceFacts, type SessionFailure } from '../protocol/mpp-session.js';
import { checkSession, openSession, type SessionLedgerDeps, type SessionRefusal } from './mpp-session-ledger.js';
import { abandonDraw, DRAW_HOLD_SECS } from './balance.js';
import { ownRequestId } from './claims.js';
import { soldScope, type RouteConfig } from './route-config.js';
import { storeKeys } from './store-keys.js';
import type { Clock, DecideDeps, Decision, GateRequest } from './decide.js';
import type { MppScope } from '../protocol/mpp.js';
import { withTimeout } from '../util/timeout.js';
import { randomBytes } from 'node:crypto';

/** The refusals of a session credential (each a 402 with the spec's problem type and a fresh challenge). */
export const SESSION_REASON = {
  malformed: 'mpp_session_malformed_credential',
  unknown_challenge: 'mpp_session_unknown_challenge',
  invalid_preimage: 'mpp_session_invalid_preimage',
  session_not_found: 'mpp_session_not_found',
  session_closed: 'mpp_session_closed',
  insufficient_balance: 'mpp_session_insufficient_balance',
  challenge_expired: 'mpp_session_challenge_expired',
  invalid_return_invoice: 'mpp_session_invalid_return_invoice',
} as const satisfies Record<SessionFailure, string>;

export type SessionReason = (typeof SESSION_REASON)[SessionFailure];
export type SessionManagement = 'mpp_session_top_up' | 'mpp_session_close';

/** The session failure a reason names (the render maps it back to the spec's problem type). */
export function sessionFailureOf(reason: string): SessionFailure | undefined {
  return (Object.keys(SESSION_REASON) as SessionFailure[]).find((k) => SESSION_REASON[k] === reason);
}

/**
 * What a session challenge's id binds: the route, or the plan, whose balance the deposit buys (not the method or
 * path: the spec lets a topUp target another protected resource of the realm). `*` is no HTTP method or path.
 */
export function sessionScope(route: Pick<RouteConfig, 'id' | 'plan'>): MppScope {
  return { routeId: soldScope(route), method: '*', path: '*' };
}

export function sessionLedgerDeps(deps: Pick<DecideDeps, 'store' | 'rootKeys' | 'storeTimeoutMs'>, extra: Partial<SessionLedgerDeps> = {}): SessionLedgerDeps {
  return { store: deps.store, masters: deps.rootKeys, storeTimeoutMs: deps.storeTimeoutMs, ...extra };
}

const refuse = (route: RouteConfig, f: SessionFailure | SessionRefusal, detail?: string): Decision => ({ outcome: 'invalid', route, reason: SESSION_REASON[f], ...(detail ? { detail } : {}) });

/** Decides a request carrying `Authorization: Payment` (a session credential) on a balance route offering mpp. */
export async function decideSession(req: GateRequest & { path: string }, route: RouteConfig, deps: DecideDeps, clock: Clock, now: number): Promise<Decision> {
  const v = verifySessionCredential(req.credentials.authorization!, { masters: deps.rootKeys, realm: deps.realm ?? deps.service, scope: sessionScope(route), now });
  if (!v.ok) return refuse(route, v.failure);
  const scopeId = soldScope(route);
  const ledger = sessionLedgerDeps(deps, { idleSecs: route.sessionIdleSecs });
  const unavailable: Decision = { outcome: 'unavailable', route, reason: 'store_unavailable' };
  const sessionId = v.v.sessionId;
  // A revoked session opens nothing and takes no top-up; its close (a refund to the invoice bound at open) stays possible.
  if (v.v.action !== 'close' && deps.isRevoked) {
    try {
      clock.waitingOn = 'store_unavailable';
      if (await deps.isRevoked(sessionId, sessionId)) return { outcome: 'invalid', route, reason: 'revoked' };
    } catch {
      return unavailable;
    }
  }
  if (v.v.action === 'topUp' || v.v.action === 'close') {
    // Only a session that exists here, open, on this route or plan is managed (the render does the work and
    // checks again); anything else is refused now, under the invoice rate limit like every refusal.
    try {
      const s = await checkSession(ledger, sessionId, scopeId, { peek: v.v.action });
      if (!s.ok) return refuse(route, s.failure);
      // A deposit already credited to another session is refused here too (not only by the render).
      if (v.v.action === 'topUp') {
        const held = await withTimeout(deps.store.get(storeKeys.mppDeposit(v.v.depositHash)), deps.storeTimeoutMs, 'store get');
        if (held !== undefined && held !== sessionId) return refuse(route, 'unknown_challenge');
      }
    } catch {
      return unavailable;
    }
    return { outcome: 'management', route, reason: v.v.action === 'topUp' ? 'mpp_session_top_up' : 'mpp_session_close' };
  }
  let key: string;
  if (v.v.action === 'open') {
    // Open verification steps 5-7: the deposit invoice (ours) is for the amount the challenge named, and the
    // return invoice is an amountless invoice on its network that has not expired.
    const dep = decodeFacts(deps.decodeInvoice, v.v.depositInvoice);
    if (!dep || dep.amountMsat !== v.v.depositMsat || v.v.depositMsat < v.v.unitMsat) return refuse(route, 'unknown_challenge');
    const ret = checkReturnInvoice(decodeFacts(deps.decodeInvoice, v.v.returnInvoice!), dep, now);
    if (!ret.ok) return refuse(route, ret.failure, ret.detail);
    try {
      const r = await openSession(ledger, { sessionId, scopeId, returnInvoice: v.v.returnInvoice!, depositMsat: v.v.depositMsat });
      if (!r.ok) return refuse(route, r.failure);
      if (r.credited) deps.onCredit?.({ kind: 'sale', msat: v.v.depositMsat, id: sessionId }, { route, tokenId: sessionId, paymentHash: sessionId });
    } catch {
      return unavailable;
    }
    key = storeKeys.mppSessionBalance(sessionId);
  } else {
    try {
      const s = await checkSession(ledger, sessionId, scopeId);
      if (!s.ok) return refuse(route, s.failure);
      key = s.balanceKey;
    } catch {
      return unavailable;
    }
  }
  deps.onSessionUse?.(sessionId, route);
  return drawSession(req, route, deps, clock, key, sessionId, now);
}

function decodeFacts(decode: DecideDeps['decodeInvoice'], bolt11: string): DecodedInvoiceFacts | undefined {
  try {
    return decode?.(bolt11);
  } catch {
    return undefined;
  }
}

/** This request's price drawn from the session's balance (as balance.ts draws an L402 balance). */
async function drawSession(req: GateRequest & { path: string }, route: RouteConfig, deps: DecideDeps, clock: Clock, key: string, sessionId: string, now: number): Promise<Decision> {
  const store = deps.store;
  const unavailable: Decision = { outcome: 'unavailable', route, reason: 'store_unavailable' };
  if (!store.drawBalance) return unavailable;
  const price = deps.price ? (await deps.price(route, req.path)).amountMsat : route.amountMsat;
  const left = () => Math.min(deps.storeTimeoutMs, clock.deadlineAt - Date.now());
  // nginx's retry of this request (another l402d) finds this draw and does not draw again; an upstream
  // failure gives exactly this request's draw back.
  const drawId = ownRequestId(req.requestId) ?? randomBytes(16).toString('hex');
  const owner = randomBytes(12).toString('base64url');
  try {
    clock.waitingOn = 'store_unavailable';
    if (clock.passed || Date.now() >= clock.deadlineAt) throw new Error('deadline');
    const r = await withTimeout(store.drawBalance(key, price, drawId, owner, DRAW_HOLD_SECS), left(), 'balance draw');
    if (r.ok && clock.passed) throw new Error('draw landed after the deadline');
    if (!r.ok) return refuse(route, 'insufficient_balance');
    return {
      outcome: 'allow',
      route,
      reason: 'paid',
      rail: 'lightning',
      tokenId: sessionId,
      paymentHash: sessionId,
      singleUse: false,
      balanceMsat: r.balanceMsat,
      receipt: ['Payment-Receipt', sessionReceipt(sessionId, now)],
      ...(route.capabilities ? { capabilities: [...route.capabilities] } : {}),
    };
  } catch {
    // Answered 503, so not served: a draw that lands anyway goes back, only while it is still this attempt's.
    void abandonDraw(store, key, drawId, owner);
    return unavailable;
  }
}

/**
 * The balance key a session credential of this request (open or bearer, verified) draws on: for giving back
 * this request's draw after an upstream failure. Expiry does not matter here (now = 0): only a draw recorded
 * under this very request's id is ever given back.
 */
export function sessionDrawKey(req: GateRequest & { path: string }, route: RouteConfig, masters: readonly Buffer[], realm: string): string | undefined {
  const v = verifySessionCredential(req.credentials.authorization!, { masters, realm, scope: sessionScope(route), now: 0 });
  if (!v.ok || (v.v.action !== 'open' && v.v.action !== 'bearer')) return undefined;
  return storeKeys.mppSessionBalance(v.v.sessionId);
}

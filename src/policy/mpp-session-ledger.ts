// MPP Lightning sessions (draft-lightning-session-00) on the balance store: the session's record (open,
// closing, closed; the route or plan it draws on; its return invoice; an HMAC tag binding the three to its id)
// and its balance (the prepaid-balance ledger: the open deposit is its first credit, a top-up another, a
// request a draw). Called after mpp-session.ts verified the credential. Never pays twice: only the one close
// that moves the record from open to closing drains the balance and pays, and it pays what it drained (what
// concurrent draws took first is theirs, never refunded).
//
// Served on balance routes that offer mpp (policy/mpp-session-decide.ts, server/mpp-session-render.ts).
import { randomBytes } from 'node:crypto';
import { sessionTag, sessionTagMatches, refundSatsOf, type RefundStatus } from '../protocol/mpp-session.js';
import { storeKeys } from './store-keys.js';
import type { ClaimStore } from './ports.js';
import { withTimeout } from '../util/timeout.js';

export interface SessionLedgerDeps {
  store: ClaimStore;
  /** The master keys, current first: the tag is written with the first, checked against all. */
  masters: readonly Buffer[];
  storeTimeoutMs: number;
  /** Pays the refund (LightningBackend.payInvoice); absent: the backend cannot pay, every refund is "failed". */
  payInvoice?: (req: { bolt11: string; amountMsat: number }) => Promise<unknown>;
  /** Told of a refund that did not complete (the spec's "SHOULD log"): never the return invoice's secret parts. */
  onRefundFailed?: (sessionId: string, refundSats: number, why: string) => void;
  /**
   * The idle timeout (seconds; 0 or absent: none). open, bearer and topUp mark the session active for this long
   * (storeKeys.mppActive); a session not marked is idle: refused as closed, and closed by the server with its
   * refund (expireSession).
   */
  idleSecs?: number;
}

interface SessionRecord {
  s: 'open' | 'closing' | 'closed';
  /** The route id, or `plan:<name>`, the session was opened on and draws on. */
  scope: string;
  ret: string;
  tag: string;
  /** Unix seconds of the first open: a session younger than its idle timeout is never idle (its first mark may be on its way). */
  at?: number;
  refundSats?: number;
  refundStatus?: RefundStatus;
}

export type SessionRefusal = 'session_not_found' | 'session_closed' | 'unknown_challenge';

/** How many times close re-reads the balance when a concurrent draw changed it under its drain. */
const DRAIN_TRIES = 16;
/** How long the close's own draw record is kept (nobody gives it back: it has no request id). */
const DRAIN_HOLD_SECS = 60;

const encode = (r: SessionRecord): string => JSON.stringify(r);

function decode(v: string | undefined): SessionRecord | undefined {
  if (v === undefined) return undefined;
  try {
    const r = JSON.parse(v) as Partial<SessionRecord>;
    if ((r.s === 'open' || r.s === 'closing' || r.s === 'closed') && typeof r.scope === 'string' && typeof r.ret === 'string' && typeof r.tag === 'string') return r as SessionRecord;
  } catch {
    /* refused below */
  }
  return undefined;
}

async function load(d: SessionLedgerDeps, sessionId: string, scopeId: string): Promise<{ raw: string; rec: SessionRecord } | SessionRefusal> {
  const raw = await withTimeout(d.store.get(storeKeys.mppSession(sessionId)), d.storeTimeoutMs, 'store get');
  const rec = decode(raw);
  // A record whose tag does not bind it to this id, scope and return invoice was not written by us for it.
  if (!rec || !sessionTagMatches(d.masters, { sessionId, scopeId: rec.scope, returnInvoice: rec.ret }, rec.tag)) return 'session_not_found';
  // Another route or plan's session is not one here.
  if (rec.scope !== scopeId) return 'session_not_found';
  if (rec.s !== 'open') return 'session_closed';
  return { raw: raw!, rec };
}

/** Marks the session active for the idle timeout (open, bearer, topUp). */
async function touch(d: SessionLedgerDeps, sessionId: string): Promise<void> {
  if (!d.idleSecs) return;
  if (!d.store.set) throw new Error('this store cannot keep an idle timeout');
  await withTimeout(d.store.set(storeKeys.mppActive(sessionId), '1', d.idleSecs), d.storeTimeoutMs, 'store set');
}

/** Idle: the idle timeout passed since its last open, bearer or topUp (its activity mark is gone). */
async function idle(d: SessionLedgerDeps, sessionId: string, rec: SessionRecord): Promise<boolean> {
  if (!d.idleSecs) return false;
  if (rec.at !== undefined && Math.floor(Date.now() / 1000) - rec.at < d.idleSecs) return false;
  return (await withTimeout(d.store.get(storeKeys.mppActive(sessionId)), d.storeTimeoutMs, 'store get')) === undefined;
}

async function claimDeposit(d: SessionLedgerDeps, depositHash: string, sessionId: string): Promise<boolean> {
  const key = storeKeys.mppDeposit(depositHash);
  if (await withTimeout(d.store.claimOnce(key, undefined, sessionId), d.storeTimeoutMs, 'store claim')) return true;
  // Already claimed: fine when by this session (a retry), never when by another.
  return (await withTimeout(d.store.get(key), d.storeTimeoutMs, 'store get')) === sessionId;
}

async function credit(d: SessionLedgerDeps, sessionId: string, depositHash: string, msat: number): Promise<{ credited: boolean; balanceMsat: number }> {
  return withTimeout(d.store.creditBalance!(storeKeys.mppSessionBalance(sessionId), msat, `deposit:${depositHash}`), d.storeTimeoutMs, 'balance credit');
}

/**
 * open: the deposit (its payment hash is the session id) is credited once, to this session only; the first
 * open fixes the scope and return invoice (a repeated open keeps them). A closed session is not reopened.
 */
export async function openSession(
  d: SessionLedgerDeps,
  o: { sessionId: string; scopeId: string; returnInvoice: string; depositMsat: number },
): Promise<{ ok: true; balanceMsat: number; credited: boolean } | { ok: false; failure: SessionRefusal }> {
  if (!d.store.creditBalance || !d.store.drawBalance) throw new Error('this store keeps no balances');
  if (!(await claimDeposit(d, o.sessionId, o.sessionId))) return { ok: false, failure: 'unknown_challenge' };
  const tag = sessionTag(d.masters[0]!, { sessionId: o.sessionId, scopeId: o.scopeId, returnInvoice: o.returnInvoice });
  const created = await withTimeout(d.store.claimOnce(storeKeys.mppSession(o.sessionId), undefined, encode({ s: 'open', scope: o.scopeId, ret: o.returnInvoice, tag, at: Math.floor(Date.now() / 1000) })), d.storeTimeoutMs, 'store claim');
  const cur = await load(d, o.sessionId, o.scopeId);
  if (typeof cur === 'string') return { ok: false, failure: cur };
  // The first open starts the idle clock; a repeated open of an idle session is refused like a bearer.
  if (!created && (await idle(d, o.sessionId, cur.rec))) return { ok: false, failure: 'session_closed' };
  await touch(d, o.sessionId);
  return { ok: true, ...(await credit(d, o.sessionId, o.sessionId, o.depositMsat)) };
}

/**
 * bearer: the session is open, ours, of this scope and not idle (the draw itself is the balance ledger's,
 * drawBalance); it is marked active again. `o.peek`: only look (a topUp's or close's check before the render
 * performs it): an idle session still counts as open for a close, which closes it like the server would.
 */
export async function checkSession(d: SessionLedgerDeps, sessionId: string, scopeId: string, o: { peek?: 'topUp' | 'close' } = {}): Promise<{ ok: true; balanceKey: string } | { ok: false; failure: SessionRefusal }> {
  const cur = await load(d, sessionId, scopeId);
  if (typeof cur === 'string') return { ok: false, failure: cur };
  if (o.peek !== 'close' && (await idle(d, sessionId, cur.rec))) return { ok: false, failure: 'session_closed' };
  if (!o.peek) await touch(d, sessionId);
  return { ok: true, balanceKey: storeKeys.mppSessionBalance(sessionId) };
}

/**
 * The server-initiated close of an idle session (the spec's "Server-Initiated Close"): when the session is
 * open and idle, it is closed exactly as a client's close (marked closing first, then the unspent part refunded
 * once). `not_open`: no session, or closed (or closing) already; `active`: not idle.
 */
export async function expireSession(d: SessionLedgerDeps, sessionId: string): Promise<'not_open' | 'active' | { refundSats: number; refundStatus: RefundStatus }> {
  const rec = decode(await withTimeout(d.store.get(storeKeys.mppSession(sessionId)), d.storeTimeoutMs, 'store get'));
  if (!rec || rec.s !== 'open') return 'not_open';
  if (!d.idleSecs || !(await idle(d, sessionId, rec))) return 'active';
  const r = await closeSession(d, { sessionId, scopeId: rec.scope });
  return r.ok ? { refundSats: r.refundSats, refundStatus: r.refundStatus } : 'not_open';
}

/**
 * topUp: a new deposit invoice credits one open session, once. A top-up that races a close: when the record
 * is no longer open once the credit landed, the credit is taken back out if the close's drain did not take it
 * (then it was part of the refund), and the deposit's claim is given back, so its payer can open a new session
 * with it; the answer is `session_closed` either way. Never credits a closed session for good.
 */
export async function topUpSession(
  d: SessionLedgerDeps,
  o: { sessionId: string; scopeId: string; depositHash: string; depositMsat: number },
): Promise<{ ok: true; balanceMsat: number; credited: boolean } | { ok: false; failure: SessionRefusal }> {
  if (!d.store.creditBalance || !d.store.drawBalance) throw new Error('this store keeps no balances');
  const cur = await load(d, o.sessionId, o.scopeId);
  if (typeof cur === 'string') return { ok: false, failure: cur };
  if (await idle(d, o.sessionId, cur.rec)) return { ok: false, failure: 'session_closed' };
  if (!(await claimDeposit(d, o.depositHash, o.sessionId))) return { ok: false, failure: 'unknown_challenge' };
  await touch(d, o.sessionId);
  const r = await credit(d, o.sessionId, o.depositHash, o.depositMsat);
  const after = await load(d, o.sessionId, o.scopeId);
  if (typeof after !== 'string') return { ok: true, ...r };
  if (r.credited) {
    const undo = await withTimeout(d.store.drawBalance(storeKeys.mppSessionBalance(o.sessionId), o.depositMsat, `undo:${o.depositHash}`, 'undo', DRAIN_HOLD_SECS), d.storeTimeoutMs, 'balance draw');
    if (undo.ok) await withTimeout(d.store.delIfValue(storeKeys.mppDeposit(o.depositHash), o.sessionId), d.storeTimeoutMs, 'store del');
  }
  return { ok: false, failure: after };
}

/** What a closed session's close paid (for a repeated close, told by the session's own preimage holder). */
export async function closedSession(d: SessionLedgerDeps, sessionId: string, scopeId: string): Promise<{ refundSats: number; refundStatus: RefundStatus } | undefined> {
  const raw = await withTimeout(d.store.get(storeKeys.mppSession(sessionId)), d.storeTimeoutMs, 'store get');
  const rec = decode(raw);
  if (!rec || rec.scope !== scopeId || rec.s !== 'closed' || rec.refundSats === undefined || rec.refundStatus === undefined) return undefined;
  if (!sessionTagMatches(d.masters, { sessionId, scopeId: rec.scope, returnInvoice: rec.ret }, rec.tag)) return undefined;
  return { refundSats: rec.refundSats, refundStatus: rec.refundStatus };
}

/**
 * close: the one caller that moves the record from open to closing drains the balance (a draw of all of it,
 * retried while concurrent draws change it) and pays the whole satoshis drained to the return invoice bound
 * at open, once, best effort (a failed payment is not retried: the spec's single attempt). Every other close,
 * concurrent or later, is refused `session_closed` and pays nothing.
 */
export async function closeSession(
  d: SessionLedgerDeps,
  o: { sessionId: string; scopeId: string },
): Promise<{ ok: true; refundSats: number; refundStatus: RefundStatus } | { ok: false; failure: SessionRefusal }> {
  if (!d.store.drawBalance || !d.store.getBalance) throw new Error('this store keeps no balances');
  const cur = await load(d, o.sessionId, o.scopeId);
  if (typeof cur === 'string') return { ok: false, failure: cur };
  const closingRaw = encode({ ...cur.rec, s: 'closing' });
  if (!(await withTimeout(d.store.replaceIfValue(storeKeys.mppSession(o.sessionId), cur.raw, closingRaw), d.storeTimeoutMs, 'store replace'))) {
    return { ok: false, failure: 'session_closed' };
  }
  const key = storeKeys.mppSessionBalance(o.sessionId);
  let drained = 0;
  for (let i = 0; i < DRAIN_TRIES; i++) {
    const b = await withTimeout(d.store.getBalance(key), d.storeTimeoutMs, 'balance get');
    if (b <= 0) break;
    const r = await withTimeout(d.store.drawBalance(key, b, `close:${randomBytes(12).toString('hex')}`, 'close', DRAIN_HOLD_SECS), d.storeTimeoutMs, 'balance draw');
    if (r.ok) {
      drained = b;
      break;
    }
  }
  const refundSats = refundSatsOf(drained);
  let refundStatus: RefundStatus = 'skipped';
  if (refundSats > 0) {
    if (!d.payInvoice) {
      refundStatus = 'failed';
      d.onRefundFailed?.(o.sessionId, refundSats, 'this backend cannot pay');
    } else {
      try {
        await d.payInvoice({ bolt11: cur.rec.ret, amountMsat: refundSats * 1000 });
        refundStatus = 'succeeded';
      } catch (e) {
        refundStatus = 'failed';
        d.onRefundFailed?.(o.sessionId, refundSats, e instanceof Error ? e.message.slice(0, 200) : 'payment failed');
      }
    }
  }
  // Best effort: the record is closed either way (closing refuses every action as closed does).
  await withTimeout(d.store.replaceIfValue(storeKeys.mppSession(o.sessionId), closingRaw, encode({ ...cur.rec, s: 'closed', refundSats, refundStatus })), d.storeTimeoutMs, 'store replace').catch(() => undefined);
  return { ok: true, refundSats, refundStatus };
}

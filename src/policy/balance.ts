// Prepaid balances (access: balance). A credential sold on a balance route (its minted `balance_msat`
// caveat says how much its payment bought) opens every route of its plan while its balance lasts: each
// request draws that route's price, atomically in the store (BalanceLedger). The balance lives in the store
// under the credential's token id, never in the credential. An empty balance answers 402 with a top-up
// invoice bound to the same token id (a store record written when it is minted, gate.ts); paying it and
// presenting `L402 <same macaroon>:<top-up preimage>` credits it once (keyed by its payment hash).
//
// Order of checks: the credential is authenticated first (signature, caveats, expiry, route or plan, preimage
// or top-up binding); only then is anything credited or drawn. A check that refuses a credential outright
// (revocation) belongs before drawFromBalance.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { storeKeys } from './store-keys.js';
import { cashuPaymentId, TAKEN_RECORD_SECS, takenMsat, takenRecord } from './cashu-taken.js';
import { ownRequestId } from './claims.js';
import type { CashuAcceptor, ClaimStore } from './ports.js';
import type { RouteConfig } from './route-config.js';
import type { Decision, GateRequest } from './decide.js';
import type { Price } from './pricing.js';
import { sleep, withTimeout } from '../util/timeout.js';

/** How long a draw stays recorded so an upstream failure can give it back (longer than any upstream wait). */
export const DRAW_HOLD_SECS = 3600;

/** A balance credential, authenticated (decide.ts). */
export interface BalanceCredential {
  tokenId: Buffer;
  paymentHash: Buffer;
  /** msat the first payment bought (the minted balance_msat). */
  soldMsat: number;
  /** This request proves the first payment (its preimage matches the macaroon's payment hash). */
  saleProven: boolean;
  /** A preimage that is not the first payment's: a top-up's, if the store says it was minted for this token. */
  topupPreimage?: Buffer;
  /** An X-Cashu token sent with the credential: its value tops the balance up. */
  cashuToken?: string;
  /** Unix seconds: the expiry l402d minted, if any; the balance lives as long (plus a grace). */
  mintedValidUntil?: number;
  /** Unix seconds: the earliest expiry of all caveats. */
  validUntil?: number;
  now: number;
}

export interface BalanceDeps {
  store: ClaimStore;
  storeTimeoutMs: number;
  price?: (route: RouteConfig, path: string) => Promise<Price>;
  cashu?: CashuAcceptor;
  payeeFor?: (route: RouteConfig, path: string) => Promise<string | undefined>;
  /** Told of each credit that landed (once per payment, in whichever process credited it): the sales ledger. */
  onCredit?: (credit: BalanceCredit, of: { route: RouteConfig; tokenId: string; paymentHash: string; mintedValidUntil?: number }) => void;
}

export interface BalanceClock {
  deadlineAt: number;
  signal: AbortSignal;
  /** Whether the deadline has passed, by the clock even before its timer ran, or nginx went away (see decide.ts Clock). */
  readonly passed: boolean;
}

/** Balances (and their credit marks) outlive their credential's minted expiry by this much. */
const BALANCE_GRACE_SECS = 300;

/** The store's lifetime for a balance, its credit marks and its top-up records; undefined: for ever. */
export function balanceTtlSecs(mintedValidUntil: number | undefined, now: number): number | undefined {
  return mintedValidUntil === undefined ? undefined : Math.max(1, mintedValidUntil - now + BALANCE_GRACE_SECS);
}

/** The top-up record's value: `<token id hex>:<msat>`. */
export function topupRecord(tokenId: Buffer, msat: number): string {
  return `${tokenId.toString('hex')}:${msat}`;
}

function parseTopup(v: string | undefined): { tokenId: Buffer; msat: number } | undefined {
  const m = v === undefined ? null : /^([0-9a-f]{64}):([1-9]\d{0,15})$/.exec(v);
  return m ? { tokenId: Buffer.from(m[1]!, 'hex'), msat: Number(m[2]) } : undefined;
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest();

/** A credit this decision added to a balance (the gate records it as a sale). */
export interface BalanceCredit {
  /** `sale`: the credential's own payment; `topup`: a top-up invoice; `cashu`: an X-Cashu token. */
  kind: 'sale' | 'topup' | 'cashu';
  msat: number;
  /** sale, topup: the invoice's payment hash; cashu: SHA-256 of the token (hex). */
  id: string;
}

export async function drawFromBalance(req: GateRequest & { path: string }, route: RouteConfig, c: BalanceCredential, deps: BalanceDeps, clock: BalanceClock): Promise<Decision> {
  const store = deps.store;
  const unavailable: Decision = { outcome: 'unavailable', route, reason: 'store_unavailable' };
  if (!store.drawBalance || !store.creditBalance) return unavailable;
  const key = storeKeys.balance(c.tokenId);
  const ttl = balanceTtlSecs(c.mintedValidUntil, c.now);
  const price = deps.price ? (await deps.price(route, req.path)).amountMsat : route.amountMsat;
  const left = () => Math.min(deps.storeTimeoutMs, clock.deadlineAt - Date.now());
  // nginx's retry of this request (another l402d) finds this draw and does not draw again.
  const ownId = ownRequestId(req.requestId);
  const drawId = ownId ?? randomBytes(16).toString('hex');
  const owner = randomBytes(12).toString('base64url');
  const credit = async (msat: number, kind: BalanceCredit['kind'], id: string, ms = left()) => {
    const r = await withTimeout(store.creditBalance!(key, msat, `${kind}:${id}`, ttl), ms, 'balance credit');
    if (r.credited) deps.onCredit?.({ kind, msat, id }, { route, tokenId: c.tokenId.toString('hex'), paymentHash: c.paymentHash.toString('hex'), mintedValidUntil: c.mintedValidUntil });
    return r.balanceMsat;
  };
  try {
    if (c.topupPreimage) {
      const hash = sha256(c.topupPreimage);
      const t = parseTopup(await withTimeout(store.get(storeKeys.balanceTopup(hash)), left(), 'store get'));
      // Only a top-up minted for this very token credits it: any other preimage is just a wrong one.
      if (!t || !timingSafeEqual(t.tokenId, c.tokenId)) return { outcome: 'invalid', route, reason: 'wrong_preimage' };
      await credit(t.msat, 'topup', hash.toString('hex'));
    }
    if (c.cashuToken !== undefined) {
      // Ecash sent with the credential tops it up: the rail's own acceptance (swapped at the mint, double
      // spends refused), at least this request's price; its whole value is credited, once per token.
      if (!deps.cashu) return { outcome: 'cashu_rejected', route, reason: 'cashu_rejected', detail: 'this gate takes no Cashu' };
      const cashuId = cashuPaymentId(c.cashuToken);
      // nginx's retry of this very request (after the l402d that had it went away) finds the ecash its first
      // attempt took, by the request id: the rail would now refuse that ecash as spent, but it is this
      // request's own payment, credited (again: idempotent, keyed by the token) rather than refused.
      const taken = ownId === undefined ? undefined : storeKeys.balanceCashuTaken(c.tokenId, ownId);
      let msat = taken === undefined ? undefined : takenMsat(await withTimeout(store.get(taken), left(), 'store get'), cashuId);
      if (msat === undefined) {
        const tenant = deps.payeeFor ? await deps.payeeFor(route, req.path) : route.lnurlAddr;
        const r = await deps.cashu.accept(c.cashuToken, price, { routeId: route.id, tenant }, clock.signal);
        if (!r.ok) return r.status === 400 ? { outcome: 'cashu_rejected', route, reason: 'cashu_rejected', detail: r.reason } : { outcome: 'unavailable', route, reason: 'cashu_unavailable' };
        msat = r.amountMsat;
        // Recorded before the credit, so a retry also credits ecash whose credit never landed here.
        if (taken !== undefined) {
          await withTimeout(store.claimOnce(taken, TAKEN_RECORD_SECS, takenRecord(cashuId, msat)), deps.storeTimeoutMs, 'store claim').catch(() => {
            // The credit below is still made (or retried): only nginx's retry of this request misses it.
          });
        }
      }
      const accepted = msat;
      try {
        await credit(accepted, 'cashu', cashuId);
      } catch (e) {
        // The ecash is the gate's now: its credit is retried in the background (keyed by the token, so once).
        void retryCredit(() => credit(accepted, 'cashu', cashuId, deps.storeTimeoutMs));
        throw e;
      }
    }
    // Ecash on a credential never drawn yet: its first payment goes in first, so what is left is told right.
    if (c.cashuToken !== undefined && c.saleProven) await credit(c.soldMsat, 'sale', c.paymentHash.toString('hex'));
    if (clock.passed || Date.now() >= clock.deadlineAt) throw new Error('deadline');
    let r = await withTimeout(store.drawBalance(key, price, drawId, owner, DRAW_HOLD_SECS), left(), 'balance draw');
    // The first payment is credited when it is first needed (once: keyed by its payment hash).
    // Whoever credits it (this request or a concurrent one), the draw is tried again when it now fits.
    if (!r.ok && c.saleProven && (await credit(c.soldMsat, 'sale', c.paymentHash.toString('hex'))) >= price) {
      r = await withTimeout(store.drawBalance(key, price, drawId, owner, DRAW_HOLD_SECS), left(), 'balance draw');
    }
    // Drawn after the deadline: the answer is 503 (not served), so the draw goes back.
    if (r.ok && clock.passed) throw new Error('draw landed after the deadline');
    if (!r.ok) return { outcome: 'challenge', route, reason: 'balance_empty', balanceMsat: r.balanceMsat };
    return { outcome: 'allow', route, reason: 'paid', rail: 'lightning', tokenId: c.tokenId.toString('hex'), paymentHash: c.paymentHash.toString('hex'), validUntil: c.validUntil, mintedValidUntil: c.mintedValidUntil, singleUse: false, balanceMsat: r.balanceMsat };
  } catch {
    // Answered 503: a draw that lands (or landed) anyway is given back, only if it is still this attempt's.
    // (Credits stay: each is keyed by its payment, so the payer's retry finds it credited.)
    void abandonDraw(store, key, drawId, owner);
    return unavailable;
  }
}

/** Never rejects: retries an idempotent credit for a while (ecash already accepted must reach its balance). */
async function retryCredit(again: () => Promise<unknown>, everyMs = 500, forMs = 30_000): Promise<void> {
  const until = Date.now() + forMs;
  for (;;) {
    await sleep(everyMs, { ref: false });
    try {
      await again();
      return;
    } catch {
      if (Date.now() > until) return;
    }
  }
}

/** Never rejects: retries the refund of this attempt's draw for a while (a slow store may land it late). */
export async function abandonDraw(store: ClaimStore, key: string, drawId: string, owner: string, everyMs = 500, forMs = 30_000): Promise<void> {
  const until = Date.now() + forMs;
  for (;;) {
    try {
      await withTimeout(store.refundDraw!(key, drawId, owner), everyMs * 2, 'refund draw');
      return;
    } catch {
      if (Date.now() > until) return;
      await sleep(everyMs, { ref: false });
    }
  }
}

/** Gives back the draw this request (nginx's request id) made on this balance, after an upstream failure. */
export async function refundRequestDraw(store: ClaimStore, tokenId: Buffer, requestId: string, storeTimeoutMs: number): Promise<'released' | 'not_claimed'> {
  if (!store.refundDraw) return 'not_claimed';
  const r = await withTimeout(store.refundDraw(storeKeys.balance(tokenId), requestId), storeTimeoutMs, 'refund draw');
  return r.refunded ? 'released' : 'not_claimed';
}

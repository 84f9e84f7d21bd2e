// The decision core: request facts in, outcome out. No HTTP, no backend; the store is the only I/O,
// reached through the ClaimStore port and bounded by a timeout (fail closed).
import { decodeIdentifier, mintedCaveatCount } from '../protocol/identifier.js';
import { caveatPredicates, decodeMacaroon, MacaroonFormatError, verifySignature } from '../protocol/macaroon.js';
import { checkCaveats, preimageMatches } from '../protocol/caveats.js';
import type { CredentialHeaders, L402Credential } from '../protocol/l402-header.js';
import { requestCredential } from './credential-cookie.js';
import { checkNgxL402Caveats, decodeMacaroonV1, looksLikeV1 } from '../protocol/ngx-l402.js';
import { storeKeys } from './store-keys.js';
import { parseCashuCredential } from '../protocol/cashu-credential.js';
import { abandonClaim, claimOwnedBy, ownRequestId, requestClaimToken } from './claims.js';
import { signedByTokenKey } from '../protocol/root-key.js';
import type { CashuAcceptor, ClaimStore } from './ports.js';
import { soldScope, type RouteConfig } from './route-config.js';
import { drawFromBalance, type BalanceCredential, type BalanceDeps } from './balance.js';
import type { Price } from './pricing.js';
import { RouteTable } from './routes.js';
import { requiredCapabilities } from './capabilities.js';
import { checkInput, type VerifiedMacaroons } from './verified-macaroons.js';
import { withTimeout } from '../util/timeout.js';
import { DECISION_DEADLINE_MS } from './budget.js';
import { authenticateOtherScheme, otherSchemeOf, type OtherSchemeReason } from './pay-schemes.js';
import { decideSession, type SessionManagement, type SessionReason } from './mpp-session-decide.js';
import type { DecodedInvoiceFacts } from '../protocol/mpp-session.js';
import { cashuPaymentId, TAKEN_RECORD_SECS, takenMsat, takenRecord } from './cashu-taken.js';

export interface GateRequest {
  /** Normalised path (see normalizePath); undefined when the path was unusable. */
  path: string | undefined;
  /** The raw request URI (path and query) as the client sent it, when known. */
  uri?: string;
  method: string;
  clientAddr?: string;
  /**
   * This client request's identity (nginx's $request_id, 32 lowercase hex), shared by nginx's retries of the
   * same auth subrequest: a single-use claim made under it is this request's, not a replay's. Set only from
   * nginx's own header (nginx mode) or by the standalone proxy; anything else means a random owner.
   */
  requestId?: string;
  /** The client's connection is HTTPS (nginx's $scheme, or standalone's own TLS): MPP and x402 need it. */
  secure?: boolean;
  /**
   * The route id nginx's location pinned (`set $l402_route_pin <id>;`, sent by the snippets, never a client's
   * header): only that route decides, and a path it does not cover has no route. Undefined: lookup by path.
   */
  routePin?: string;
  /** The Host the client asked for (nginx's $host), when known: x402's resource.url. */
  host?: string;
  /** `cookie`: the Cookie header; the route's credential cookie is read only when no header carries one. x402: PAYMENT-SIGNATURE (or X-PAYMENT). */
  credentials: CredentialHeaders & { xCashu?: string; cookie?: string; paymentSignature?: string };
}

export type InvalidReason =
  | 'malformed_credential'
  | 'malformed_macaroon'
  | 'unknown_identifier'
  | 'bad_signature'
  | 'expired'
  | 'wrong_route'
  | 'wrong_path'
  | 'wrong_method'
  | 'wrong_service'
  | 'wrong_preimage'
  | 'unknown_caveat'
  | 'malformed_caveat'
  | 'missing_preimage'
  | 'already_used'
  | 'auto_detect_off'
  | 'missing_capability'
  | 'revoked'
  | OtherSchemeReason
  | SessionReason;

export type { CashuAcceptor } from './ports.js';

/**
 * How long a decision may take (default; `timeouts.decision_ms`), counted from when nginx sent the auth
 * subrequest: nginx waits for this plus a margin (policy/budget.ts), so past it nginx may have answered 503
 * already. A decision still waiting then answers 503 itself, no single-use claim is kept (L402, P2PK), and a
 * Cashu swap still running is credited to the payer's retry, rather than spending a payment nobody hears of.
 */
export { DECISION_DEADLINE_MS } from './budget.js';

export type Decision =
  | { outcome: 'allow'; route: RouteConfig; reason: 'paid'; rail: 'lightning'; tokenId: string; /** 64 hex. */ paymentHash: string; /** Unix seconds, if the credential expires. */ validUntil?: number; /** The expiry l402d minted, if any. */ mintedValidUntil?: number; /** Spent by this request. */ singleUse: boolean; /** Capabilities granted (sold, narrowed by appended caveats), if any were sold. */ capabilities?: string[]; /** MPP's Payment-Receipt or x402's PAYMENT-RESPONSE, for the client. */ receipt?: [string, string]; /** Set by the gate: no revocation made before this (ms) is missed by this decision. */ revocationsAt?: number; /** access: balance: msat left after this request's draw. */ balanceMsat?: number }
  | { outcome: 'allow'; route: RouteConfig; reason: 'paid'; rail: 'cashu'; amountMsat: number; /** SHA-256 of the token (hex): one payment, however often nginx retried its request. */ paymentId?: string }
  | { outcome: 'cashu_rejected'; route: RouteConfig; reason: 'cashu_rejected'; detail: string }
  | { outcome: 'allow'; route: RouteConfig; reason: 'dry_run'; dryRun: DryRunReport }
  | { outcome: 'challenge'; route: RouteConfig; reason: 'no_credential' | 'payment_pending' }
  | { outcome: 'challenge'; route: RouteConfig; reason: 'balance_empty'; /** msat left, less than this request draws. */ balanceMsat: number }
  | { outcome: 'invalid'; route: RouteConfig; reason: InvalidReason; detail?: string }
  | { outcome: 'unavailable'; route?: RouteConfig; reason: 'store_unavailable' | 'backend_unavailable' | 'cashu_unavailable' }
  | { outcome: 'forbidden'; reason: 'no_route' | 'bad_path' }
  | { outcome: 'method_not_allowed'; route: RouteConfig; reason: 'method_not_sold' }
  | { outcome: 'rate_limited'; route: RouteConfig; reason: 'invoice_rate_limited'; retryAfterSecs: number; /** A refused credential's reason (no fresh challenge to carry it). */ detail?: string }
  /** An MPP session's topUp or close, verified: answered by l402d itself (the render performs it), never by the upstream. */
  | { outcome: 'management'; route: RouteConfig; reason: SessionManagement };

export type Outcome = Decision['outcome'];

/** What a dry-run route would have answered; the request passes regardless. */
export interface DryRunReport {
  wouldReturn: 200 | 400 | 401 | 402 | 403 | 405 | 429 | 503;
  reason: string;
  authState: 'missing' | 'valid' | 'invalid';
  retryAfterSecs?: number;
}

const WOULD_RETURN: Record<Exclude<Outcome, 'allow'>, DryRunReport['wouldReturn']> = {
  challenge: 402,
  invalid: 401,
  unavailable: 503,
  forbidden: 403,
  method_not_allowed: 405,
  rate_limited: 429,
  cashu_rejected: 400,
  management: 200,
};

/** What decide() needs of its "the answer can no longer be delivered" signal: an AbortSignal is one. */
export interface GoneSignal {
  readonly aborted: boolean;
  addEventListener(type: 'abort', fn: () => void, o?: { once?: boolean }): void;
  removeEventListener(type: 'abort', fn: () => void): void;
}

export interface DecideDeps {
  /** The `realm` of MPP challenges (the service name by default). */
  realm?: string;
  routes: RouteTable<RouteConfig>;
  service: string;
  /** Current master key first, then previous ones still accepted during a rotation. */
  rootKeys: readonly Buffer[];
  store: ClaimStore;
  storeTimeoutMs: number;
  /**
   * Auto-detect: has the invoice with this payment hash been paid? Bounded and cached by the caller;
   * rejects when the backend cannot answer.
   */
  isSettled?: (paymentHash: Buffer) => Promise<boolean>;
  /** The Cashu rail, when configured. */
  cashu?: CashuAcceptor;
  /** The price a route charges now for a path (static or dynamic); default the route's amount_msat. */
  price?: (route: RouteConfig, path: string) => Promise<Price>;
  /** The Lightning address a request's payment goes to (store overrides, then lnurl_addr); default lnurl_addr. */
  payeeFor?: (route: RouteConfig, path: string) => Promise<string | undefined>;
  /** Default DECISION_DEADLINE_MS (config `timeouts.decision_ms`). */
  deadlineMs?: number;
  /**
   * When the request was sent, ms since the epoch (nginx's `$msec` at its first attempt): the deadline counts
   * from it, not from when this process got to read the request (a stalled l402d reads it late). Default now.
   */
  sentAt?: number;
  /** Aborts when the answer can no longer be delivered (nginx closed the connection): treated as the deadline. */
  signal?: GoneSignal;
  /** What a store failure does to the invoice rate limit: refuse (503) or let the request through. */
  rateLimitOnStoreError?: 'closed' | 'open';
  /** Unix seconds; injectable for tests. */
  now?: () => number;
  /** ngx_l402's ROOT_KEY (raw bytes): its credentials are honoured during a migration. */
  ngxL402RootKey?: Buffer;
  /** A caveat condition l402d does not know, appended by a holder: skipped (the L402 spec; default) or refused. */
  unknownCaveats?: 'skip' | 'reject';
  /** Macaroons already found signed by `rootKeys` (kept by the caller for as long as those keys). */
  verified?: VerifiedMacaroons;
  /**
   * Has the operator revoked this credential (by token id or payment hash)? Rejects when that cannot be known
   * in time: the request is then answered 503, never let through.
   */
  isRevoked?: (tokenId: string, paymentHash: string) => Promise<boolean>;
  /** access: balance: told of each credit that landed on a balance (the sales ledger). */
  onCredit?: BalanceDeps['onCredit'];
  /** MPP sessions: told of each session an open or bearer used (the idle sweeper watches it). */
  onSessionUse?: (sessionId: string, route: RouteConfig) => void;
  /** MPP sessions: reads a BOLT11 invoice's amount, network and expiry (undefined or a throw: not an invoice). */
  decodeInvoice?: (bolt11: string) => DecodedInvoiceFacts | undefined;
}

/** Auto-detect: the invoice a macaroon was issued with, kept while it can be paid (written by the gate). */
export const pendingInvoiceKey = storeKeys.pendingInvoice;
export const claimKey = storeKeys.claim;

/** Keep single-use claims at least as long as the credential could verify; forever when it never expires. */
const CLAIM_GRACE_SECS = 300;

/**
 * Outcomes whose answer mints a fresh invoice (a pending auto-detect poll repeats its invoice). A refused Cashu
 * token's 402 carries an x402 offer (and on a balance route an MPP session offer) of its own, each a backend
 * invoice: limited too (found: garbage in X-Cashu minted one per request past the limit).
 */
function mintsInvoice(d: Decision): boolean {
  return (d.outcome === 'challenge' && (d.reason === 'no_credential' || d.reason === 'balance_empty')) || d.outcome === 'invalid' || d.outcome === 'cashu_rejected';
}

/** The decision's deadline as the steps that wait on something see it. */
export interface Clock {
  deadlineAt: number;
  /** Aborted at the deadline (or when nginx went away): the answer is 503 from then on, whatever lands late. */
  readonly signal: AbortSignal;
  /**
   * Whether the deadline has passed (by the clock, even when its timer has not run yet) or nginx went away,
   * without making an AbortController (one per claim was a share of a decision).
   */
  readonly passed: boolean;
  /** What a decision still waiting at the deadline is waiting for (the 503's reason). */
  waitingOn: 'store_unavailable' | 'backend_unavailable' | 'cashu_unavailable';
}

export function decide(req: GateRequest, deps: DecideDeps): Promise<Decision> {
  const now = Date.now();
  // A sent time in the future (nginx's clock ahead of ours) counts as now: only ever shortens the deadline.
  const deadlineAt = Math.min(now, deps.sentAt !== undefined && Number.isFinite(deps.sentAt) ? deps.sentAt : now) + (deps.deadlineMs ?? DECISION_DEADLINE_MS);
  // The whole decision answers by the deadline. The timer and nginx's close are macrotasks, and a decision
  // that got its last answer before them completes in microtasks: so either the decision's own answer is
  // the one given (the first resolve wins), or every step that lands later sees `clock.passed` and undoes
  // what it took (claims). One promise, settled by whichever comes first (a race of two cost a share of a
  // decision).
  // The deadline's AbortSignal is made only when a step asks for it (a Cashu swap): most decisions finish
  // without one, and making one per request was a measurable share of a decision.
  let gone: AbortController | undefined;
  let passed = false;
  const clock: Clock = {
    deadlineAt,
    waitingOn: 'store_unavailable',
    get signal() {
      if (!gone) {
        gone = new AbortController();
        if (passed) gone.abort();
      }
      return gone.signal;
    },
    // By the wall clock too: the deadline's timer is a macrotask, and an event loop held up (SQLite waiting
    // synchronously for another process's write lock, a long GC pause) resolves a claim in the same turn it
    // lets go, before that timer runs; nginx has answered 503 by then, so what landed must be given back.
    get passed() {
      return passed || Date.now() >= deadlineAt;
    },
  };
  return new Promise<Decision>((resolve, reject) => {
    const done = () => {
      clearTimeout(timer);
      deps.signal?.removeEventListener('abort', onGone);
    };
    const onGone = () => {
      if (passed) return;
      passed = true;
      done();
      resolve(lateAnswer(req, deps, clock.waitingOn));
      gone?.abort();
    };
    const timer = setTimeout(onGone, Math.max(0, deadlineAt - now));
    if (deps.signal?.aborted) onGone();
    else deps.signal?.addEventListener('abort', onGone, { once: true });
    decideNow(req, deps, clock).then(
      (d) => {
        done();
        resolve(d);
      },
      (e: unknown) => {
        done();
        reject(e);
      },
    );
  });
}

/** A decision still waiting at its deadline: 503, except on a shadow (dry-run) route, which never blocks. */
function lateAnswer(req: GateRequest, deps: DecideDeps, reason: Clock['waitingOn']): Decision {
  const route = req.path === undefined ? undefined : deps.routes.lookup(req.path, req.routePin);
  if (!route?.dryRun) return { outcome: 'unavailable', route, reason };
  const c = req.credentials;
  const authState = c.authorization || c.token || c.macaroon || c.grpcMetadataMacaroon || c.xCashu ? 'invalid' : 'missing';
  return { outcome: 'allow', route, reason: 'dry_run', dryRun: { wouldReturn: 503, reason, authState } };
}

async function decideNow(req: GateRequest, deps: DecideDeps, clock: Clock): Promise<Decision> {
  const d = await limit(req, deps, await verify(req, deps, clock));
  if (!('route' in d) || !d.route?.dryRun || d.outcome === 'allow') return d;
  const authState = d.outcome === 'challenge' && d.reason === 'no_credential' ? 'missing' : 'invalid';
  return {
    outcome: 'allow',
    route: d.route,
    reason: 'dry_run',
    dryRun: { wouldReturn: WOULD_RETURN[d.outcome], reason: d.reason, authState, retryAfterSecs: d.outcome === 'rate_limited' ? d.retryAfterSecs : undefined },
  };
}

/**
 * The refusal of a request whose credential could not be told apart (two different values of one credential
 * header), decided before any credential is read. It offers a fresh payment like any refused credential, so
 * it passes the route's method check and its invoice rate limit as every decision that mints does (found: it
 * was rendered straight away, one invoice per request past the limit, and for a method the route does not sell).
 */
export function refuseAmbiguous(req: GateRequest, deps: DecideDeps): Promise<Decision> {
  if (req.path === undefined) return Promise.resolve({ outcome: 'forbidden', reason: 'bad_path' });
  const route = deps.routes.lookup(req.path, req.routePin);
  if (!route) return Promise.resolve({ outcome: 'forbidden', reason: 'no_route' });
  if (route.methods && !route.methods.includes(req.method as never)) return Promise.resolve({ outcome: 'method_not_allowed', route, reason: 'method_not_sold' });
  return limit(req, deps, { outcome: 'invalid', route, reason: 'malformed_credential' });
}

/**
 * An auto-detect poll decided as payment_pending whose remembered invoice is gone by the time its answer is
 * rendered (it expired in between): the answer is then a new challenge, `expired`, and passes the invoice rate
 * limit as the decision would have made it (found: the render minted it unlimited, one per poll at the edge).
 */
export function refuseExpiredPending(req: GateRequest, route: RouteConfig, deps: DecideDeps): Promise<Decision> {
  return limit(req, deps, { outcome: 'invalid', route, reason: 'expired' });
}

/**
 * An MPP session's topUp or close, decided `management` (it mints nothing, so it was not counted), that the render
 * then refuses (a close that lost a race to another close of the session, a deposit another session took
 * meanwhile): the refusal offers a fresh payment, so it passes the invoice rate limit as a refusal decided
 * earlier would (found: the render minted an L402 challenge and a session offer per refused close, unlimited).
 */
export function refuseManaged(req: GateRequest, route: RouteConfig, reason: SessionReason, deps: DecideDeps): Promise<Decision> {
  return limit(req, deps, { outcome: 'invalid', route, reason });
}

async function limit(req: GateRequest, deps: DecideDeps, d: Decision): Promise<Decision> {
  if (!('route' in d) || !d.route?.rateLimit || !mintsInvoice(d)) return d;
  const { max, windowSecs } = d.route.rateLimit;
  try {
    const w = await withTimeout(deps.store.incrWindow(storeKeys.rateLimit(d.route.id, req.clientAddr), windowSecs), deps.storeTimeoutMs, 'rate limit');
    if (w.count <= max) return d;
    // A refused credential (a paid request retried after it was served: already_used) still says why.
    return { outcome: 'rate_limited', route: d.route, reason: 'invoice_rate_limited', retryAfterSecs: w.resetInSecs, ...(d.outcome === 'invalid' ? { detail: `credential refused: ${d.reason}` } : d.outcome === 'cashu_rejected' ? { detail: `credential refused: cashu_rejected (${d.detail})`.slice(0, 300) } : {}) };
  } catch {
    return deps.rateLimitOnStoreError === 'open' ? d : { outcome: 'unavailable', route: d.route, reason: 'store_unavailable' };
  }
}

async function verify(req: GateRequest, deps: DecideDeps, clock: Clock): Promise<Decision> {
  if (req.path === undefined) return { outcome: 'forbidden', reason: 'bad_path' };
  // The same request, typed with its path known (not a copy: a spread per request cost a share of a decision).
  const withPath = req as GateRequest & { path: string };
  const route = deps.routes.lookup(req.path, req.routePin);
  if (!route) return { outcome: 'forbidden', reason: 'no_route' };
  if (route.methods && !route.methods.includes(req.method as never)) return { outcome: 'method_not_allowed', route, reason: 'method_not_sold' };

  let cashuTopup: string | undefined;
  if (deps.cashu && route.rails.includes('cashu')) {
    const cashu = parseCashuCredential({ 'x-cashu': req.credentials.xCashu, authorization: req.credentials.authorization });
    if (cashu.kind === 'malformed') return { outcome: 'cashu_rejected', route, reason: 'cashu_rejected', detail: cashu.reason };
    // On a balance route, ecash sent with the balance credential tops that balance up (drawFromBalance).
    cashuTopup = cashu.kind === 'token' && route.access === 'balance' && requestCredential(req.credentials, route).kind === 'l402' ? cashu.token : undefined;
    if (cashu.kind === 'token' && cashuTopup === undefined) {
      // Verifying ecash spends it, so shadow routes do not look at it.
      if (route.dryRun) return { outcome: 'challenge', route, reason: 'no_credential' };
      const price = deps.price ? (await deps.price(route, req.path)).amountMsat : route.amountMsat;
      // Ecash is redeemed to the same payee a Lightning invoice for this request would pay.
      const tenant = deps.payeeFor ? await deps.payeeFor(route, req.path) : route.lnurlAddr;
      const paymentId = cashuPaymentId(cashu.token);
      // nginx's retry of this very request finds the ecash its first attempt took (cashu-taken.ts).
      const own = ownRequestId(req.requestId);
      const taken = own === undefined ? undefined : storeKeys.cashuTaken(own);
      if (taken !== undefined) {
        let prior: number | undefined;
        try {
          prior = takenMsat(await withTimeout(deps.store.get(taken), Math.min(deps.storeTimeoutMs, clock.deadlineAt - Date.now()), 'store get'), paymentId, route.id);
        } catch {
          // Not known: the rail decides (its own claims fail closed while the store is down).
        }
        // It paid for this route at the price it was taken for: an internal redirect (same request id) to a
        // path of the route priced above what it paid is decided by the rail again, as another route is.
        if (prior !== undefined && prior >= price) return { outcome: 'allow', route, reason: 'paid', rail: 'cashu', amountMsat: prior, paymentId };
      }
      clock.waitingOn = 'cashu_unavailable';
      const r = await deps.cashu.accept(cashu.token, price, { routeId: route.id, tenant }, clock.signal);
      if (r.ok) {
        // Written before the answer: an l402d that dies after taking the ecash but before answering leaves the
        // record for nginx's retry on another l402d. Not written (store slow or down): the payment was taken,
        // so the answer is still allow, and only a retry of a lost answer would be refused.
        if (taken !== undefined) {
          await withTimeout(deps.store.claimOnce(taken, TAKEN_RECORD_SECS, takenRecord(paymentId, r.amountMsat, route.id)), Math.max(1, Math.min(deps.storeTimeoutMs, clock.deadlineAt - Date.now())), 'store claim').catch(() => undefined);
        }
        return { outcome: 'allow', route, reason: 'paid', rail: 'cashu', amountMsat: r.amountMsat, paymentId };
      }
      if (r.status === 400) return { outcome: 'cashu_rejected', route, reason: 'cashu_rejected', detail: r.reason };
      return { outcome: 'unavailable', route, reason: 'cashu_unavailable' };
    }
  }
  // A route that sells only Cashu accepts no L402 credential (its answer offers none): it is asked to pay in Cashu.
  if (!route.rails.includes('lightning')) return { outcome: 'challenge', route, reason: 'no_credential' };
  // MPP (Authorization: Payment) and x402 (PAYMENT-SIGNATURE), where the route offers them over HTTPS.
  const other = otherSchemeOf(req, route);
  // On a balance route, MPP is its Lightning session intent: open and bearer draw, topUp and close are managed.
  if (other === 'mpp' && route.access === 'balance') return decideSession(withPath, route, deps, clock, nowSecs(deps));
  let auth: Authenticated | Decision;
  if (other) {
    auth = await authenticateOtherScheme(other, withPath, route, deps, clock, nowSecs(deps));
  } else {
    const parsed = requestCredential(req.credentials, route);
    if (parsed.kind === 'none') return { outcome: 'challenge', route, reason: 'no_credential' };
    if (parsed.kind === 'malformed') return { outcome: 'invalid', route, reason: 'malformed_credential', detail: parsed.reason };
    const ngxKey = deps.ngxL402RootKey;
    auth = ngxKey && looksLikeV1(parsed.credential.macaroon) ? authenticateNgxL402(parsed.credential, req.path, req.method, route, ngxKey, nowSecs(deps)) : await authenticate(parsed.credential, req.path, req.method, route, deps, clock);
  }
  if ('outcome' in auth) return auth;
  // Before any claim: a revoked single-use credential is not spent by being refused.
  if (deps.isRevoked) {
    let revoked: boolean;
    try {
      clock.waitingOn = 'store_unavailable';
      revoked = await deps.isRevoked(auth.tokenId, auth.paymentHash);
    } catch {
      return { outcome: 'unavailable', route, reason: 'store_unavailable' };
    }
    if (revoked) return { outcome: 'invalid', route, reason: 'revoked' };
  }
  // A balance credential opens its balance routes only, and a balance route only balance credentials (never
  // one sold single-use or for a time window, nor ngx_l402's).
  if (route.access === 'balance' || auth.balance) {
    if (route.access !== 'balance' || !auth.balance) return { outcome: 'invalid', route, reason: 'wrong_route' };
    // A balance is drawn per request: a holder's uses=1 cannot be honoured by it, so it is refused, not ignored.
    if (auth.singleUse) return { outcome: 'invalid', route, reason: 'unknown_caveat', detail: 'uses=1 on a balance credential' };
    return drawFromBalance(withPath, route, { ...auth.balance, cashuToken: cashuTopup }, deps, clock);
  }
  const { validUntil } = auth;
  // Sold for one request, or on a route that sells one request: spent once. A credential sold single-use
  // stays so when its route is made reusable later (its holder could add an expiry of their choosing).
  const soldOnce = route.access === 'per-request' || auth.soldSingleUse;
  // A timed route only honours reusable credentials minted with an expiry (e.g. not ones minted before a
  // config change): an expiry the holder appended proves nothing about what was sold.
  if (route.access === 'timed' && auth.mintedValidUntil === undefined && !soldOnce) return { outcome: 'invalid', route, reason: 'expired' };
  // A holder may narrow a reusable credential to one use (an appended uses=1): spent once as well.
  const singleUse = soldOnce || auth.singleUse;

  if (singleUse && route.dryRun) {
    // Shadow mode has no side effects: look, but never consume the credential.
    let used: string | undefined;
    try {
      used = await withTimeout(deps.store.get(auth.claimKey), deps.storeTimeoutMs, 'store get');
    } catch {
      return { outcome: 'unavailable', route, reason: 'store_unavailable' };
    }
    if (used !== undefined) return { outcome: 'invalid', route, reason: auth.usedReason ?? 'already_used' };
    return { outcome: 'allow', route, reason: 'dry_run', dryRun: { wouldReturn: 200, reason: 'paid', authState: 'valid' } };
  }
  if (singleUse) {
    // Slow lookups (auto-detect, a slow store) ran past what nginx waits for: it has answered 503, so the
    // credential must not be spent now.
    clock.waitingOn = 'store_unavailable';
    if (clock.passed || Date.now() >= clock.deadlineAt) return { outcome: 'unavailable', route, reason: 'store_unavailable' };
    // The spent mark lives as long as the credential could still verify: its minted expiry (plus grace), or
    // for ever. Never an expiry the holder appended: the original credential, without it, verifies longer.
    const ttl = auth.mintedValidUntil === undefined ? undefined : auth.mintedValidUntil - auth.now + CLAIM_GRACE_SECS;
    const key = auth.claimKey;
    // Unique to this client request, so a claim we stop waiting for can be told apart from a replay's and
    // undone (abandonClaim), nginx's retry of this same request on another l402d finds it is its own, and an
    // upstream failure can give back exactly this request's claim (release.ts).
    const mine = requestClaimToken(req.requestId);
    let first = false;
    try {
      const left = () => Math.min(deps.storeTimeoutMs, clock.deadlineAt - Date.now());
      for (let attempt = 0; attempt < 2 && !first; attempt++) {
        // Bounded by the decision's deadline too: a claim that lands after nginx gave up is undone below.
        first = await withTimeout(deps.store.claimOnce(key, ttl, mine), left(), 'store claim');
        if (first) break;
        const held = await withTimeout(deps.store.get(key), left(), 'store get');
        // A claim resent after a reconnect finds its own earlier write: still ours, not a replay.
        if (held === mine) first = true;
        // nginx's retry of this same request (after an l402d that claimed died or went silent) finds that
        // attempt's claim: it takes it over atomically, so the earlier attempt, if it gives up later
        // (abandonClaim), cannot delete a claim this attempt is about to let through.
        else if (claimOwnedBy(held, req.requestId)) first = await withTimeout(deps.store.replaceIfValue(key, held!, mine), left(), 'store claim');
        // Anything else is another request's claim (a replay); gone meanwhile (given back): claim again.
        else if (held !== undefined) break;
      }
      // Landed after the deadline (or nginx went away): the answer is 503, so the claim goes back.
      if (first && clock.passed) throw new Error('claim landed after the deadline');
    } catch {
      // Answered 503, so not served: if the claim lands after all, give it back for the payer's retry.
      void abandonClaim(deps.store, key, mine);
      return { outcome: 'unavailable', route, reason: 'store_unavailable' };
    }
    if (!first) return { outcome: 'invalid', route, reason: auth.usedReason ?? 'already_used' };
  }
  if (route.dryRun) return { outcome: 'allow', route, reason: 'dry_run', dryRun: { wouldReturn: 200, reason: 'paid', authState: 'valid' } };
  return { outcome: 'allow', route, reason: 'paid', rail: 'lightning', tokenId: auth.tokenId, paymentHash: auth.paymentHash, validUntil, mintedValidUntil: auth.mintedValidUntil, singleUse, ...(auth.capabilities ? { capabilities: auth.capabilities } : {}), ...(auth.receipt ? { receipt: auth.receipt } : {}) };
}

/** A paid credential, authenticated: what the access rules (expiry, single use) still need. */
export interface Authenticated {
  tokenId: string;
  /** 64 hex. */
  paymentHash: string;
  /** Unix seconds, if the credential expires: the earliest of all its expiry caveats (minted or appended). */
  validUntil?: number;
  /** Unix seconds: the expiry l402d minted, if any (never one a holder appended). */
  mintedValidUntil?: number;
  /** Where its single use is recorded. */
  claimKey: string;
  /** Sold for one request (minted), whatever the route's access is now. */
  soldSingleUse: boolean;
  /** Some caveat (minted or appended by the holder) limits it to one use. */
  singleUse: boolean;
  /** Unix seconds at verification. */
  now: number;
  /** Sold as a prepaid balance (only on a balance route). */
  balance?: BalanceCredential;
  /** Capabilities granted (what was sold, narrowed by appended caveats), if any were sold. */
  capabilities?: string[];
  /** The refusal when its single use is spent already (MPP and x402 name it in their own terms). */
  usedReason?: InvalidReason;
  /** A header for the client of the paid request (MPP's Payment-Receipt, x402's PAYMENT-RESPONSE). */
  receipt?: [string, string];
}

const nowSecs = (deps: DecideDeps) => (deps.now ?? (() => Math.floor(Date.now() / 1000)))();

/** Our own credentials: V2 macaroon, per-token key, our caveats; preimage, or (auto-detect) a paid invoice. */
async function authenticate(cred: L402Credential, path: string, method: string, route: RouteConfig, deps: DecideDeps, clock: Clock): Promise<Authenticated | Decision> {
  const verified = deps.verified?.rootKeys === deps.rootKeys ? deps.verified : undefined;
  const known = verified?.get(cred.macaroon);
  let mac;
  let id;
  if (known) ({ mac, id } = known);
  else {
    try {
      mac = decodeMacaroon(cred.macaroon);
    } catch (e) {
      if (e instanceof MacaroonFormatError) return { outcome: 'invalid', route, reason: 'malformed_macaroon', detail: e.message };
      throw e;
    }
    id = decodeIdentifier(mac.identifier);
    if (!id) return { outcome: 'invalid', route, reason: 'unknown_identifier' };
    if (!signedByTokenKey(mac, id.tokenId, deps.rootKeys)) return { outcome: 'invalid', route, reason: 'bad_signature' };
  }

  const now = nowSecs(deps);
  const routeScope = soldScope(route);
  const required = requiredCapabilities(route, path, method);
  // A credential presented again for the same check input earned the same verdict, while it has not expired.
  const input = known ? checkInput(deps.service, deps.unknownCaveats ?? 'skip', routeScope, method, required, path) : undefined;
  const kept = known && input !== undefined ? verified!.verdict(known, input, now) : undefined;
  // Every caveat must hold; what was sold comes from the ones l402d minted (their count is in the token id).
  const verdict =
    kept ??
    checkCaveats(
      caveatPredicates(mac),
      { service: deps.service, routeId: routeScope, path, method, now, paymentHash: id.paymentHash, requiredCapabilities: required, unknownCaveats: deps.unknownCaveats },
      mintedCaveatCount(id.tokenId),
    );
  if (!verdict.ok) return { outcome: 'invalid', route, reason: verdict.reason };
  // Remembered only when it can be presented again: a credential sold for one request would only crowd out others.
  const entry = known ?? (verdict.sold.singleUse ? undefined : verified?.add(cred.macaroon, { mac, id }));
  if (known && input !== undefined && !kept) verified!.keepVerdict(known, input, verdict);
  // A path priced on its own is sold separately: a credential for the (cheaper) route does not open it unless
  // it was minted bound to that path (a path caveat its holder appended binds nothing that was paid for).
  // Per-request credentials are minted bound to their path, so this only costs a price lookup for others.
  // On store trouble the last known price applies (as for challenges): reusable credentials keep working
  // through a store outage, so a path this process never priced counts as the route's meanwhile.
  // (A balance is never path-bound: each request draws its path's own price.)
  if (route.access !== 'balance' && !verdict.sold.pathBound && deps.price && (await deps.price(route, path)).pathPriced) {
    return { outcome: 'invalid', route, reason: 'wrong_path' };
  }
  const preimage = cred.preimage ?? verdict.preimage;
  // On a balance route a preimage that is not the first payment's may be a top-up's (drawFromBalance checks
  // that the store minted that top-up for this token before crediting anything).
  let topupPreimage: Buffer | undefined;
  if (preimage) {
    if (entry && verified!.knownPreimage(entry, preimage)) {
      // The same preimage as before: it hashed to this payment hash then.
    } else if (preimageMatches(preimage, id.paymentHash)) {
      if (entry) verified!.notePreimage(entry, preimage);
    } else {
      if (route.access !== 'balance' || verdict.sold.balanceMsat === undefined || preimage.length !== 32) return { outcome: 'invalid', route, reason: 'wrong_preimage' };
      topupPreimage = preimage;
    }
  } else {
    // Macaroon only: the HMAC chain and caveats are already verified, so a forged macaroon never costs a
    // backend round trip; only then ask the backend whether this invoice was paid.
    if (!route.autoDetect) return { outcome: 'invalid', route, reason: 'missing_preimage' };
    if (!deps.isSettled) return { outcome: 'invalid', route, reason: 'auto_detect_off' };
    let settled: boolean;
    try {
      clock.waitingOn = 'backend_unavailable';
      settled = await deps.isSettled(id.paymentHash);
      clock.waitingOn = 'store_unavailable';
    } catch {
      return { outcome: 'unavailable', route, reason: 'backend_unavailable' };
    }
    if (!settled) {
      // Polling repeats the invoice remembered for this macaroon. Once it is gone (expired), answering would
      // mint a new one: that is a new challenge, subject to the invoice rate limit like any other.
      let pending: string | undefined;
      try {
        pending = await withTimeout(deps.store.get(pendingInvoiceKey(id.paymentHash)), deps.storeTimeoutMs, 'store get');
      } catch {
        return { outcome: 'unavailable', route, reason: 'store_unavailable' };
      }
      if (pending === undefined) return { outcome: 'invalid', route, reason: 'expired' };
      return { outcome: 'challenge', route, reason: 'payment_pending' };
    }
  }
  return {
    tokenId: id.tokenId.toString('hex'),
    paymentHash: id.paymentHash.toString('hex'),
    validUntil: verdict.validUntil,
    mintedValidUntil: verdict.sold.validUntil,
    claimKey: claimKey(id.paymentHash),
    soldSingleUse: verdict.sold.singleUse,
    singleUse: verdict.singleUse,
    now,
    balance:
      verdict.sold.balanceMsat === undefined
        ? undefined
        : { tokenId: id.tokenId, paymentHash: id.paymentHash, soldMsat: verdict.sold.balanceMsat, saleProven: preimage !== undefined && topupPreimage === undefined, topupPreimage, mintedValidUntil: verdict.sold.validUntil, validUntil: verdict.validUntil, now },
    ...(verdict.capabilities ? { capabilities: verdict.capabilities } : {}),
  };
}

/**
 * A credential ngx_l402 sold (migration): its V1 macaroon signed with ngx_l402's raw ROOT_KEY, its identifier
 * the payment hash, bound to one path and method, with the preimage. Always bound to its path, so a
 * separately priced path needs no check; ngx_l402's macaroon-only auto-detect is not carried over.
 */
function authenticateNgxL402(cred: L402Credential, path: string, method: string, route: RouteConfig, rootKey: Buffer, now: number): Authenticated | Decision {
  let mac;
  try {
    mac = decodeMacaroonV1(cred.macaroon);
  } catch (e) {
    if (e instanceof MacaroonFormatError) return { outcome: 'invalid', route, reason: 'malformed_macaroon', detail: e.message };
    throw e;
  }
  if (mac.identifier.length !== 32) return { outcome: 'invalid', route, reason: 'unknown_identifier' };
  if (!verifySignature(mac, rootKey)) return { outcome: 'invalid', route, reason: 'bad_signature' };
  const verdict = checkNgxL402Caveats(caveatPredicates(mac), { path, method, now });
  if (!verdict.ok) return { outcome: 'invalid', route, reason: verdict.reason };
  if (!cred.preimage) return { outcome: 'invalid', route, reason: 'missing_preimage' };
  if (!preimageMatches(cred.preimage, mac.identifier)) return { outcome: 'invalid', route, reason: 'wrong_preimage' };
  // ngx_l402 sold no capability set: nothing that needs a capability opens for its credentials.
  if (requiredCapabilities(route, path, method).length > 0) return { outcome: 'invalid', route, reason: 'missing_capability' };
  // ngx_l402's macaroons do not say how they were sold, nor which caveats it minted and which a holder
  // appended: the route's access decides (see the migration guide), and no expiry is taken as minted. So the
  // spent mark never expires, and a timed route (which needs a minted expiry) spends them once: an ExpiresAt
  // only narrows. ngx_l402 sold reusable credentials only with l402_indefinite_access (an indefinite route).
  return {
    tokenId: `ngx_l402:${mac.identifier.toString('hex')}`,
    paymentHash: mac.identifier.toString('hex'),
    validUntil: verdict.validUntil,
    mintedValidUntil: undefined,
    claimKey: storeKeys.ngxL402Claim(mac.identifier),
    soldSingleUse: route.access !== 'indefinite',
    singleUse: false,
    now,
  };
}

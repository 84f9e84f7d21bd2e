// The gate: wires config, store, backend and keys into the decision core and the renderer.
// Transport-agnostic: the nginx endpoints and the standalone proxy both call it.
import { createHash, randomBytes } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { ConfigError, type GateConfig, type RouteConfig } from '../config/config.js';
import { createSettlementCheck } from '../rails/lightning/settlement.js';
import { decodeIdentifier } from '../protocol/identifier.js';
import { decodeMacaroon, encodeMacaroonBase64 } from '../protocol/macaroon.js';
import { formatChallenges, parseCredential } from '../protocol/l402-header.js';
import { signedByTokenKey } from '../protocol/root-key.js';
import type { Challenge } from '../policy/challenge.js';
import { claimKey, decide, pendingInvoiceKey, refuseAmbiguous, refuseExpiredPending, refuseManaged, type Decision, type DecideDeps, type GateRequest, type GoneSignal } from '../policy/decide.js';
import { RouteTable } from '../policy/routes.js';
import { releaseClaim, type ReleaseDeps, type ReleaseResult } from '../policy/release.js';
import type { BalanceCredit } from '../policy/balance.js';
import { createTopup } from '../policy/balance-topup.js';
import { BackendError, createChallenge } from '../policy/challenge.js';
import type { LightningBackend } from '../rails/lightning/backend.js';
import type { Store } from '../store/store.js';
import type { Logger } from '../util/log.js';
import { withTimeout } from '../util/timeout.js';
import { AddressSet, clientAddress } from '../policy/rate-limit.js';
import { createPriceResolver, type Price } from '../policy/pricing.js';
import { createPayeeResolver } from '../policy/payee.js';
import { VerifiedMacaroons } from '../policy/verified-macaroons.js';
import type { Metrics } from './metrics.js';
import type { CashuRail } from '../rails/cashu/index.js';
import { TenantBackends } from './wiring/tenant-backends.js';
import { authCacheSeconds } from './auth-cache-lifetime.js';
import { isGrpc, prefersHtml } from './negotiate.js';
import { render, type RenderOutcome, type Rendered } from './render.js';
import { devPayEnabled, pageCookieTakes } from './page-endpoints.js';
import { FreePaths } from '../policy/free-paths.js';
import { clearingSetCookie, cookieCovers, cookieCredential, routeCookieText } from '../policy/credential-cookie.js';
import { parseCashuCredential } from '../protocol/cashu-credential.js';
import { RevocationCache } from './revocations.js';
import { SalesRecorder } from './sales.js';
import { otherSchemeOf } from '../policy/pay-schemes.js';
import { offeredNow, type PaymentScheme } from '../policy/schemes.js';
import { buildChallenge as buildMppChallenge, formatChallenge as formatMppChallenge, mppPayable } from '../protocol/mpp.js';
import { buildRequirements as buildX402Requirements, paymentRequired } from '../protocol/x402.js';
import { x402ResourceUrl } from './x402-resource.js';
import { closedSessionOf, decodeInvoiceFacts, manageSession, mintSessionOffer } from './mpp-session-render.js';
import { sessionLedgerDeps, sessionScope } from '../policy/mpp-session-decide.js';
import { expireSession, type SessionLedgerDeps } from '../policy/mpp-session-ledger.js';
import { SCAN_SALES, SessionSweeper } from './mpp-session-sweeper.js';
import { verifySessionCredential } from '../protocol/mpp-session.js';

interface OtherOffers {
  /** The `WWW-Authenticate: Payment …` value. */
  mpp?: string;
  /** The PAYMENT-REQUIRED value. */
  x402?: { header: string; amountMsat: number };
}

/** x402's `error` text for a refused PAYMENT-SIGNATURE (the spec puts it in PaymentRequired). */
const X402_ERROR: Record<string, string> = {
  x402_malformed_payment: 'PAYMENT-SIGNATURE is not a base64 x402 v2 payment payload',
  x402_unknown_offer: 'the accepted offer was not issued by this server for this request',
  x402_expired_invoice: 'the invoice has expired',
  x402_not_paid: 'the invoice has not been paid',
  x402_already_used: 'this payment has been used already',
};

export interface GateParts {
  metrics?: Metrics;
  cashu?: CashuRail;
  config: GateConfig;
  store: Store;
  backend: LightningBackend;
  rootKeys: Buffer[];
  log: Logger;
  /** Shared by the gates a reload replaces (created by the first Gate when absent). */
  revocations?: RevocationCache;
  sales?: SalesRecorder;
}

/** Refusals of a credential that still pays for other requests of its route (the cookie is kept). */
const REFUSED_HERE_ONLY = new Set<string | undefined>(['wrong_path', 'wrong_method', 'missing_capability']);

const RENDERABLE = new Set<RenderOutcome>(['challenge', 'invalid', 'unavailable', 'forbidden', 'method_not_allowed', 'rate_limited', 'cashu_rejected']);

function header(h: IncomingHttpHeaders, name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
}

/** What a render still working at its deadline waits for (the 503's reason). */
interface RenderProgress {
  waitingOn: 'store_unavailable' | 'backend_unavailable';
}

/**
 * Fresh challenges answered to refused credentials, by credential, route, method and path, for a few seconds
 * (in flight included, so concurrent copies share one mint). Bounded; a failed mint is forgotten at once.
 *
 * The key holds everything a kept challenge's text depends on: the route (its config is this gate's: a reload
 * builds a new gate, with an empty memo), method and path (the macaroon's caveats), the price and whether the
 * path priced it (the invoice's amount, the path caveat), and the payee (whose node issued the invoice), so a
 * price or payee changed in the store is offered as soon as l402d reads it, never at the old one for the
 * memo's lifetime. What is not in it is not kept: the answer around the challenge (x402's resource URL with the
 * request's host and target, the offered schemes, the scheme of the connection, the pin's cookie choice) is
 * built again for each request (test/unit/recent-challenges.test.ts).
 */
class RecentChallenges<T extends { validUntil?: number } = Challenge> {
  private readonly byKey = new Map<string, { at: number; challenge: Promise<T> }>();
  constructor(
    private readonly ttlMs = 10_000,
    private readonly max = 1024,
  ) {}

  /**
   * Only the same client (address bucket) shares: a refused credential's text is not a secret (clients send
   * the same stale or garbage value), and a challenge is a credential to whoever pays it. Never on auto-detect
   * routes, where the macaroon alone opens the route once its invoice is paid: whoever else got it would
   * spend the payer's payment. For the same reason x402's offers (paid invoice alone) are never kept at all.
   */
  key(route: RouteConfig, req: GateRequest, sold: { amountMsat: number; pathPriced: boolean; payee: string | undefined }): string | undefined {
    const c = req.credentials;
    // The route's credential cookie counts when no header carries a credential (as decide() reads it).
    const viaHeader = !!(c.authorization || c.token || c.macaroon || c.grpcMetadataMacaroon || c.paymentSignature);
    const cookie = viaHeader ? '' : routeCookieText(c.cookie, route);
    if (route.autoDetect || (!viaHeader && !cookie)) return undefined;
    return createHash('sha256')
      .update(JSON.stringify([route.id, req.method, req.path, sold.amountMsat, sold.pathPriced, sold.payee ?? null, req.clientAddr ?? '', c.authorization ?? '', c.token ?? '', c.macaroon ?? '', c.grpcMetadataMacaroon ?? '', c.paymentSignature ?? '', cookie]))
      .digest('base64');
  }

  get(key: string): Promise<T> | undefined {
    const e = this.byKey.get(key);
    if (!e) return undefined;
    if (Date.now() - e.at < this.ttlMs) return e.challenge;
    this.byKey.delete(key);
    return undefined;
  }

  set(key: string, challenge: Promise<T>): void {
    if (this.byKey.size >= this.max) this.byKey.delete(this.byKey.keys().next().value!);
    this.byKey.set(key, { at: Date.now(), challenge });
    const forget = () => {
      if (this.byKey.get(key)?.challenge === challenge) this.byKey.delete(key);
    };
    // A credential that expires soon (a short macaroon_timeout) is shared only while in flight.
    challenge.then((c) => (c.validUntil !== undefined && c.validUntil * 1000 - Date.now() < 2 * this.ttlMs ? forget() : undefined), forget);
  }
}

/** How long an MPP session's refund payment may take (one attempt, never retried). */
const REFUND_PAY_MS = 60_000;

/** Keep settled markers and pending invoices a day: longer than any invoice we issue can stay open. */
const SETTLED_CACHE_SECS = 86_400;

export class Gate {
  readonly routes: RouteTable<RouteConfig>;
  /** Standalone mode: paths proxied without payment. */
  readonly freePaths: FreePaths;
  private readonly trustedProxies: AddressSet;
  /** Settlement check (bounded, cached); also used by the payment page's status endpoint. */
  readonly isSettled?: (paymentHash: Buffer) => Promise<boolean>;
  readonly price: (route: RouteConfig, path: string) => Promise<Price>;
  /** The Lightning address paid for a request (a store override, then the route's lnurl_addr), if any. Both rails use it. */
  readonly payeeFor: ReturnType<typeof createPayeeResolver>;
  private readonly tenants: TenantBackends;
  private lateWarnedAt = 0;
  private readonly recentChallenges = new RecentChallenges();
  /** Signatures checked once per credential (see policy/verified-macaroons.ts); per gate, so per set of master keys. */
  private readonly verified: VerifiedMacaroons;
  /**
   * The per-request decision line: its fields are fixed (route id, method, path, outcome, reason, time) and
   * none is a secret, so it skips the redaction pass every other line gets (half the cost of a line).
   */
  private readonly decisionLog: Logger;
  /** The same for MPP session offers (a deposit invoice of their own); validUntil: the offer's expiry. */
  private readonly recentSessionOffers = new RecentChallenges<{ offer?: string; validUntil?: number }>();
  /** Decisions running now, by nginx's request id (releaseAbandoned waits for the one it gives back). */
  private readonly deciding = new Map<string, Promise<Decision>>();
  /** Closes idle MPP sessions this process served (routes with session_idle_secs), with their refund. */
  private readonly sessionSweeper?: SessionSweeper;

  /** What every decision of this gate shares (built once: a decision is made per request). */
  private readonly decideDeps: Omit<DecideDeps, 'deadlineMs' | 'sentAt' | 'signal' | 'isRevoked'>;

  constructor(readonly parts: GateParts) {
    this.decisionLog = parts.log.child({}, { redact: { paths: [] } });
    this.verified = new VerifiedMacaroons(parts.rootKeys);
    this.routes = new RouteTable(parts.config.routes);
    this.freePaths = new FreePaths(parts.config.freePaths ?? [], parts.config.routes);
    this.trustedProxies = new AddressSet(parts.config.rateLimit.trustedProxies);
    this.tenants = TenantBackends.forConfig(parts.config, parts.log);
    const p = parts.config.pricing;
    const legacyGet = p.legacyKeys ? parts.store.getUnprefixed?.bind(parts.store) : undefined;
    this.price = p.dynamic
      ? createPriceResolver({
          store: parts.store,
          storeTimeoutMs: parts.config.timeouts.storeMs,
          cacheMs: p.cacheMs,
          legacyGet,
          onBadValue: (key) => parts.log.warn({ event: 'bad_price', key }, 'ignoring a dynamic price that is not a positive integer (msat)'),
        })
      : async (route) => ({ amountMsat: route.amountMsat, source: 'static', pathPriced: false });
    this.payeeFor = createPayeeResolver({ store: parts.store, storeTimeoutMs: parts.config.timeouts.storeMs, cacheMs: p.cacheMs, dynamic: p.dynamic, legacyGet });
    const { backend, store, config } = parts;
    parts.revocations ??= new RevocationCache(store.ledger(), config.timeouts.storeMs);
    parts.sales ??= new SalesRecorder(store.ledger(), config.timeouts.storeMs, parts.log, () => parts.metrics);
    this.isSettled = createSettlementCheck(backend, store, { timeoutMs: config.timeouts.backendMs, storeTimeoutMs: config.timeouts.storeMs, cacheSecs: SETTLED_CACHE_SECS });
    const cashuOnly = config.routes.filter((r) => !r.rails.includes('lightning') && !parts.cashu).map((r) => r.id);
    if (cashuOnly.length > 0) throw new ConfigError(`routes ${cashuOnly.join(', ')}: rails [cashu] needs a cashu: section`);
    const x402 = config.routes.filter((r) => r.schemes.includes('x402')).map((r) => r.id);
    if (x402.length > 0 && !this.isSettled) {
      throw new ConfigError(`routes ${x402.join(', ')}: schemes x402 needs a backend that can look up invoices (its payment is the invoice alone); lightning.type ${backend.kind} cannot`);
    }
    // An MPP session refunds its unspent balance on close: offered only where the backend can pay out.
    const sessions = config.routes.filter((r) => r.access === 'balance' && r.schemes.includes('mpp')).map((r) => r.id);
    if (sessions.length > 0 && !backend.payInvoice) {
      throw new ConfigError(`routes ${sessions.join(', ')}: schemes mpp on access: balance (MPP sessions) needs a backend that can pay the refund on close; lightning.type ${backend.kind} cannot (the dev wallet can, and lnd with pay_refunds: true)`);
    }
    const sweepMs = SessionSweeper.intervalMs(config.routes);
    if (sweepMs !== undefined) {
      this.sessionSweeper = new SessionSweeper(
        (route) => this.sessionLedger(route),
        (id, route, r) => this.noteSessionClose(route, id, r.refundSats, r.refundStatus, 'idle'),
        (e) => parts.log.warn({ event: 'mpp_session_sweep_failed', err: e.message }, 'idle MPP session close failed (tried again on the next pass)'),
      );
      this.sessionSweeper.start(sweepMs);
      // Sessions served before this process (or this gate, after a reload) started: from the latest sales.
      const sweeper = this.sessionSweeper;
      parts.store
        .ledger()
        .recentSales(SCAN_SALES)
        .then((sales) => sweeper.watchSales(sales, config.routes))
        .catch((e: Error) => parts.log.warn({ event: 'mpp_session_scan_failed', err: String(e?.message) }, 'could not read recent sales for idle MPP sessions (their clients close them, or the next start)'));
    }
    const auto = config.routes.filter((r) => r.autoDetect).map((r) => r.id);
    if (auto.length > 0 && !this.isSettled) {
      throw new ConfigError(`routes ${auto.join(', ')}: auto_detect_payment needs a backend that can look up invoices; lightning.type ${backend.kind} cannot`);
    }
    this.decideDeps = {
      routes: this.routes,
      service: config.service,
      realm: config.service,
      rootKeys: parts.rootKeys,
      store,
      storeTimeoutMs: config.timeouts.storeMs,
      isSettled: this.isSettled,
      cashu: parts.cashu,
      price: this.price,
      payeeFor: (route, path) => this.payeeFor(route, path),
      rateLimitOnStoreError: config.rateLimit.onStoreError,
      ngxL402RootKey: config.ngxL402RootKey,
      unknownCaveats: config.unknownCaveats,
      verified: this.verified,
      onCredit: (credit, of) => this.recordCredit(credit, of),
      decodeInvoice: decodeInvoiceFacts,
      onSessionUse: (id, route) => this.sessionSweeper?.watch(id, route),
    };
  }

  /** Bytes held by the in-process caches keyed by request data (prices, payees), by their own accounting. */
  cacheBytes(): number {
    const p = this.price as { cacheBytes?: () => number };
    return this.payeeFor.cacheBytes() + (p.cacheBytes?.() ?? 0);
  }

  /**
   * Builds the decision input from request headers. gRPC metadata tokens are read only on gRPC calls. `about`:
   * the request's raw target, identity and pinned route, when known (one object literal: spreading this one into
   * another per request cost a measurable share of an answer).
   */
  requestFrom(path: string | undefined, method: string, clientAddr: string | undefined, h: IncomingHttpHeaders, about: Pick<GateRequest, 'uri' | 'requestId' | 'routePin'> = {}): GateRequest {
    const grpc = isGrpc(header(h, 'content-type'), header(h, 'x-original-protocol'));
    return {
      path,
      method,
      uri: about.uri,
      requestId: about.requestId,
      routePin: about.routePin,
      clientAddr: clientAddress(clientAddr, header(h, 'x-forwarded-for'), this.trustedProxies),
      // Set by nginx's snippets ($scheme, $host) or by the standalone server for its own connection: never a client's.
      secure: header(h, 'x-l402-scheme') === 'https',
      host: header(h, 'x-l402-host'),
      credentials: {
        authorization: header(h, 'authorization'),
        // Aperture's REST form: its own header name, so read over any protocol.
        grpcMetadataMacaroon: header(h, 'grpc-metadata-macaroon'),
        token: grpc ? header(h, 'token') : undefined,
        macaroon: grpc ? header(h, 'macaroon') : undefined,
        xCashu: header(h, 'x-cashu'),
        cookie: header(h, 'cookie'),
        paymentSignature: header(h, 'payment-signature') ?? header(h, 'x-payment'),
      },
    };
  }

  /**
   * `o.sentAt`: when nginx sent the request (its `$msec`); `o.deadlineMs`: the deadline nginx's snippets were
   * generated for (the shorter of it and ours applies, so snippets older than the config stay safe);
   * `o.signal`: aborts when nginx has gone away.
   */
  async decide(req: GateRequest, o: { sentAt?: number; deadlineMs?: number; signal?: GoneSignal } = {}): Promise<Decision> {
    const started = performance.now();
    const age = o.sentAt === undefined ? 0 : Date.now() - o.sentAt;
    if (age > this.parts.config.timeouts.decisionMs && Date.now() - this.lateWarnedAt > 60_000) {
      this.lateWarnedAt = Date.now();
      this.parts.log.warn({ event: 'late_request', age_ms: age }, 'read a request after its deadline (l402d stalled or overloaded, or its clock is ahead of nginx\'s): answering 503 to single-use credentials');
    }
    let d: Decision;
    // When the copy of the revocation list this decision read was confirmed (none read: nothing is cached).
    let revocationsAt = -Infinity;
    // This request's deps inherit the gate's shared ones: copying those (a spread) per request was about a
    // sixth of a decision, and left an object whose every property read was a dictionary lookup.
    const deps: DecideDeps = Object.create(this.decideDeps);
    deps.deadlineMs = Math.min(this.parts.config.timeouts.decisionMs, o.deadlineMs ?? Infinity);
    deps.sentAt = o.sentAt;
    deps.signal = o.signal;
    deps.isRevoked = async (tokenId, paymentHash) => {
      const r = await this.parts.revocations!.check(tokenId, paymentHash);
      revocationsAt = r.confirmedAt;
      return r.revoked;
    };
    // Known while it runs, by nginx's request id: a release for this request waits for its claim (releaseAbandoned).
    const running = decide(req, deps);
    const id = req.requestId;
    if (id !== undefined) this.deciding.set(id, running);
    try {
      d = await running;
    } catch (e) {
      // Fail closed: an unexpected error never lets a request through.
      this.parts.log.error({ err: (e as Error).message, path: req.path }, 'decision failed');
      d = { outcome: 'unavailable', reason: 'store_unavailable' };
    }
    if (id !== undefined && this.deciding.get(id) === running) this.deciding.delete(id);
    const ms = performance.now() - started;
    const route = 'route' in d ? d.route?.id : undefined;
    this.parts.metrics?.countDecision(d, ms / 1000);
    // decide() returns a fresh object per request: set on it, not copied.
    if (d.outcome === 'allow' && d.reason === 'paid' && d.rail === 'lightning') d.revocationsAt = revocationsAt;
    if (d.outcome === 'allow' && d.reason === 'paid' && req.path !== undefined) this.recordSale(d, req.path);
    this.decisionLog.info({ event: 'decision', route, method: req.method, path: req.path, outcome: d.outcome, reason: d.reason, ms: Math.round(ms * 1000) / 1000 }, 'decision');
    return d;
  }

  /**
   * A request with two different values of one credential header: refused (malformed_credential) without
   * reading either, through the route's method check and invoice rate limit, as the render offers a payment.
   */
  async refuseAmbiguous(req: GateRequest): Promise<Decision> {
    const deps: DecideDeps = Object.create(this.decideDeps);
    try {
      return await refuseAmbiguous(req, deps);
    } catch {
      return { outcome: 'unavailable', reason: 'store_unavailable' };
    }
  }

  /** Notes a sale (in the background; a credential already recorded costs nothing). */
  private recordSale(d: Extract<Decision, { reason: 'paid' }>, path: string): void {
    const sales = this.parts.sales!;
    const route = d.route;
    if (d.rail === 'cashu') {
      // By the token's hash when known: nginx's retry of a request whose ecash was taken is the same sale.
      sales.note({ id: `cashu:${d.paymentId ?? randomBytes(16).toString('hex')}`, rail: 'cashu', route: route.id, amountMsat: d.amountMsat, at: Date.now() });
      return;
    }
    // A balance's sales are its credits (recordCredit), not its draws.
    if (d.balanceMsat !== undefined || sales.has(d.tokenId)) return;
    const at = Date.now();
    // The amount is what the route charges for this path now (what the invoice asked unless a dynamic price
    // changed between the challenge and this first use).
    this.price(route, path)
      .then((p) => sales.note({ id: d.tokenId, rail: 'lightning', route: route.id, amountMsat: p.amountMsat, at, paymentHash: d.paymentHash, validUntil: d.mintedValidUntil, access: d.singleUse ? 'per-request' : route.access }))
      .catch(() => undefined);
  }

  /**
   * A credit that landed on a prepaid balance is a sale: the credential's own payment under its token id (as
   * any Lightning sale), each top-up under `<token id>:topup:<payment hash>` or `<token id>:cashu:<token hash>`.
   */
  private recordCredit(credit: BalanceCredit, of: { route: RouteConfig; tokenId: string; paymentHash: string; mintedValidUntil?: number }): void {
    const id = credit.kind === 'sale' ? of.tokenId : `${of.tokenId}:${credit.kind}:${credit.id}`;
    this.parts.sales!.note({
      id,
      rail: credit.kind === 'cashu' ? 'cashu' : 'lightning',
      route: of.route.id,
      amountMsat: credit.msat,
      at: Date.now(),
      ...(credit.kind === 'cashu' ? {} : { paymentHash: credit.kind === 'sale' ? of.paymentHash : credit.id }),
      validUntil: of.mintedValidUntil,
      access: 'balance',
    });
  }

  /**
   * Seconds nginx may cache this "paid" answer (0 = not at all). Only reusable credentials qualify, never
   * single-use ones, dry runs or refusals, and never past the credential's own expiry.
   */
  cacheSecondsFor(d: Decision, nowMs = Date.now()): number {
    // Cashu payments are single-use and travel in X-Cashu, which is not part of the cache key: never cache.
    if (d.outcome !== 'allow' || d.reason !== 'paid' || d.rail !== 'lightning' || d.singleUse) return 0;
    // A prepaid balance is drawn by every request: a cached pass would serve requests nobody paid for.
    if (d.balanceMsat !== undefined || d.route.access === 'balance') return 0;
    // nginx's whole-second clock, the age of the revocation list and the credential's expiry: auth-cache-lifetime.ts.
    return authCacheSeconds({ nowMs, maxSecs: this.parts.config.nginxCacheMaxSecs, validUntil: d.validUntil, revocationsAt: d.revocationsAt });
  }

  /**
   * Renders the answer for a non-allow outcome. Stateless: any l402d process can render any decision,
   * because it only needs the outcome, the reason and the request itself.
   */
  async render(
    outcome: string | undefined,
    reason: string | undefined,
    req: GateRequest,
    h: IncomingHttpHeaders,
    extra: { detail?: string; retryAfterSecs?: number } = {},
  ): Promise<Rendered> {
    // Bounded by the render deadline (timeouts.render_ms): a store or backend that stalls yields a 503 before
    // nginx gives up on this request (a challenge minted late is never shown, and costs nothing).
    const progress: RenderProgress = { waitingOn: 'store_unavailable' };
    const work = this.renderNow(outcome, reason, req, h, extra, progress);
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), this.parts.config.timeouts.renderMs)));
    try {
      const r = await Promise.race([work, late]);
      if (r !== 'late') return r;
    } finally {
      clearTimeout(timer);
    }
    work.catch(() => undefined);
    this.parts.log.warn({ event: 'render_deadline', reason: progress.waitingOn, ms: this.parts.config.timeouts.renderMs }, 'render deadline passed: answering 503');
    // (backend_unavailable is counted by renderNow itself.)
    if (progress.waitingOn === 'store_unavailable') this.parts.metrics?.inc('l402_unavailable_total', { route: (req.path !== undefined && this.routes.lookup(req.path, req.routePin)?.id) || 'none', reason: progress.waitingOn });
    return this.renderNow('unavailable', progress.waitingOn, req, h, {}, progress);
  }

  private async renderNow(
    outcome: string | undefined,
    reason: string | undefined,
    req: GateRequest,
    h: IncomingHttpHeaders,
    extra: { detail?: string; retryAfterSecs?: number },
    progress: RenderProgress,
  ): Promise<Rendered> {
    const cfg = this.parts.config;
    // An MPP session's topUp or close (the auth answer said `management`): performed and answered here.
    let sessionClosed: { refundSats: number; refundStatus: string } | undefined;
    if (outcome === 'management') {
      const m = await this.manageSession(req);
      if (m.ok) return m.rendered;
      outcome = m.reason === 'store_unavailable' ? 'unavailable' : 'invalid';
      reason = m.reason;
      sessionClosed = m.closed;
      // The refusal offers a fresh payment: within the invoice rate limit, as a refusal the decision made.
      const route = req.path === undefined ? undefined : this.routes.lookup(req.path, req.routePin);
      if (m.reason !== 'store_unavailable' && route) {
        const l = await refuseManaged(req, route, m.reason, Object.create(this.decideDeps) as DecideDeps).catch((): Decision => ({ outcome: 'unavailable', route, reason: 'store_unavailable' }));
        if (l.outcome === 'rate_limited' || l.outcome === 'unavailable') {
          outcome = l.outcome;
          reason = l.reason;
          extra = { retryAfterSecs: l.outcome === 'rate_limited' ? l.retryAfterSecs : undefined, detail: l.outcome === 'rate_limited' ? l.detail : undefined };
        }
      }
    }
    // A close of a session closed already: the refusal says what its close paid (the client's answer may have been lost).
    if (outcome === 'invalid' && reason === 'mpp_session_closed' && !sessionClosed && req.path !== undefined) {
      const route = this.routes.lookup(req.path, req.routePin);
      if (route && route.access === 'balance' && otherSchemeOf(req, route) === 'mpp') {
        const ledger = this.sessionLedger(route);
        // Refused as closed because it was idle: the server closes it now, with its refund, if no process has yet.
        const v = verifySessionCredential(req.credentials.authorization!, { masters: this.parts.rootKeys, realm: cfg.service, scope: sessionScope(route), now: Math.floor(Date.now() / 1000) });
        if (v.ok && route.sessionIdleSecs) {
          const r = await expireSession(ledger, v.v.sessionId).catch(() => 'not_open' as const);
          if (typeof r === 'object') this.noteSessionClose(route, v.v.sessionId, r.refundSats, r.refundStatus, 'idle');
        }
        sessionClosed = await closedSessionOf(req.credentials.authorization!, route, sessionScope(route), { realm: cfg.service, ledger });
      }
    }
    // Free text only for Cashu rejections (NUT-24 reasons), and only printable ASCII, bounded.
    const detail = extra.detail && /^[\x20-\x7e]{1,300}$/.test(extra.detail) ? extra.detail : undefined;
    const grpc = isGrpc(header(h, 'content-type'), header(h, 'x-original-protocol'));
    const retryAfterSecs = outcome === 'rate_limited' && extra.retryAfterSecs && extra.retryAfterSecs > 0 ? Math.min(extra.retryAfterSecs, 86_400) : cfg.retryAfterSecs;
    const base = { method: req.method, html: !grpc && prefersHtml(header(h, 'accept')), grpc, lsat: cfg.challenge.lsat, retryAfterSecs };
    // X-L402-Scheme comes with the snippets that also serve /_l402/page/cookie (and is set in standalone mode).
    const page = { originalUri: req.uri ?? req.path ?? '/', method: req.method, devWallet: devPayEnabled(this), autoDetect: false, cookie: header(h, 'x-l402-scheme') !== undefined };
    // Only the outcomes we know; anything else (or a missing one) renders as a plain challenge.
    let o: RenderOutcome = outcome && RENDERABLE.has(outcome as RenderOutcome) ? (outcome as RenderOutcome) : 'challenge';
    let why = reason && /^[a-z][a-z0-9_]{0,39}$/.test(reason) ? reason : o === 'challenge' ? 'no_credential' : 'unknown';
    const route = req.path === undefined ? undefined : this.routes.lookup(req.path, req.routePin);
    // /_l402/page/cookie finds the route by the path alone (it has no location): under a pin that names another
    // route than the path's, the page offers no cookie (the credential goes in Authorization).
    if (req.routePin !== undefined && req.path !== undefined && this.routes.lookup(req.path) !== route) page.cookie = false;
    if ((o === 'challenge' || o === 'invalid') && (!route || req.path === undefined)) {
      o = 'forbidden';
      why = req.path === undefined ? 'bad_path' : 'no_route';
    }
    let challenge: Challenge | undefined;
    let shared = false;
    let cashuRequest: string | undefined;
    let cashuAmountMsat: number | undefined;
    const offersPayment = o === 'challenge' || o === 'invalid' || o === 'cashu_rejected';
    if (offersPayment && route && req.path !== undefined && this.parts.cashu && route.rails.includes('cashu')) {
      cashuAmountMsat = (await this.price(route, req.path)).amountMsat;
      cashuRequest = this.parts.cashu.paymentRequest(cashuAmountMsat, route.id);
    }
    const schemes = route ? offeredNow(route, req.secure === true) : (['l402'] as PaymentScheme[]);
    // A route that sells only over HTTPS-only schemes (MPP, x402), asked over plain HTTP: nothing can be offered.
    if (route && schemes.length === 0 && (o === 'challenge' || o === 'invalid')) {
      o = 'forbidden';
      why = 'https_required';
    }
    // L402 and MPP share one invoice (both need its preimage); x402 gets one of its own (below).
    const lightning = schemes.includes('l402') || schemes.includes('mpp');
    if (lightning && o === 'challenge' && why === 'payment_pending' && route) {
      challenge = await this.pendingChallenge(req, route);
      // Its invoice gone since the decision: what follows mints a new one, within the invoice rate limit.
      if (!challenge) {
        const l = await refuseExpiredPending(req, route, Object.create(this.decideDeps) as DecideDeps).catch((): Decision => ({ outcome: 'unavailable', route, reason: 'store_unavailable' }));
        o = l.outcome === 'rate_limited' || l.outcome === 'unavailable' ? l.outcome : 'invalid';
        why = l.reason;
        if (l.outcome === 'rate_limited') base.retryAfterSecs = l.retryAfterSecs;
      }
    }
    // An empty prepaid balance: a top-up for the same credential (its own macaroon, a new invoice bound to its
    // token id). A request without a valid balance credential for this route is offered a new balance instead.
    let balanceMsat: number | undefined;
    if (lightning && o === 'challenge' && why === 'balance_empty' && route && req.path !== undefined) {
      try {
        progress.waitingOn = 'backend_unavailable';
        const t = await this.mintTopup(route, { ...req, path: req.path });
        progress.waitingOn = 'store_unavailable';
        if (t) {
          challenge = t.challenge;
          balanceMsat = t.balanceMsat;
        } else why = 'no_credential';
      } catch (e) {
        this.parts.log.error({ event: 'challenge_failed', route: route.id, backend: this.parts.backend.kind, err: (e as Error).message }, 'top-up failed');
        o = 'unavailable';
        why = e instanceof BackendError ? 'backend_unavailable' : 'store_unavailable';
      }
    }
    // One shared-challenge key per answer (a price and a payee read), for the L402 challenge and the other offers.
    let sharedKey: Promise<string | undefined> | undefined;
    const shareKey = (r: RouteConfig): Promise<string | undefined> => (sharedKey ??= this.recentKey(r, req));
    if (lightning && !challenge && (o === 'challenge' || o === 'invalid') && route && req.path !== undefined) {
      try {
        progress.waitingOn = 'backend_unavailable';
        // A refused credential presented again (a replay storm, a retrying client) gets the same fresh
        // challenge for a few seconds rather than one invoice per copy: whoever pays it gets the preimage.
        const again = o === 'invalid' ? await shareKey(route) : undefined;
        let minted = again === undefined ? undefined : this.recentChallenges.get(again);
        const fresh = !minted;
        minted ??= this.mintChallenge(route, req.path, req.method);
        if (again !== undefined && fresh) this.recentChallenges.set(again, minted);
        challenge = await minted;
        progress.waitingOn = 'store_unavailable';
        if (route.autoDetect && fresh) await this.rememberInvoice(challenge);
        if (!fresh) shared = true;
      } catch (e) {
        const msg = e instanceof BackendError ? e.message : `challenge failed: ${(e as Error).message}`;
        this.parts.log.error({ event: 'challenge_failed', route: route.id, backend: this.parts.backend.kind, err: msg }, 'challenge failed');
        // Still sellable over Cashu: answer the challenge with X-Cashu alone.
        if (!cashuRequest) {
          o = 'unavailable';
          why = 'backend_unavailable';
        }
      }
    }
    // "Not paid yet" speaks of an invoice this answer no longer carries (Cashu only now): a plain challenge.
    if (why === 'payment_pending' && !challenge && o === 'challenge') why = 'no_credential';
    let offers: OtherOffers = {};
    if (route && req.path !== undefined && (o === 'challenge' || o === 'invalid' || o === 'cashu_rejected') && why !== 'payment_pending') {
      offers = await (o === 'invalid' ? shareKey(route) : Promise.resolve(undefined)).then((again) => this.otherOffers(route, req, why, schemes, challenge, progress, again)).catch((e: Error) => {
        this.parts.log.error({ event: 'challenge_failed', route: route.id, backend: this.parts.backend.kind, err: e.message }, 'MPP session or x402 offer failed');
        return {};
      });
      // Nothing at all to offer: the backend failed for every scheme, or (a route offering only MPP) the price
      // is not whole satoshis. A 402 must carry an offer the client can take.
      const offered = (challenge && schemes.includes('l402')) || offers.mpp || offers.x402 || cashuRequest;
      if (!offered && o !== 'cashu_rejected') {
        if (challenge) this.parts.log.warn({ event: 'no_payable_offer', route: route.id, amount_msat: challenge.amountMsat }, 'no scheme of this route can charge its price (MPP charges whole satoshis): answering 503');
        o = 'unavailable';
        why = challenge ? 'no_payable_offer' : 'backend_unavailable';
      }
    }
    if (challenge && !shared) this.parts.metrics?.inc('l402_challenges_issued_total', { route: route!.id });
    if (o === 'unavailable' && why === 'backend_unavailable') this.parts.metrics?.inc('l402_unavailable_total', { route: route?.id ?? 'none', reason: why });
    // The page sets the credential cookie only where the browser will send it back for this very page.
    const cookie = page.cookie && route !== undefined && cookieCovers(route, page.originalUri) && pageCookieTakes(page.originalUri);
    const out = render({
      ...base,
      outcome: o,
      reason: why,
      detail: why === reason ? detail : undefined,
      route,
      challenge: schemes.includes('l402') ? challenge : undefined,
      cashuRequest,
      cashuAmountMsat,
      mpp: offers.mpp,
      x402: offers.x402,
      balanceMsat: o === 'challenge' && why === 'balance_empty' ? balanceMsat : undefined,
      sessionClosed: why === reason ? sessionClosed : undefined,
      page: { ...page, autoDetect: !!route?.autoDetect, cookie },
    });
    // A credential cookie that no longer pays (spent, expired, forged, revoked) is deleted with its refusal, so
    // the browser's next visit is a plain challenge. One refused only for this request (another path, method or
    // capability of its route: a prefetch, a link under its Path) still pays for its own and is kept. The scheme
    // is nginx's (`$scheme`), never a client's.
    if (o === 'invalid' && route && this.cookieWasCredential(req, route) && !(await this.cookieStillPays(req, route, why))) out.headers.push(['Set-Cookie', clearingSetCookie(route, header(h, 'x-l402-scheme') === 'https')]);
    return out;
  }

  /**
   * The key under which a refused credential's request shares a recent challenge (undefined: it never shares),
   * with what a challenge minted now would charge and pay to (both cached reads; see RecentChallenges).
   */
  private async recentKey(route: RouteConfig, req: GateRequest): Promise<string | undefined> {
    if (req.path === undefined) return undefined;
    const [p, payee] = await Promise.all([this.price(route, req.path), this.payeeFor(route, req.path)]);
    return this.recentChallenges.key(route, req, { amountMsat: p.amountMsat, pathPriced: p.pathPriced, payee });
  }

  /**
   * A cookie refused for this request only (another path, method or capability of its route) still pays for its
   * own unless its single use is spent: kept then. On store trouble it is kept too (deleting loses a payment).
   */
  private async cookieStillPays(req: GateRequest, route: RouteConfig, why: string): Promise<boolean> {
    if (!REFUSED_HERE_ONLY.has(why)) return false;
    const parsed = cookieCredential(req.credentials.cookie, route);
    if (parsed.kind !== 'l402') return false;
    let id;
    try {
      id = decodeIdentifier(decodeMacaroon(parsed.credential.macaroon).identifier);
    } catch {
      return false;
    }
    if (!id) return false;
    try {
      return (await withTimeout(this.parts.store.get(claimKey(id.paymentHash)), this.parts.config.timeouts.storeMs, 'store get')) === undefined;
    } catch {
      return true;
    }
  }

  /** The request's credential was its route's cookie (no credential header took precedence over it). */
  private cookieWasCredential(req: GateRequest, route: RouteConfig): boolean {
    const c = req.credentials;
    if (otherSchemeOf(req, route)) return false;
    if (this.parts.cashu && route.rails.includes('cashu') && parseCashuCredential({ 'x-cashu': c.xCashu, authorization: c.authorization }).kind !== 'none') return false;
    return parseCredential(c).kind === 'none' && cookieCredential(c.cookie, route).kind !== 'none';
  }

  /** MPP's `WWW-Authenticate: Payment` (on the L402 invoice) and x402's PAYMENT-REQUIRED (on an invoice of its own). */
  private async otherOffers(route: RouteConfig, req: GateRequest, why: string, schemes: readonly PaymentScheme[], challenge: Challenge | undefined, progress: RenderProgress, again?: string): Promise<OtherOffers> {
    const out: OtherOffers = {};
    const scope = { routeId: route.id, method: req.method, path: req.path! };
    const master = this.parts.rootKeys[0]!;
    // A balance route offers MPP's session intent: a deposit invoice of its own, from our own node (which pays
    // the refund on close), never where a payee's Lightning address would be paid instead.
    if (route.access === 'balance' && schemes.includes('mpp')) {
      if ((await this.payeeFor(route, req.path!)) !== undefined) return out;
      progress.waitingOn = 'backend_unavailable';
      const cfg = this.parts.config;
      // A refused credential presented again gets the same offer for a few seconds (as L402's challenge).
      let minted = again === undefined ? undefined : this.recentSessionOffers.get(again);
      const fresh = !minted;
      if (!minted) {
        minted = this.price(route, req.path!).then(async (p) => ({
          offer: await mintSessionOffer(route, sessionScope(route), p.amountMsat, { backend: this.parts.backend, master, realm: cfg.service, memo: cfg.invoice.memo, invoiceExpirySecs: cfg.invoice.expirySecs, backendTimeoutMs: cfg.timeouts.backendMs, idleTimeoutSecs: route.sessionIdleSecs || undefined }),
        }));
        if (again !== undefined) this.recentSessionOffers.set(again, minted);
      }
      out.mpp = (await minted).offer;
      progress.waitingOn = 'store_unavailable';
      if (out.mpp && fresh) this.parts.metrics?.inc('l402_invoices_generated_total', { backend: this.parts.backend.kind, route: route.id });
      return out;
    }
    // A dynamic price that is not whole satoshis cannot be charged in MPP: that 402 offers the rest.
    if (challenge && schemes.includes('mpp') && mppPayable(challenge.amountMsat)) {
      // It expires with its invoice, and never after the L402 credential sold with it: the two share one spent
      // mark, which lives until that credential's minted expiry (plus a grace period), so an MPP credential
      // outliving it (a payee's or node's invoice that lives longer than asked) would pay a second time.
      const expiresAt = challenge.validUntil === undefined ? challenge.invoiceExpiresAt : Math.min(challenge.invoiceExpiresAt, challenge.validUntil);
      const c = buildMppChallenge(master, this.parts.config.service, scope, { invoice: challenge.invoice, paymentHash: challenge.paymentHash, amountMsat: challenge.amountMsat, expiresAt });
      out.mpp = formatMppChallenge(c);
    }
    // x402's payment is checked by looking its invoice up on our own node: never offered for an invoice that a
    // payee's Lightning address would issue (a store override of the route's payee), which nobody could check.
    if (schemes.includes('x402') && (await this.payeeFor(route, req.path!)) === undefined) {
      progress.waitingOn = 'backend_unavailable';
      // An offer of its own for every answer, never one kept for a refused payment sent again (as L402's challenge
      // is): x402 proves payment by the invoice being paid, so whoever holds an offer is served once its invoice
      // is paid, and two clients behind one address sending the same stale or garbage payment would share it,
      // one spending the other's payment (as auto-detect's macaroons, which RecentChallenges never shares).
      const inv = await this.mintChallenge(route, req.path!, req.method);
      progress.waitingOn = 'store_unavailable';
      const now = Math.floor(Date.now() / 1000);
      const reqs = buildX402Requirements(master, scope, { invoice: inv.invoice, paymentHash: inv.paymentHash, amountMsat: inv.amountMsat, expiresAt: inv.invoiceExpiresAt }, now);
      const url = x402ResourceUrl(req.host, req.uri ?? req.path!);
      out.x402 = { header: paymentRequired(url, [reqs], X402_ERROR[why] ?? 'PAYMENT-SIGNATURE header is required'), amountMsat: inv.amountMsat };
    }
    return out;
  }

  /**
   * Response headers for a dry-run pass, and its JSON log line. A real challenge is minted only for the
   * configured sample of would-be challenges, so a busy shadow route does not flood the node with invoices.
   */
  async dryRunHeaders(d: Extract<Decision, { reason: 'dry_run' }>, req: GateRequest): Promise<Array<[string, string]>> {
    const { route, dryRun } = d;
    const out: Array<[string, string]> = [['X-L402-Dry-Run', '1']];
    const wouldCharge = dryRun.wouldReturn === 402 || dryRun.wouldReturn === 401 || dryRun.wouldReturn === 429;
    const price = req.path === undefined ? { amountMsat: route.amountMsat, source: 'static' } : await this.price(route, req.path);
    if (wouldCharge) out.push(['X-L402-Dry-Run-Price-Msat', String(price.amountMsat)]);
    if (dryRun.wouldReturn === 429) out.push(['X-L402-Dry-Run-Rate-Limited', '1'], ['X-L402-Dry-Run-Retry-After', String(dryRun.retryAfterSecs ?? 1)]);
    let challengeMinted = false;
    // A sample Lightning challenge only where the route sells Lightning (a Cashu-only route has no invoice to show).
    if ((dryRun.wouldReturn === 402 || dryRun.wouldReturn === 401) && route.rails.includes('lightning') && req.path !== undefined && Math.random() < this.parts.config.dryRunInvoiceSampleRate) {
      try {
        const c = await this.mintChallenge(route, req.path, req.method);
        out.push(['X-L402-Dry-Run-Challenge', formatChallenges(c.macaroon, c.invoice, { lsat: false })[0]!]);
        challengeMinted = true;
      } catch (e) {
        this.parts.metrics?.inc('l402_dry_run_challenge_errors_total', { route: route.id });
        this.parts.log.warn({ event: 'dry_run_challenge_failed', route: route.id, err: (e as Error).message }, 'dry-run challenge failed');
      }
    }
    this.parts.log.info(
      { event: 'dry_run', route: route.id, price_msat: price.amountMsat, price_source: price.source, auth_state: dryRun.authState, would_return: dryRun.wouldReturn, reason: dryRun.reason, rate_limited: dryRun.wouldReturn === 429, challenge_minted: challengeMinted },
      'dry run',
    );
    return out;
  }

  /** Which backend gets paid: the payee's Lightning address, else the configured backend. */
  private async backendFor(route: RouteConfig, path: string): Promise<LightningBackend> {
    const address = await this.payeeFor(route, path);
    return address ? this.tenants.forAddress(address) : this.parts.backend;
  }

  private async mintChallenge(route: RouteConfig, path: string, method: string): Promise<Challenge> {
    const cfg = this.parts.config;
    const { amountMsat, pathPriced } = await this.price(route, path);
    const m = this.parts.metrics;
    const payee = await this.backendFor(route, path);
    const backend = payee.kind;
    const started = process.hrtime.bigint();
    const done = (ok: boolean) => {
      m?.observe('l402_backend_duration_seconds', { backend, op: 'create_invoice' }, Number(process.hrtime.bigint() - started) / 1e9);
      m?.inc(ok ? 'l402_invoices_generated_total' : 'l402_invoices_generation_errors_total', { backend, route: route.id });
    };
    return createChallenge(route, { path, method, amountMsat, pathPriced }, {
      backend: payee,
      rootKey: this.parts.rootKeys[0]!,
      service: cfg.service,
      location: cfg.service,
      memo: cfg.invoice.memo,
      invoiceExpirySecs: cfg.invoice.expirySecs,
      backendTimeoutMs: cfg.timeouts.backendMs,
    }).then(
      (c) => (done(true), c),
      (e: unknown) => {
        done(false);
        throw e;
      },
    );
  }

  /** An MPP session's store, refunds and idle timeout for this route (mpp-session-ledger.ts). */
  private sessionLedger(route: RouteConfig): SessionLedgerDeps {
    const cfg = this.parts.config;
    const backend = this.parts.backend;
    const log = this.parts.log;
    const pay = backend.payInvoice?.bind(backend);
    return sessionLedgerDeps(
      { store: this.parts.store, rootKeys: this.parts.rootKeys, storeTimeoutMs: cfg.timeouts.storeMs },
      {
        // A Lightning payment takes longer than an invoice: it is given REFUND_PAY_MS (a close answered 503 at the
        // render deadline meanwhile still records the refund's outcome, which a repeated close is told).
        payInvoice: pay ? (p) => withTimeout(pay(p, AbortSignal.timeout(REFUND_PAY_MS)), REFUND_PAY_MS, 'payInvoice') : undefined,
        onRefundFailed: (sessionId, refundSats, why) => log.warn({ event: 'mpp_session_refund_failed', route: route.id, session: sessionId, refund_sats: refundSats, err: why }, 'MPP session refund did not complete (not retried)'),
        idleSecs: route.sessionIdleSecs,
      },
    );
  }

  /** Counts and logs a close (the client's or the server's for idleness). */
  private noteSessionClose(route: RouteConfig, sessionId: string, refundSats: number, refundStatus: string, by: 'client' | 'idle'): void {
    this.parts.metrics?.inc('l402_mpp_session_closes_total', { route: route.id, refund: refundStatus });
    if (refundStatus === 'succeeded' && refundSats > 0) this.parts.metrics?.inc('l402_mpp_session_refunded_msat_total', { route: route.id }, refundSats * 1000);
    this.parts.log.info({ event: 'mpp_session_closed', route: route.id, session: sessionId, by, refund_sats: refundSats, refund_status: refundStatus }, 'MPP session closed');
  }

  /** Performs an MPP session's topUp or close (see mpp-session-render.ts). */
  private async manageSession(req: GateRequest): Promise<Awaited<ReturnType<typeof manageSession>>> {
    // The route the decision used: the location's pin, when it set one (a pinned route is never found by path).
    const route = req.path === undefined ? undefined : this.routes.lookup(req.path, req.routePin);
    if (!route || req.path === undefined || route.access !== 'balance' || otherSchemeOf(req, route) !== 'mpp') return { ok: false, reason: 'mpp_session_malformed_credential' };
    const cfg = this.parts.config;
    const log = this.parts.log;
    const r = await manageSession(req.credentials.authorization!, route, sessionScope(route), req.method, {
      realm: cfg.service,
      ledger: this.sessionLedger(route),
      onTopUp: (sessionId, depositHash, msat) => this.recordCredit({ kind: 'topup', msat, id: depositHash }, { route, tokenId: sessionId, paymentHash: sessionId }),
    });
    if (r.ok && r.closed) this.noteSessionClose(route, r.sessionId, r.closed.refundSats, r.closed.refundStatus, 'client');
    else if (r.ok) log.info({ event: 'mpp_session_topped_up', route: route.id, session: r.sessionId }, 'MPP session topped up');
    return r;
  }

  /** A top-up invoice for the balance credential this request carries (see policy/balance-topup.ts). */
  private async mintTopup(route: RouteConfig, req: GateRequest & { path: string }) {
    const cfg = this.parts.config;
    const payee = await this.backendFor(route, req.path);
    const m = this.parts.metrics;
    const t = await createTopup(req.credentials, route, req.path, req.method, {
      rootKeys: this.parts.rootKeys,
      service: cfg.service,
      store: this.parts.store,
      storeTimeoutMs: cfg.timeouts.storeMs,
      backend: payee,
      backendTimeoutMs: cfg.timeouts.backendMs,
      memo: cfg.invoice.memo,
      invoiceExpirySecs: cfg.invoice.expirySecs,
      unknownCaveats: cfg.unknownCaveats,
    });
    if (t) m?.inc('l402_invoices_generated_total', { backend: payee.kind, route: route.id });
    return t;
  }

  /** A payout invoice from a tenant's Lightning address (Cashu redemption). */
  tenantInvoice(address: string, amountMsat: number, memo: string, signal?: AbortSignal): Promise<string> {
    return this.tenants.invoice(address, amountMsat, memo, signal);
  }

  async close(): Promise<void> {
    this.sessionSweeper?.stop();
    await this.parts.sales?.drain();
    return this.tenants.close();
  }

  /** Auto-detect routes: remember the invoice so polling with the macaroon repeats it, not a new one. */
  private async rememberInvoice(c: Challenge): Promise<void> {
    const ttl = c.invoiceExpiresAt - Math.floor(Date.now() / 1000);
    if (ttl <= 0) return;
    const value = JSON.stringify({ invoice: c.invoice, amountMsat: c.amountMsat, expiresAt: c.invoiceExpiresAt, validUntil: c.validUntil });
    await withTimeout(this.parts.store.set(pendingInvoiceKey(c.paymentHash), value, ttl), this.parts.config.timeouts.storeMs, 'store set').catch((e: Error) =>
      this.parts.log.warn({ err: e.message }, 'could not remember invoice for auto-detect'),
    );
  }

  /**
   * The protected upstream failed before answering this request (502/504): gives back the single-use claim
   * this request owns (see policy/release.ts) and renders the gateway answer, saying whether the payment
   * still pays. Never throws.
   */
  private releaseDeps(): ReleaseDeps {
    return {
      routes: this.routes,
      rootKeys: this.parts.rootKeys,
      store: this.parts.store,
      storeTimeoutMs: this.parts.config.timeouts.storeMs,
      cashu: this.parts.cashu !== undefined,
      ngxL402RootKey: this.parts.config.ngxL402RootKey,
      realm: this.parts.config.service,
    };
  }

  async releaseAfterUpstreamFailure(req: GateRequest, status: 502 | 504, o: { answered?: boolean; incomplete?: boolean } = {}): Promise<Rendered> {
    let result: ReleaseResult | 'answered' | 'incomplete';
    try {
      // The upstream sent (part of) an answer: it received and handled the request, so nothing is given back.
      // Nor when it failed while the client's request was still arriving (standalone): it may have worked on
      // the part it got, and a client could stall its body on purpose to have the upstream give up.
      result = o.answered ? 'answered' : o.incomplete ? 'incomplete' : await releaseClaim(req, this.releaseDeps());
    } catch (e) {
      this.parts.log.error({ err: (e as Error).message, path: req.path }, 'claim release failed');
      result = 'store_unavailable';
    }
    const route = req.path === undefined ? undefined : this.routes.lookup(req.path, req.routePin)?.id;
    this.parts.log.warn({ event: 'upstream_failure', route, method: req.method, path: req.path, status, release: result }, 'upstream failed before answering a paid request');
    return upstreamFailure(status, result, this.parts.config.retryAfterSecs, req.method);
  }

  /**
   * nginx ended a paid request after the decision with nothing served and no byte sent to any upstream
   * (protect.conf's post_action, `status`: nginx's 400/408/413 for the body, 499, or none): what this request
   * spent (its single-use claim or draw, by its request id) is given back, so the client can send it again.
   * Nobody reads the answer.
   */
  async releaseAbandoned(req: GateRequest, status: string): Promise<void> {
    let result: ReleaseResult;
    try {
      // nginx may have dropped the auth subrequest while l402d was deciding it (the client left): its claim
      // lands after this call arrives unless this waits for it (decided in this process; see decide()).
      const deciding = req.requestId === undefined ? undefined : this.deciding.get(req.requestId);
      if (deciding) await deciding.catch(() => undefined);
      result = await releaseClaim(req, this.releaseDeps());
    } catch (e) {
      this.parts.log.error({ err: (e as Error).message, path: req.path }, 'claim release failed');
      result = 'store_unavailable';
    }
    const route = req.path === undefined ? undefined : this.routes.lookup(req.path, req.routePin)?.id;
    this.parts.log.info({ event: 'abandoned', route, method: req.method, path: req.path, status, release: result }, 'nginx ended a paid request before anything reached the upstream');
  }

  /** The same challenge again while its invoice can still be paid; undefined means "mint a new one". */
  private async pendingChallenge(req: GateRequest, route: RouteConfig): Promise<Challenge | undefined> {
    const parsed = parseCredential(req.credentials);
    if (parsed.kind !== 'l402') return undefined;
    try {
      const mac = decodeMacaroon(parsed.credential.macaroon);
      const id = decodeIdentifier(mac.identifier);
      if (!id || !signedByTokenKey(mac, id.tokenId, this.parts.rootKeys)) return undefined;
      const hash = id.paymentHash.toString('hex');
      const raw = await withTimeout(this.parts.store.get(pendingInvoiceKey(hash)), this.parts.config.timeouts.storeMs, 'store get');
      if (!raw) return undefined;
      const v = JSON.parse(raw) as { invoice: string; amountMsat: number; expiresAt: number; validUntil?: number };
      if (v.expiresAt <= Math.floor(Date.now() / 1000)) return undefined;
      return { macaroon: encodeMacaroonBase64(mac), invoice: v.invoice, paymentHash: hash, amountMsat: v.amountMsat, invoiceExpiresAt: v.expiresAt, validUntil: v.validUntil };
    } catch {
      return undefined;
    }
  }
}

const PAYMENT_STATE: Record<ReleaseResult | 'answered' | 'incomplete', { payment: 'not_consumed' | 'consumed' | 'unknown'; detail: string }> = {
  incomplete: { payment: 'consumed', detail: 'The service failed while this request was still being sent to it, after it had started receiving it. A single-use payment counts as used.' },
  answered: { payment: 'consumed', detail: 'The service received this request and started answering it, but its answer could not be delivered. A single-use payment counts as used.' },
  released: { payment: 'not_consumed', detail: 'The service failed before answering. Your payment was not consumed: retry the same request with the same credential.' },
  not_claimed: { payment: 'not_consumed', detail: 'The service failed before answering. Your credential was not consumed by this request: retry it.' },
  none: { payment: 'unknown', detail: 'The service failed before answering. Retry the request.' },
  not_owned: { payment: 'consumed', detail: 'The service failed before answering, and this credential has been used already.' },
  cashu: { payment: 'consumed', detail: 'The service failed before answering. Your Cashu payment was accepted (the ecash was swapped or claimed by the gate) and is not refunded: pay again with new proofs.' },
  store_unavailable: { payment: 'unknown', detail: 'The service failed before answering, and the gate could not give your single-use payment back right now: it may count as used.' },
};

/** The answer to a client whose paid request the protected upstream failed to serve. */
export function upstreamFailure(status: 502 | 504, result: ReleaseResult | 'answered' | 'incomplete', retryAfterSecs: number, method: string): Rendered {
  const s = PAYMENT_STATE[result];
  const body = `${JSON.stringify({
    type: 'urn:l402:problem:upstream-unavailable',
    title: status === 504 ? 'Upstream timed out' : 'Upstream unavailable',
    status,
    reason: 'upstream_unavailable',
    payment: s.payment,
    detail: s.detail,
    retry_after: retryAfterSecs,
  })}\n`;
  return {
    status,
    headers: [
      ['Content-Type', 'application/problem+json'],
      ['Cache-Control', 'no-store'],
      ['Retry-After', String(retryAfterSecs)],
    ],
    body: method === 'HEAD' ? '' : body,
  };
}

import { test, before, after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { parseConfig, type RouteConfig } from '../../src/config/config.js';
import { decide, pendingInvoiceKey, type DecideDeps, type GateRequest } from '../../src/policy/decide.js';
import { createChallenge, type Challenge } from '../../src/policy/challenge.js';
import { RouteTable } from '../../src/policy/routes.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { DevWallet } from '../../src/rails/lightning/dev/dev-wallet.js';
import { attenuate, caveatPredicates, decodeMacaroonBase64, encodeMacaroon, encodeMacaroonBase64, mintMacaroon, type Macaroon } from '../../src/protocol/macaroon.js';
import { checkCaveats, mintCaveats } from '../../src/protocol/caveats.js';
import { decodeIdentifier, mintedCaveatCount } from '../../src/protocol/identifier.js';
import type { Price } from '../../src/policy/pricing.js';
import type { Store } from '../../src/store/store.js';
import { Gate } from '../../src/server/gate.js';
import { createLogger } from '../../src/util/log.js';
import { sleep } from '../../src/util/timeout.js';

const cfg = parseConfig(
  `lightning: { type: dev }\nroutes:
  - { match: /premium, amount_msat: 10000 }
  - { match: /other, amount_msat: 10000 }
  - { match: /timed/, amount_msat: 5000, access: timed, macaroon_timeout: 60 }
  - { match: /forever, amount_msat: 5000, access: indefinite }
  - { match: /getonly, amount_msat: 5000, methods: [GET] }
  - { match: /auto, amount_msat: 4000, auto_detect_payment: true }
`,
  { env: {} },
);
const MASTER = randomBytes(32);
const OLD_MASTER = randomBytes(32);
let dir: string;
let wallet: DevWallet;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'l402-decide-'));
  wallet = DevWallet.open(dir);
});
after(() => {
  wallet.close();
  rmSync(dir, { recursive: true, force: true });
});

function deps(over: Partial<DecideDeps & { store: Store }> = {}): DecideDeps & { store: Store } {
  return { routes: new RouteTable(cfg.routes), service: 'l402', rootKeys: [MASTER], store: new MemoryStore(), storeTimeoutMs: 500, ...over };
}
function route(match: string): RouteConfig {
  return cfg.routes.find((r) => r.match === match)!;
}
async function buy(match: string, path: string, method = 'GET', key = MASTER, now?: () => number): Promise<{ c: Challenge; preimage: string }> {
  const c = await createChallenge(route(match), { path, method, amountMsat: route(match).amountMsat }, {
    backend: wallet, rootKey: key, service: 'l402', location: 'l402', memo: 'test', invoiceExpirySecs: 600, backendTimeoutMs: 2000, now,
  });
  return { c, preimage: wallet.pay(c.invoice).toString('hex') };
}
function req(path: string, authorization?: string, method = 'GET'): GateRequest {
  return { path, method, credentials: { authorization } };
}

test('unpaid, paid, replayed', async () => {
  const d = deps();
  assert.equal((await decide(req('/premium'), d)).outcome, 'challenge');
  const { c, preimage } = await buy('/premium', '/premium');
  const auth = `L402 ${c.macaroon}:${preimage}`;
  assert.equal((await decide(req('/premium', auth), d)).outcome, 'allow');
  const again = await decide(req('/premium', auth), d);
  assert.deepEqual([again.outcome, again.reason], ['invalid', 'already_used']);
});

test('single-use claims are atomic under concurrency', async () => {
  const d = deps();
  const { c, preimage } = await buy('/premium', '/premium');
  const results = await Promise.all(Array.from({ length: 20 }, () => decide(req('/premium', `L402 ${c.macaroon}:${preimage}`), d)));
  assert.equal(results.filter((r) => r.outcome === 'allow').length, 1);
});

test('every way a credential can be wrong is a 401 with its reason', async () => {
  const d = deps();
  const { c, preimage } = await buy('/premium', '/premium');
  const cases: Array<[GateRequest, string]> = [
    [req('/premium', `L402 ${c.macaroon}:${'00'.repeat(32)}`), 'wrong_preimage'],
    [req('/premium', `L402 ${c.macaroon}`), 'missing_preimage'],
    [req('/premium', `L402 ${c.macaroon}:${preimage}`, 'POST'), 'wrong_method'],
    [req('/premium/x', `L402 ${c.macaroon}:${preimage}`), 'wrong_path'],
    [req('/other', `L402 ${c.macaroon}:${preimage}`), 'wrong_route'],
    [req('/premium', `L402 garbage!!:${preimage}`), 'malformed_credential'],
    [req('/premium', `L402 ${c.macaroon}:xyz`), 'malformed_credential'],
    [req('/premium', `L402 ${c.macaroon}:${preimage}:${preimage}`), 'malformed_credential'],
    [req('/premium', `L402 AAAA:${preimage}`), 'malformed_macaroon'],
    [req('/premium', 'L402'), 'malformed_credential'],
    [req('/premium', '\u0000\u0001'), 'malformed_credential'],
  ];
  for (const [r, reason] of cases) {
    const out = await decide(r, d);
    assert.deepEqual([out.outcome, out.reason], ['invalid', reason], r.credentials.authorization);
  }
  // Forged: signed with another master key.
  const forged = await buy('/premium', '/premium', 'GET', randomBytes(32));
  assert.equal((await decide(req('/premium', `L402 ${forged.c.macaroon}:${forged.preimage}`), d)).reason, 'bad_signature');
  // Tampered: a caveat removed without re-signing.
  const m = decodeMacaroonBase64(c.macaroon);
  const stripped = encodeMacaroon({ ...m, caveats: m.caveats.filter((cv) => !cv.id.toString().startsWith('path=')) }).toString('base64');
  assert.equal((await decide(req('/premium/x', `L402 ${stripped}:${preimage}`), d)).reason, 'bad_signature');
  // Attenuated: a client may only narrow; an unknown caveat fails closed in strict mode (by default it is
  // skipped, as the L402 spec says: see caveat-conditions.test.ts), a spelling of one of ours always.
  const narrowed = encodeMacaroonBase64(attenuate(m, 'method=POST'));
  assert.equal((await decide(req('/premium', `L402 ${narrowed}:${preimage}`), d)).reason, 'wrong_method');
  const unknown = encodeMacaroonBase64(attenuate(m, 'tier=gold'));
  assert.equal((await decide(req('/premium', `L402 ${unknown}:${preimage}`), { ...d, unknownCaveats: 'reject' })).reason, 'unknown_caveat');
  const lookalike = encodeMacaroonBase64(attenuate(m, 'Path=/premium'));
  assert.equal((await decide(req('/premium', `L402 ${lookalike}:${preimage}`), d)).reason, 'malformed_caveat');
  // Still unused after all that: the real credential passes once.
  assert.equal((await decide(req('/premium', `L402 ${c.macaroon}:${preimage}`), d)).outcome, 'allow');
});

test('a credential sold for one request stays single-use when its route is made reusable, even with an expiry its holder added; nginx never caches its answer', async () => {
  const { c, preimage } = await buy('/premium', '/premium');
  const m = decodeMacaroonBase64(c.macaroon);
  // The operator later sells /premium by the hour (same route id), or for good.
  for (const access of ['timed', 'indefinite'] as const) {
    const reusable = parseConfig(`lightning: { type: dev }\nroutes:\n  - { match: /premium, amount_msat: 10000, access: ${access}, macaroon_timeout: ${access === 'timed' ? 60 : 0} }\n`, { env: {} });
    const d = deps({ routes: new RouteTable(reusable.routes) });
    const stretched = encodeMacaroonBase64(attenuate(m, `l402_valid_until=${Math.floor(Date.now() / 1000) + 10 * 365 * 86_400}`));
    const first = await decide(req('/premium', `L402 ${stretched}:${preimage}`), d);
    assert.deepEqual([first.outcome, (first as { singleUse?: boolean }).singleUse], ['allow', true], access);
    const gate = new Gate({ config: reusable, store: new MemoryStore(), backend: wallet, rootKeys: [MASTER], log: createLogger('silent') });
    assert.equal(gate.cacheSecondsFor(first), 0, 'a single-use answer is never kept in nginx\'s auth cache');
    for (const auth of [`L402 ${stretched}:${preimage}`, `L402 ${c.macaroon}:${preimage}`]) {
      const again = await decide(req('/premium', auth), d);
      assert.deepEqual([again.outcome, again.reason], ['invalid', 'already_used'], access);
    }
  }
  // A reusable credential is cached as before.
  const f = await buy('/forever', '/forever');
  const ok = await decide(req('/forever', `L402 ${f.c.macaroon}:${f.preimage}`), deps());
  assert.equal((ok as { singleUse?: boolean }).singleUse, false);
  assert.ok(new Gate({ config: cfg, store: new MemoryStore(), backend: wallet, rootKeys: [MASTER], log: createLogger('silent') }).cacheSecondsFor(ok) > 0);
});

test('LSAT scheme, case-insensitive scheme, URL-safe unpadded base64, uppercase preimage', async () => {
  const d = deps();
  for (const fmt of [
    (mac: string, p: string) => `LSAT ${mac}:${p}`,
    (mac: string, p: string) => `l402 ${mac}:${p}`,
    (mac: string, p: string) => `L402 ${mac.replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')}:${p.toUpperCase()}`,
  ]) {
    const { c, preimage } = await buy('/premium', '/premium');
    assert.equal((await decide(req('/premium', fmt(c.macaroon, preimage)), d)).outcome, 'allow');
  }
});

test('other schemes are unpaid requests, not errors', async () => {
  assert.equal((await decide(req('/premium', 'Basic dXNlcjpwYXNz'), deps())).outcome, 'challenge');
  assert.equal((await decide(req('/premium', 'Bearer abc'), deps())).outcome, 'challenge');
});

test('timed credentials are reusable until expiry; indefinite ones forever', async () => {
  let now = Math.floor(Date.now() / 1000);
  const clock = () => now;
  const d = deps({ now: clock });
  const t = await buy('/timed/', '/timed/a', 'GET', MASTER, clock);
  const auth = `L402 ${t.c.macaroon}:${t.preimage}`;
  assert.equal((await decide(req('/timed/a', auth), d)).outcome, 'allow');
  assert.equal((await decide(req('/timed/b', auth), d)).outcome, 'allow', 'covers the whole route');
  assert.equal((await decide(req('/timed/b', auth, 'POST'), d)).outcome, 'allow');
  // Expiry: the invoice's (a minute) plus macaroon_timeout (60 s), so a payment at the invoice's last second buys the whole time.
  now += 60 + 59;
  assert.equal((await decide(req('/timed/a', auth), d)).outcome, 'allow', 'still valid until the invoice\'s expiry plus macaroon_timeout');
  now += 2;
  assert.equal((await decide(req('/timed/a', auth), d)).reason, 'expired');
  const f = await buy('/forever', '/forever');
  for (let i = 0; i < 3; i++) assert.equal((await decide(req('/forever', `L402 ${f.c.macaroon}:${f.preimage}`), d)).outcome, 'allow');
});

test('key rotation: credentials from a previous master key still verify', async () => {
  const old = await buy('/premium', '/premium', 'GET', OLD_MASTER);
  const auth = `L402 ${old.c.macaroon}:${old.preimage}`;
  assert.equal((await decide(req('/premium', auth), deps())).reason, 'bad_signature');
  assert.equal((await decide(req('/premium', auth), deps({ rootKeys: [MASTER, OLD_MASTER] }))).outcome, 'allow');
});

test('gRPC metadata: hex macaroon carrying a preimage caveat', async () => {
  const { c, preimage } = await buy('/premium', '/premium', 'POST');
  const m = attenuate(decodeMacaroonBase64(c.macaroon), `preimage=${preimage}`);
  const r: GateRequest = { path: '/premium', method: 'POST', credentials: { token: encodeMacaroon(m).toString('hex') } };
  assert.equal((await decide(r, deps())).outcome, 'allow');
  const bad = attenuate(decodeMacaroonBase64(c.macaroon), `preimage=${'11'.repeat(32)}`);
  assert.equal((await decide({ ...r, credentials: { macaroon: encodeMacaroon(bad).toString('hex') } }, deps())).reason, 'wrong_preimage');
});

test('no route, bad path and unsold methods are refused', async () => {
  assert.equal((await decide(req('/free'), deps())).outcome, 'forbidden');
  assert.equal((await decide({ ...req('/x'), path: undefined }, deps())).reason, 'bad_path');
  assert.equal((await decide(req('/getonly', undefined, 'DELETE'), deps())).outcome, 'method_not_allowed');
});

test('a failing or hanging store fails closed with unavailable', async () => {
  const broken: Store = Object.assign(new MemoryStore(), { claimOnce: () => Promise.reject(new Error('down')) });
  const hanging: Store = Object.assign(new MemoryStore(), { claimOnce: () => new Promise<boolean>(() => {}) });
  for (const store of [broken, hanging]) {
    const { c, preimage } = await buy('/premium', '/premium');
    const out = await decide(req('/premium', `L402 ${c.macaroon}:${preimage}`), deps({ store, storeTimeoutMs: 100 }));
    assert.deepEqual([out.outcome, out.reason], ['unavailable', 'store_unavailable']);
  }
});

test('auto-detect: HMAC and caveats first, then one settlement lookup; unsettled is a pending challenge', async () => {
  const autoCfg = parseConfig(`lightning: { type: dev }\nroutes:\n  - { match: /auto, amount_msat: 1000, auto_detect_payment: true }\n`, { env: {} });
  const r = autoCfg.routes[0]!;
  const lookups: string[] = [];
  let settled = false;
  const d = deps({ routes: new RouteTable(autoCfg.routes), isSettled: async (h) => (lookups.push(h.toString('hex')), settled) });
  const c = await createChallenge(r, { path: '/auto', method: 'GET', amountMsat: 1000 }, { backend: wallet, rootKey: MASTER, service: 'l402', location: 'l402', memo: 't', invoiceExpirySecs: 600, backendTimeoutMs: 2000 });
  const forged = await createChallenge(r, { path: '/auto', method: 'GET', amountMsat: 1000 }, { backend: wallet, rootKey: randomBytes(32), service: 'l402', location: 'l402', memo: 't', invoiceExpirySecs: 600, backendTimeoutMs: 2000 });
  assert.equal((await decide(req('/auto', `L402 ${forged.macaroon}`), d)).reason, 'bad_signature');
  assert.equal(lookups.length, 0, 'no backend round trip for a forged macaroon');
  // The gate remembers the invoice it issued with the macaroon; polling repeats it while it can be paid.
  await d.store.set(pendingInvoiceKey(c.paymentHash), JSON.stringify({ invoice: c.invoice }), 600);
  const pending = await decide(req('/auto', `L402 ${c.macaroon}`), d);
  assert.deepEqual([pending.outcome, pending.reason], ['challenge', 'payment_pending']);
  // Once that invoice is gone (expired), a poll would mint a new one: it is treated as a new challenge
  // (401 expired, which the invoice rate limit counts), not a pending one that skips the limit.
  await d.store.del(pendingInvoiceKey(c.paymentHash));
  const gone = await decide(req('/auto', `L402 ${c.macaroon}`), d);
  assert.deepEqual([gone.outcome, gone.reason], ['invalid', 'expired']);
  settled = true;
  assert.equal((await decide(req('/auto', `L402 ${c.macaroon}`), d)).outcome, 'allow');
  assert.equal((await decide(req('/auto', `L402 ${c.macaroon}`), d)).reason, 'already_used');
  const failing = deps({ routes: new RouteTable(autoCfg.routes), isSettled: () => Promise.reject(new Error('node down')) });
  const c2 = await createChallenge(r, { path: '/auto', method: 'GET', amountMsat: 1000 }, { backend: wallet, rootKey: MASTER, service: 'l402', location: 'l402', memo: 't', invoiceExpirySecs: 600, backendTimeoutMs: 2000 });
  assert.deepEqual(Object.values(await decide(req('/auto', `L402 ${c2.macaroon}`), failing)).slice(0, 1), ['unavailable']);
});

test('auto-detect on a backend that cannot look up invoices is a config error at start', async () => {
  const { startGate } = await import('../../src/server/app.js');
  const { ConfigError } = await import('../../src/config/config.js');
  const { createLogger } = await import('../../src/util/log.js');
  const c = parseConfig(`listen: 127.0.0.1:0\nstore: { type: memory }\nroot_key: ${MASTER.toString('hex')}\nlightning: { type: dev }\nroutes:\n  - { match: /auto, amount_msat: 1000, auto_detect_payment: true }\n`, { env: {} });
  const noLookup = { kind: 'lnurl', createInvoice: wallet.createInvoice.bind(wallet), describe: () => 'x', close: async () => {} };
  await assert.rejects(startGate(c, { backend: noLookup, log: createLogger('silent') }), (e: Error) => e instanceof ConfigError && /auto_detect_payment needs a backend/.test(e.message));
});

test('a Cashu verification gets a deadline under nginx proxy_read_timeout; the rail answer decides', async () => {
  let seen: AbortSignal | undefined;
  const cashu = {
    accept: (_t: string, _p: number, _c: unknown, signal?: AbortSignal) => {
      seen = signal;
      // A rail stuck on a slow mint: it gives up when the deadline fires, as the real one does.
      return new Promise<{ ok: false; status: 503; reason: string }>((resolve) => signal?.addEventListener('abort', () => resolve({ ok: false, status: 503, reason: 'deadline' })));
    },
  };
  const started = Date.now();
  const alive = setTimeout(() => {}, 5000); // AbortSignal.timeout does not keep a bare test process running
  const d = await decide({ path: '/premium', method: 'GET', credentials: { xCashu: 'cashuBabc' } }, deps({ cashu, deadlineMs: 50 }));
  clearTimeout(alive);
  assert.equal(d.outcome, 'unavailable');
  assert.ok(seen, 'the rail was given a signal');
  assert.ok(seen!.aborted);
  assert.ok(Date.now() - started < 2000);
  const { DECISION_DEADLINE_MS } = await import('../../src/policy/decide.js');
  const { nginxTimeouts, NGINX_MARGIN_MS } = await import('../../src/policy/budget.js');
  const n = nginxTimeouts({ decisionMs: DECISION_DEADLINE_MS, renderMs: 2000 });
  assert.ok(DECISION_DEADLINE_MS + NGINX_MARGIN_MS <= n.authReadMs, 'below the snippets\u2019 proxy_read_timeout, with margin');
});

test('ecash is credited to the payee a Lightning invoice for the same request would pay (store overrides included)', async () => {
  const tenants: Array<string | undefined> = [];
  const cashu = {
    accept: async (_t: string, _p: number, ctx: { routeId: string; tenant?: string }) => {
      tenants.push(ctx.tenant);
      return { ok: true as const, amountMsat: 10000 };
    },
  };
  const payeeFor = async (_r: RouteConfig, path: string) => (path === '/premium' ? 'bob@override.example' : undefined);
  assert.equal((await decide({ path: '/premium', method: 'GET', credentials: { xCashu: 'cashuBabc' } }, deps({ cashu, payeeFor }))).outcome, 'allow');
  assert.equal((await decide({ path: '/other', method: 'GET', credentials: { xCashu: 'cashuBabc' } }, deps({ cashu, payeeFor }))).outcome, 'allow');
  assert.deepEqual(tenants, ['bob@override.example', undefined]);
});

test('a single-use claim that lands after its timeout is given back: the 503 is followed by a passing retry', async () => {
  // A store slow to answer, executing its commands in the order sent (as one Redis connection does).
  class SlowFifoStore extends MemoryStore {
    latencyMs = 120;
    private tail: Promise<unknown> = Promise.resolve();
    private later<T>(op: () => Promise<T>): Promise<T> {
      const run = this.tail.then(() => sleep(this.latencyMs)).then(op);
      this.tail = run.catch(() => undefined);
      return run;
    }
    override claimOnce(k: string, ttl?: number, v?: string) {
      return this.later(() => super.claimOnce(k, ttl, v));
    }
    override delIfValue(k: string, v: string) {
      return this.later(() => super.delIfValue(k, v));
    }
  }
  const store = new SlowFifoStore();
  const { c, preimage } = await buy('/premium', '/premium');
  const auth = `L402 ${c.macaroon}:${preimage}`;
  const d = deps({ store, storeTimeoutMs: 50 });
  const first = await decide(req('/premium', auth), d);
  assert.deepEqual([first.outcome, first.reason], ['unavailable', 'store_unavailable']);
  await sleep(400); // the claim lands, then its owner's delete
  store.latencyMs = 0;
  const retry = await decide(req('/premium', auth), deps({ store }));
  assert.equal(retry.outcome, 'allow', JSON.stringify(retry));
  const replay = await decide(req('/premium', auth), deps({ store }));
  assert.deepEqual([replay.outcome, replay.reason], ['invalid', 'already_used']);
});

test('a decision that ran past its deadline (a slow auto-detect lookup) does not spend the single-use credential', async () => {
  const { c } = await buy('/auto', '/auto');
  const store = new MemoryStore();
  const auth = `L402 ${c.macaroon}`; // macaroon only: the backend is asked whether the invoice was paid
  const slow = async () => (await sleep(80), true);
  const late = await decide(req('/auto', auth), deps({ store, isSettled: slow, deadlineMs: 30 }));
  // The decision answers at its deadline, naming what it was waiting for (the backend's lookup).
  assert.deepEqual([late.outcome, late.reason], ['unavailable', 'backend_unavailable']);
  await sleep(100); // the lookup lands late: still nothing claimed
  assert.equal(await store.get(`claim:l402:${c.paymentHash}`), undefined, 'nothing claimed');
  assert.equal((await decide(req('/auto', auth), deps({ store, isSettled: async () => true }))).outcome, 'allow');
});

test('a claim that finds its own earlier write (a command resent after a reconnect) is ours, not a replay', async () => {
  class ResentStore extends MemoryStore {
    override async claimOnce(k: string, ttl?: number, v?: string) {
      await super.claimOnce(k, ttl, v); // the first send landed, its answer was lost...
      return super.claimOnce(k, ttl, v); // ...and the resend finds the key taken
    }
  }
  const store = new ResentStore();
  const { c, preimage } = await buy('/premium', '/premium');
  const auth = `L402 ${c.macaroon}:${preimage}`;
  assert.equal((await decide(req('/premium', auth), deps({ store }))).outcome, 'allow');
  const replay = await decide(req('/premium', auth), deps({ store }));
  assert.deepEqual([replay.outcome, replay.reason], ['invalid', 'already_used']);
});

// What was sold (route, path binding, price, access, uses, expiry) comes only from the caveats l402d minted;
// caveats a holder appends (the HMAC chain lets anyone append) only narrow.
describe('appended caveats never widen what was sold', () => {
  const soldCfg = parseConfig(
    `lightning: { type: dev }\nroutes:
  - { match: /api/, amount_msat: 1000, access: indefinite }
  - { match: /once/, amount_msat: 1000 }
  - { match: /hourly/, amount_msat: 1000, macaroon_timeout: 3600 }
`,
    { env: {} },
  );
  const soldRoute = (match: string) => soldCfg.routes.find((r) => r.match === match)!;
  const pricedPath = '/api/report';
  const price = async (r: RouteConfig, path: string): Promise<Price> =>
    path === pricedPath ? { amountMsat: 50_000, source: 'dynamic', pathPriced: true } : { amountMsat: r.amountMsat, source: 'static', pathPriced: false };
  class TtlStore extends MemoryStore {
    readonly ttls = new Map<string, number | undefined>();
    override claimOnce(k: string, ttl?: number, v?: string) {
      this.ttls.set(k, ttl);
      return super.claimOnce(k, ttl, v);
    }
  }
  const sdeps = (over: Partial<DecideDeps & { store: Store }> = {}) => deps({ routes: new RouteTable(soldCfg.routes), price, ...over });
  async function sell(match: string, path: string, opts: { pathPriced?: boolean; now?: () => number } = {}) {
    const r = soldRoute(match);
    const c = await createChallenge(r, { path, method: 'GET', amountMsat: r.amountMsat, pathPriced: opts.pathPriced }, {
      backend: wallet, rootKey: MASTER, service: 'l402', location: 'l402', memo: 'test', invoiceExpirySecs: 600, backendTimeoutMs: 2000, now: opts.now,
    });
    return { c, preimage: wallet.pay(c.invoice).toString('hex'), mac: decodeMacaroonBase64(c.macaroon) };
  }
  const withCaveats = (m: Macaroon, ...preds: string[]) => encodeMacaroonBase64(preds.reduce((acc, p) => attenuate(acc, p), m));
  const sha = (s: string) => createHash('sha256').update(s).digest('hex');
  const outcome = async (path: string, auth: string, d: DecideDeps, method = 'GET') => {
    const o = await decide(req(path, auth, method), d);
    return o.outcome === 'allow' ? 'allow' : o.reason;
  };

  it('finding 1: a path caveat the holder appends does not buy a separately priced path at the route price', async () => {
    const d = sdeps();
    const { mac, preimage } = await sell('/api/', '/api/other');
    assert.equal(await outcome('/api/other', `L402 ${encodeMacaroonBase64(mac)}:${preimage}`, d), 'allow');
    assert.equal(await outcome(pricedPath, `L402 ${encodeMacaroonBase64(mac)}:${preimage}`, d), 'wrong_path');
    for (const appended of [`path=${pricedPath}`, `path_sha256=${sha(pricedPath)}`]) {
      for (let i = 0; i < 2; i++) assert.equal(await outcome(pricedPath, `L402 ${withCaveats(mac, appended)}:${preimage}`, d), 'wrong_path', appended);
    }
    // Bought for the priced path itself (minted bound to it): opens it, reusably, and nothing else.
    const own = await sell('/api/', pricedPath, { pathPriced: true });
    for (let i = 0; i < 2; i++) assert.equal(await outcome(pricedPath, `L402 ${own.c.macaroon}:${own.preimage}`, d), 'allow');
    assert.equal(await outcome('/api/other', `L402 ${own.c.macaroon}:${own.preimage}`, d), 'wrong_path');
    // The route later sells one request each: a credential minted unbound still does not open the priced path.
    const perRequest = parseConfig(`lightning: { type: dev }\nroutes:\n  - { match: /api/, amount_msat: 1000 }\n`, { env: {} });
    assert.equal(await outcome(pricedPath, `L402 ${withCaveats(mac, `path=${pricedPath}`)}:${preimage}`, sdeps({ routes: new RouteTable(perRequest.routes) })), 'wrong_path');
  });

  it('finding 2: an expiry the holder appends never shortens the spent mark; the original stays spent', async () => {
    const now = Math.floor(Date.now() / 1000);
    for (const [match, mintedTtl] of [['/once/', undefined], ['/hourly/', 3600 + 300]] as const) {
      const store = new TtlStore();
      const d = sdeps({ store });
      const path = `${match}x`;
      const { c, mac, preimage } = await sell(match, path, { now: () => now });
      const short = withCaveats(mac, `l402_valid_until=${now + 2}`);
      const first = await decide(req(path, `L402 ${short}:${preimage}`), d);
      assert.deepEqual([first.outcome, (first as { validUntil?: number }).validUntil], ['allow', now + 2], 'an appended expiry narrows the answer itself');
      const ttl = store.ttls.get(`claim:l402:${c.paymentHash}`);
      if (mintedTtl === undefined) assert.equal(ttl, undefined, 'no minted expiry: the mark never expires');
      else assert.ok(ttl !== undefined && ttl >= mintedTtl - 2, `mark lives as long as the minted expiry: ${ttl}`);
      assert.equal(await outcome(path, `L402 ${c.macaroon}:${preimage}`, d), 'already_used');
    }
  });

  it('finding 3: a route made timed does not honour an old credential with an expiry its holder appended', async () => {
    const { mac, c, preimage } = await sell('/api/', '/api/x');
    const timed = parseConfig(`lightning: { type: dev }\nroutes:\n  - { match: /api/, amount_msat: 1000, access: timed, macaroon_timeout: 60 }\n`, { env: {} });
    const d = sdeps({ routes: new RouteTable(timed.routes) });
    assert.equal(await outcome('/api/x', `L402 ${c.macaroon}:${preimage}`, d), 'expired');
    const far = Math.floor(Date.now() / 1000) + 10 * 365 * 86_400;
    assert.equal(await outcome('/api/x', `L402 ${withCaveats(mac, `l402_valid_until=${far}`)}:${preimage}`, d), 'expired');
    // Nor does an appended uses=1 (a narrowing) turn it into a single-use credential a timed route takes.
    assert.equal(await outcome('/api/x', `L402 ${withCaveats(mac, 'uses=1', `l402_valid_until=${far}`)}:${preimage}`, d), 'expired');
    // A credential minted on the timed route, with its own expiry, passes.
    const t = await createChallenge(timed.routes[0]!, { path: '/api/x', method: 'GET', amountMsat: 1000 }, {
      backend: wallet, rootKey: MASTER, service: 'l402', location: 'l402', memo: 'test', invoiceExpirySecs: 600, backendTimeoutMs: 2000,
    });
    assert.equal(await outcome('/api/x', `L402 ${t.macaroon}:${wallet.pay(t.invoice).toString('hex')}`, d), 'allow');
  });

  it('appended caveats still narrow: wrong path, method, route, service, expired, uses=1', async () => {
    const store = new TtlStore();
    const d = sdeps({ store });
    const { mac, c, preimage } = await sell('/api/', '/api/a');
    const now = Math.floor(Date.now() / 1000);
    const cases: Array<[string, string, string]> = [
      ['path=/api/b', '/api/a', 'wrong_path'],
      [`path_sha256=${sha('/api/b')}`, '/api/a', 'wrong_path'],
      ['method=POST', '/api/a', 'wrong_method'],
      ['route=/once/', '/api/a', 'wrong_route'],
      ['services=other:0', '/api/a', 'wrong_service'],
      [`l402_valid_until=${now - 1}`, '/api/a', 'expired'],
    ];
    for (const [pred, path, reason] of cases) assert.equal(await outcome(path, `L402 ${withCaveats(mac, pred)}:${preimage}`, d), reason, pred);
    // An appended path that matches narrows an unbound credential to that path (an unpriced one).
    assert.equal(await outcome('/api/b', `L402 ${withCaveats(mac, 'path=/api/a')}:${preimage}`, d), 'wrong_path');
    // uses=1 appended: that copy is spent once (with no TTL: none was minted); the original stays reusable.
    const once = withCaveats(mac, 'uses=1');
    const first = await decide(req('/api/a', `L402 ${once}:${preimage}`), d);
    assert.deepEqual([first.outcome, (first as { singleUse?: boolean }).singleUse], ['allow', true]);
    assert.equal(store.ttls.get(`claim:l402:${c.paymentHash}`), undefined);
    assert.equal(await outcome('/api/a', `L402 ${once}:${preimage}`, d), 'already_used');
    // Appended caveats cannot reach across routes: the route sold is the one minted.
    assert.equal(await outcome('/once/x', `L402 ${withCaveats(mac, 'route=/once/')}:${preimage}`, d), 'wrong_route');
  });

  it('methods and route: an appended caveat naming more methods or another route opens nothing more', async () => {
    const d = sdeps();
    const { mac, preimage } = await sell('/once/', '/once/x');
    for (const pred of ['method=GET,POST,DELETE', 'method=POST']) assert.equal(await outcome('/once/x', `L402 ${withCaveats(mac, pred)}:${preimage}`, d, 'POST'), 'wrong_method', pred);
    for (const pred of ['route=/api/', 'path=/api/x']) assert.equal(await outcome('/api/x', `L402 ${withCaveats(mac, pred)}:${preimage}`, d), 'wrong_route', pred);
    assert.equal(await outcome('/once/x', `L402 ${withCaveats(mac, 'method=GET,POST')}:${preimage}`, d), 'allow', 'GET, as sold, once');
  });

  it('checkCaveats: every sold fact comes from the minted prefix, every caveat must hold', () => {
    const ctx = { service: 'l402', routeId: '/api/', path: '/api/report', method: 'GET', now: 1000, paymentHash: Buffer.alloc(32) };
    const minted = mintCaveats({ service: 'l402', routeId: '/api/', methods: ['GET', 'POST'] });
    const appended = [`path=/api/report`, 'path_sha256=' + sha('/api/report'), 'method=GET', 'uses=1', 'l402_valid_until=2000', 'route=/api/'];
    const v = checkCaveats([...minted, ...appended], ctx, minted.length);
    assert.ok(v.ok);
    assert.deepEqual(v.sold, { routeId: '/api/', pathBound: false, singleUse: false, methods: ['GET', 'POST'] });
    assert.deepEqual([v.validUntil, v.singleUse], [2000, true], 'appended caveats narrow the effective answer');
    // Counted as minted, the same caveats are sold facts.
    const all = checkCaveats([...minted, ...appended], ctx, minted.length + appended.length);
    assert.ok(all.ok);
    assert.deepEqual(all.sold, { routeId: '/api/', pathBound: true, singleUse: true, methods: ['GET'], validUntil: 2000 });
    // A minted count that does not fit the macaroon, or a prefix without service and route, is refused.
    assert.deepEqual(checkCaveats(minted, ctx, minted.length + 1), { ok: false, reason: 'malformed_caveat' });
    assert.deepEqual(checkCaveats(minted, ctx, 1), { ok: false, reason: 'malformed_caveat' });
    assert.deepEqual(checkCaveats(minted, ctx, 0), { ok: false, reason: 'malformed_caveat' });
    assert.deepEqual(checkCaveats(['services=l402:0', 'method=GET', 'route=/api/'], ctx, 2), { ok: false, reason: 'wrong_route' });
    assert.deepEqual(checkCaveats(['route=/api/', 'method=GET', 'services=l402:0'], ctx, 2), { ok: false, reason: 'wrong_service' });
  });

  it('credentials minted before the minted-count format (v1 token keys) fail the signature and get a fresh challenge', async () => {
    const { c, preimage } = await sell('/api/', '/api/a');
    const m = decodeMacaroonBase64(c.macaroon);
    const id = decodeIdentifier(m.identifier)!;
    const v1Key = createHmac('sha256', MASTER).update(Buffer.from('l402-nginx/token-root-key/v1\0')).update(id.tokenId).digest();
    const old = encodeMacaroonBase64(mintMacaroon(v1Key, m.identifier, m.location, caveatPredicates(m)));
    assert.equal(await outcome('/api/a', `L402 ${old}:${preimage}`, sdeps()), 'bad_signature');
    assert.equal(mintedCaveatCount(id.tokenId), m.caveats.length, 'the token id records the minted caveats');
  });
});

test('the deadline counts from when nginx sent the request: a request read late (a stalled l402d) never spends a single-use credential', async () => {
  const { c, preimage } = await buy('/premium', '/premium');
  const store = new MemoryStore();
  const auth = `L402 ${c.macaroon}:${preimage}`;
  // Sent 3 s ago, read now: nginx (which waits the deadline plus a margin) has answered 503 already.
  const late = await decide(req('/premium', auth), deps({ store, sentAt: Date.now() - 3000, deadlineMs: 2000 }));
  assert.deepEqual([late.outcome, late.reason], ['unavailable', 'store_unavailable']);
  assert.equal(await store.get(`claim:l402:${c.paymentHash}`), undefined, 'nothing claimed');
  // nginx gone (connection closed): the same.
  const gone = new AbortController();
  gone.abort();
  const closed = await decide(req('/premium', auth), deps({ store, signal: gone.signal }));
  assert.equal(closed.outcome, 'unavailable');
  assert.equal(await store.get(`claim:l402:${c.paymentHash}`), undefined, 'nothing claimed');
  // Unpaid requests are still answered (a challenge needs no store), and a clock ahead of ours counts as now.
  assert.equal((await decide(req('/premium'), deps({ store, sentAt: Date.now() - 3000 }))).outcome, 'challenge');
  assert.equal((await decide(req('/premium', auth), deps({ store, sentAt: Date.now() + 60_000 }))).outcome, 'allow');
});

test('a decision still waiting at its deadline answers 503, but a shadow (dry-run) route still passes', async () => {
  const stalled = { ...new MemoryStore(), get: () => new Promise<undefined>(() => {}), claimOnce: () => new Promise<boolean>(() => {}) } as unknown as Store;
  const { c, preimage } = await buy('/premium', '/premium');
  const paid = await decide(req('/premium', `L402 ${c.macaroon}:${preimage}`), deps({ store: stalled, storeTimeoutMs: 10_000, deadlineMs: 50 }));
  assert.deepEqual([paid.outcome, paid.reason], ['unavailable', 'store_unavailable']);
  // The same route in shadow mode, and a price lookup that never answers.
  const shadowRoutes = new RouteTable(parseConfig('lightning: { type: dev }\nroutes: [{ match: /forever, amount_msat: 5000, access: indefinite, dry_run: true }]\n', { env: {} }).routes);
  const f = await buy('/forever', '/forever');
  const slowPrice = async () => new Promise<never>(() => {});
  const shadow = await decide(req('/forever', `L402 ${f.c.macaroon}:${f.preimage}`), deps({ routes: shadowRoutes, store: stalled, storeTimeoutMs: 10_000, deadlineMs: 50, price: slowPrice }));
  assert.equal(shadow.outcome, 'allow', JSON.stringify(shadow));
  assert.equal(shadow.reason, 'dry_run');
});

test('copies of one refused credential share one fresh challenge for a few seconds; other credentials and other paths get their own', async () => {
  let minted = 0;
  const counting = { kind: 'counting', describe: () => 'counting', close: async () => {}, lookupInvoice: (h: Buffer, s?: AbortSignal) => wallet.lookupInvoice(h, s), createInvoice: async (r: Parameters<DevWallet['createInvoice']>[0], s?: AbortSignal) => (minted++, wallet.createInvoice(r, s)) };
  const gate = new Gate({ config: cfg, store: new MemoryStore(), backend: counting, rootKeys: [MASTER], log: createLogger('silent') });
  const render = (path: string, auth: string) => gate.render('invalid', 'already_used', req(path, auth), { accept: 'application/json' }).then((r) => JSON.parse(r.body) as { invoice: string; macaroon: string });
  const spent = 'L402 AgEEbDQwMg:00';
  const copies = await Promise.all(Array.from({ length: 20 }, () => render('/premium', spent)));
  assert.equal(new Set(copies.map((c) => c.invoice)).size, 1, 'concurrent copies share one challenge');
  assert.equal(minted, 1);
  assert.equal((await render('/premium', spent)).invoice, copies[0]!.invoice, 'and later copies too, for a while');
  assert.notEqual((await render('/premium', 'L402 AgEEbDQwMg:01')).invoice, copies[0]!.invoice, 'another credential: its own');
  assert.notEqual((await render('/other', spent)).invoice, copies[0]!.invoice, 'another path: its own');
  // Auto-detect routes never share: the macaroon alone opens them once paid, so sharing it would hand the
  // payer's access to whoever sent the same refused string.
  const autoA = await render('/auto', spent);
  assert.notEqual((await render('/auto', spent)).macaroon, autoA.macaroon, 'auto-detect: each gets its own macaroon');
  // Unpaid requests never share: each gets its own invoice.
  const a = await gate.render('challenge', 'no_credential', req('/premium'), { accept: 'application/json' });
  const b = await gate.render('challenge', 'no_credential', req('/premium'), { accept: 'application/json' });
  assert.notEqual(JSON.parse(a.body).invoice, JSON.parse(b.body).invoice);
});

test('a shared challenge is never handed to another client, nor shared at all on an auto-detect route (the macaroon alone opens it once paid)', async () => {
  const gate = new Gate({ config: cfg, store: new MemoryStore(), backend: wallet, rootKeys: [MASTER], log: createLogger('silent') });
  const render = (path: string, auth: string, clientAddr?: string) =>
    gate.render('invalid', 'already_used', { ...req(path, auth), clientAddr }, { accept: 'application/json' }).then((r) => JSON.parse(r.body) as { invoice: string; macaroon: string });
  // A stale or garbage credential many clients send alike: its text proves nothing about who sends it.
  const common = 'L402 AgEEbDQwMg:00';
  const mine = await render('/premium', common, '192.0.2.1');
  assert.equal((await render('/premium', common, '192.0.2.1')).invoice, mine.invoice, 'the same client still shares');
  assert.notEqual((await render('/premium', common, '198.51.100.7')).invoice, mine.invoice, 'another client gets its own');
  const auto = await Promise.all([render('/auto', common, '192.0.2.1'), render('/auto', common, '192.0.2.1')]);
  assert.notEqual(auto[0].macaroon, auto[1].macaroon, 'auto-detect: each answer its own macaroon');
});

// Prepaid balances (access: balance) in the decision core: one payment buys balance_msat of credit, each request
// draws its price, an empty balance is topped up on the same credential, and draws never overdraw.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { parseConfig, type RouteConfig } from '../../src/config/config.js';
import { decide, type DecideDeps, type Decision, type GateRequest } from '../../src/policy/decide.js';
import { createChallenge, type Challenge } from '../../src/policy/challenge.js';
import { createTopup } from '../../src/policy/balance-topup.js';
import { releaseClaim } from '../../src/policy/release.js';
import { RouteTable } from '../../src/policy/routes.js';
import { storeKeys } from '../../src/policy/store-keys.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { DevWallet } from '../../src/rails/lightning/dev/dev-wallet.js';
import { attenuate, decodeMacaroonBase64, encodeMacaroonBase64 } from '../../src/protocol/macaroon.js';
import type { Store } from '../../src/store/store.js';
import { decodeIdentifier } from '../../src/protocol/identifier.js';
import { consoleData } from '../../src/server/console-data.js';
import { sleep } from '../../src/util/timeout.js';

const cfg = parseConfig(
  `lightning: { type: dev }
routes:
  - { match: /api/a, amount_msat: 3000, access: balance, balance_msat: 20000, plan: api }
  - { match: /api/b, amount_msat: 5000, access: balance, balance_msat: 20000, plan: api }
  - { match: /solo, amount_msat: 1000, access: balance, balance_msat: 2000, rails: [lightning, cashu] }
  - { match: /premium, amount_msat: 1000 }
`,
  { env: {} },
);
const MASTER = randomBytes(32);
let dir: string;
let wallet: DevWallet;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'l402-balance-'));
  wallet = DevWallet.open(dir);
});
after(() => {
  wallet.close();
  rmSync(dir, { recursive: true, force: true });
});

const route = (match: string): RouteConfig => cfg.routes.find((r) => r.match === match)!;
function deps(over: Partial<DecideDeps> = {}): DecideDeps & { store: Store } {
  return { routes: new RouteTable(cfg.routes), service: 'l402', rootKeys: [MASTER], store: new MemoryStore(), storeTimeoutMs: 1000, ...over } as DecideDeps & { store: Store };
}
async function buy(match: string): Promise<{ c: Challenge; auth: string }> {
  const r = route(match);
  const c = await createChallenge(r, { path: match, method: 'GET', amountMsat: r.amountMsat }, { backend: wallet, rootKey: MASTER, service: 'l402', location: 'l402', memo: 't', invoiceExpirySecs: 600, backendTimeoutMs: 2000 });
  return { c, auth: `L402 ${c.macaroon}:${wallet.pay(c.invoice).toString('hex')}` };
}
const req = (path: string, authorization?: string, extra: Partial<GateRequest> = {}): GateRequest => ({ path, method: 'GET', credentials: { authorization }, ...extra });
const left = (d: Decision) => ('balanceMsat' in d ? d.balanceMsat : undefined);
async function topup(d: DecideDeps, path: string, authorization: string) {
  const t = await createTopup({ authorization }, route(path), path, 'GET', { rootKeys: [MASTER], service: 'l402', store: d.store, storeTimeoutMs: 1000, backend: wallet, backendTimeoutMs: 2000, memo: 't', invoiceExpirySecs: 600 });
  assert.ok(t, 'a balance credential gets a top-up');
  return { ...t, preimage: wallet.pay(t.challenge.invoice).toString('hex') };
}

test('a payment buys balance_msat; each request draws its route price; the plan shares one balance; empty is a 402 with what is left', async () => {
  const d = deps();
  const { c, auth } = await buy('/api/a');
  assert.equal(c.amountMsat, 20000, 'the invoice is for the balance, not one request');
  const got: Array<[string, number | undefined]> = [];
  for (const p of ['/api/a', '/api/b', '/api/a', '/api/b']) {
    const r = await decide(req(p, auth), d);
    got.push([r.outcome, left(r)]);
  }
  assert.deepEqual(got, [['allow', 17000], ['allow', 12000], ['allow', 9000], ['allow', 4000]]);
  const b = await decide(req('/api/b', auth), d);
  assert.deepEqual([b.outcome, b.reason, left(b)], ['challenge', 'balance_empty', 4000]);
  const a = await decide(req('/api/a', auth), d);
  assert.deepEqual([a.outcome, left(a)], ['allow', 1000], 'a cheaper route of the plan still fits');
  // The first payment is credited once: presenting it again does not refill the balance.
  assert.equal((await decide(req('/api/a', auth), d)).reason, 'balance_empty');
  assert.equal(await d.store.getBalance(storeKeys.balance(decodeTokenId(c.macaroon))), 1000);
});

test('an internal redirect (the same request id) to a dearer route of the plan draws the difference; to a cheaper one nothing; short: 402 and the first draw back', async () => {
  const d = deps();
  const { auth } = await buy('/api/a');
  const id = randomBytes(16).toString('hex');
  assert.deepEqual(left(await decide(req('/api/a', auth, { requestId: id }), d)), 17000);
  // nginx redirected the same request (try_files, index, error_page) to /api/b: 5000 in all, not 3000.
  assert.deepEqual(left(await decide(req('/api/b', auth, { requestId: id }), d)), 15000);
  assert.deepEqual(left(await decide(req('/api/a', auth, { requestId: id }), d)), 15000, 'back to the cheaper route: nothing more');
  const rel = { routes: new RouteTable(cfg.routes), rootKeys: [MASTER], store: d.store, storeTimeoutMs: 1000, cashu: false };
  assert.equal(await releaseClaim(req('/api/b', auth, { requestId: id }), rel), 'released');
  assert.deepEqual(left(await decide(req('/api/a', auth, { requestId: randomBytes(16).toString('hex') }), d)), 17000, 'the whole 5000 was given back');
  // 17000 - 5000 - 5000 - 3000 = 4000 left: a request drawn 3000 at /api/a cannot pay /api/b's 2000 more.
  for (const p of ['/api/b', '/api/b', '/api/a']) await decide(req(p, auth), d);
  const short = randomBytes(16).toString('hex');
  const first = await decide(req('/api/a', auth, { requestId: short }), d);
  assert.deepEqual([first.outcome, left(first)], ['allow', 1000]);
  const redirected = await decide(req('/api/b', auth, { requestId: short }), d);
  assert.deepEqual([redirected.outcome, redirected.reason, left(redirected)], ['challenge', 'balance_empty', 4000], 'not served: the 3000 drawn at /api/a is back');
});

test('a top-up keeps the credential: bound to its token id, credited once, its preimage useless to any other credential', async () => {
  const d = deps();
  const one = await buy('/solo');
  const two = await buy('/solo');
  assert.equal((await decide(req('/solo', one.auth), d)).outcome, 'allow');
  assert.equal((await decide(req('/solo', one.auth), d)).outcome, 'allow');
  assert.equal((await decide(req('/solo', one.auth), d)).reason, 'balance_empty');
  const t = await topup(d, '/solo', one.auth);
  assert.equal(t.challenge.macaroon, one.c.macaroon, 'the same macaroon, a new invoice');
  assert.equal(t.challenge.amountMsat, 2000);
  assert.equal(t.balanceMsat, 0);
  const withTopup = `L402 ${one.c.macaroon}:${t.preimage}`;
  const r1 = await decide(req('/solo', withTopup), d);
  assert.deepEqual([r1.outcome, left(r1)], ['allow', 1000]);
  const r2 = await decide(req('/solo', withTopup), d);
  assert.deepEqual([r2.outcome, left(r2)], ['allow', 0]);
  assert.equal((await decide(req('/solo', withTopup), d)).reason, 'balance_empty', 'credited once');
  // Another credential with this top-up's preimage: a wrong preimage, nothing credited anywhere.
  const stolen = await decide(req('/solo', `L402 ${two.c.macaroon}:${t.preimage}`), d);
  assert.deepEqual([stolen.outcome, stolen.reason], ['invalid', 'wrong_preimage']);
  assert.equal(await d.store.getBalance(storeKeys.balance(decodeTokenId(two.c.macaroon))), 0);
  // A made-up preimage neither.
  const forged = await decide(req('/solo', `L402 ${one.c.macaroon}:${randomBytes(32).toString('hex')}`), d);
  assert.deepEqual([forged.outcome, forged.reason], ['invalid', 'wrong_preimage']);
  // No top-up for a credential that is not a balance of this route.
  assert.equal(await createTopup({ authorization: one.auth }, route('/api/a'), '/api/a', 'GET', { rootKeys: [MASTER], service: 'l402', store: d.store, storeTimeoutMs: 1000, backend: wallet, backendTimeoutMs: 2000, memo: 't', invoiceExpirySecs: 600 }), undefined);
});

test('a balance credential opens only its own route or plan, and a balance route only balance credentials', async () => {
  const d = deps();
  const plan = await buy('/api/a');
  const solo = await buy('/solo');
  const single = await buy('/premium');
  for (const [path, auth] of [['/solo', plan.auth], ['/api/b', solo.auth], ['/premium', plan.auth], ['/api/a', single.auth]] as const) {
    const r = await decide(req(path, auth), d);
    assert.deepEqual([r.outcome, r.reason], ['invalid', 'wrong_route'], `${path}`);
  }
  // A holder's uses=1 cannot be honoured by a balance: refused rather than ignored.
  const [mac, pre] = solo.auth.slice(5).split(':');
  const once = encodeMacaroonBase64(attenuate(decodeMacaroonBase64(mac!), 'uses=1'));
  assert.equal((await decide(req('/solo', `L402 ${once}:${pre}`), d)).outcome, 'invalid');
  // Nothing was drawn by any refusal.
  assert.equal(await d.store.getBalance(storeKeys.balance(decodeTokenId(plan.c.macaroon))), 0);
});

test('revocation is checked before anything is drawn; a store that fails answers 503', async () => {
  const { c, auth } = await buy('/solo');
  const d = deps({ isRevoked: async (tokenId) => tokenId === decodeTokenId(c.macaroon).toString('hex') });
  const r = await decide(req('/solo', auth), d);
  assert.deepEqual([r.outcome, r.reason], ['invalid', 'revoked']);
  assert.equal(await d.store.getBalance(storeKeys.balance(decodeTokenId(c.macaroon))), 0, 'not even credited');
  const broken = new MemoryStore();
  broken.drawBalance = async () => {
    throw new Error('store down');
  };
  const u = await decide(req('/solo', auth), deps({ store: broken }));
  assert.deepEqual([u.outcome, u.reason], ['unavailable', 'store_unavailable']);
});

test('a draw for a request the upstream did not serve is given back once, by that request id only', async () => {
  const d = deps();
  const { c, auth } = await buy('/solo');
  const key = storeKeys.balance(decodeTokenId(c.macaroon));
  const id = randomBytes(16).toString('hex');
  assert.deepEqual(left(await decide(req('/solo', auth, { requestId: id }), d)), 1000);
  const rel = { routes: new RouteTable(cfg.routes), rootKeys: [MASTER], store: d.store, storeTimeoutMs: 1000, cashu: false };
  assert.equal(await releaseClaim(req('/solo', auth, { requestId: randomBytes(16).toString('hex') }), rel), 'not_claimed', 'another request id gives nothing back');
  assert.equal(await releaseClaim(req('/solo', auth, { requestId: id }), rel), 'released');
  assert.equal(await d.store.getBalance(key), 2000);
  assert.equal(await releaseClaim(req('/solo', auth, { requestId: id }), rel), 'not_claimed', 'once');
  assert.equal(await d.store.getBalance(key), 2000);
  // nginx's retry of the same request (same id) draws once.
  const again = randomBytes(16).toString('hex');
  await decide(req('/solo', auth, { requestId: again }), d);
  await decide(req('/solo', auth, { requestId: again }), d);
  assert.equal(await d.store.getBalance(key), 1000);
});

test('ecash sent with the balance credential tops it up once (double spends refused by the rail)', async () => {
  const spent = new Set<string>();
  const cashu = {
    accept: async (token: string, priceMsat: number) => {
      if (spent.has(token)) return { ok: false as const, status: 400 as const, reason: 'token already spent' };
      spent.add(token);
      assert.equal(priceMsat, 1000);
      return { ok: true as const, amountMsat: 5000 };
    },
  };
  const d = deps({ cashu });
  const { c, auth } = await buy('/solo');
  const withCashu = (t: string): GateRequest => ({ path: '/solo', method: 'GET', credentials: { authorization: auth, xCashu: t } });
  const r = await decide(withCashu('cashuBone'), d);
  // 2000 bought + 5000 of ecash - 1000 drawn.
  assert.deepEqual([r.outcome, left(r)], ['allow', 6000]);
  const again = await decide(withCashu('cashuBone'), d);
  assert.deepEqual([again.outcome, again.reason], ['cashu_rejected', 'cashu_rejected']);
  assert.equal(await d.store.getBalance(storeKeys.balance(decodeTokenId(c.macaroon))), 6000);
  // Without a credential, ecash on a balance route pays for the one request (as on any Cashu route).
  const alone = await decide({ path: '/solo', method: 'GET', credentials: { xCashu: 'cashuBtwo' } }, d);
  assert.deepEqual([alone.outcome, alone.reason, 'rail' in alone ? alone.rail : ''], ['allow', 'paid', 'cashu']);
});

test('storm: concurrent draws from two SQLite connections on one file never overdraw and never lose a draw', async () => {
  const file = join(dir, 'storm.db');
  const s1 = new SqliteStore(file);
  const s2 = new SqliteStore(file);
  try {
    const d1 = deps({ store: s1 });
    const d2 = deps({ store: s2 });
    const { c, auth } = await buy('/api/a');
    const ids = Array.from({ length: 40 }, () => randomBytes(16).toString('hex'));
    const results = await Promise.all(ids.map((id, i) => decide(req(i % 3 === 0 ? '/api/b' : '/api/a', auth, { requestId: id }), i % 2 ? d1 : d2)));
    const allowed: number[] = results.map((r, i) => (r.outcome === "allow" ? (i % 3 === 0 ? 5000 : 3000) : 0));
    const drawn = allowed.reduce((a, b) => a + b, 0);
    assert.ok(results.every((r) => r.outcome === 'allow' || r.reason === 'balance_empty'), JSON.stringify(results.map((r) => r.reason)));
    const rest = await s1.getBalance(storeKeys.balance(decodeTokenId(c.macaroon)));
    assert.equal(drawn + rest, 20000, 'every draw accounted for');
    assert.ok(rest >= 0 && drawn <= 20000);
    // Every refused request saw a balance too small for it (what it was told is left).
    for (const [i, r] of results.entries()) if (r.outcome !== 'allow') assert.ok(left(r)! < (i % 3 === 0 ? 5000 : 3000));
  } finally {
    await s1.close();
    await s2.close();
  }
});

function decodeTokenId(macaroon: string): Buffer {
  return decodeIdentifier(decodeMacaroonBase64(macaroon).identifier)!.tokenId;
}

test('a top-up and draws racing on one balance: the top-up lands once, every draw is counted', async () => {
  const d = deps();
  const { c, auth } = await buy('/solo');
  assert.equal(left(await decide(req('/solo', auth), d)), 1000);
  const t = await topup(d, '/solo', auth);
  const withTopup = `L402 ${c.macaroon}:${t.preimage}`;
  // 1000 left + 2000 of top-up = 3 draws of 1000, whichever credential form each request uses.
  const results = await Promise.all(Array.from({ length: 12 }, (_, i) => decide(req('/solo', i % 2 ? withTopup : auth), d)));
  assert.equal(results.filter((r) => r.outcome === 'allow').length, 3);
  assert.ok(results.every((r) => r.outcome === 'allow' || r.reason === 'balance_empty'));
  assert.equal(await d.store.getBalance(storeKeys.balance(decodeTokenId(c.macaroon))), 0);
});

test('credits are sales (once each, access balance) and the console lists the open balances from the store', async () => {
  const store = new MemoryStore();
  const credits: Array<{ kind: string; msat: number }> = [];
  const d = deps({ store, onCredit: (credit) => credits.push({ kind: credit.kind, msat: credit.msat }) });
  const a = await buy('/solo');
  const b = await buy('/api/a');
  await decide(req('/solo', a.auth), d);
  await decide(req('/solo', a.auth), d);
  await decide(req('/solo', a.auth), d);
  const t = await topup(d, '/solo', a.auth);
  await decide(req('/solo', `L402 ${a.c.macaroon}:${t.preimage}`), d);
  await decide(req('/solo', `L402 ${a.c.macaroon}:${t.preimage}`), d);
  await decide(req('/solo', `L402 ${a.c.macaroon}:${t.preimage}`), d);
  await d.store.creditBalance(storeKeys.balance(decodeTokenId(a.c.macaroon)), 1000, 'test-only');
  await decide(req('/api/b', b.auth), d);
  assert.deepEqual(credits, [{ kind: 'sale', msat: 2000 }, { kind: 'topup', msat: 2000 }, { kind: 'sale', msat: 20000 }]);
  // The gate records them as sales (Gate.recordCredit): the same shape here, straight into the ledger.
  const ledger = store.ledger();
  const ta = decodeTokenId(a.c.macaroon).toString('hex');
  const tb = decodeTokenId(b.c.macaroon).toString('hex');
  await ledger.recordSales([{ id: ta, rail: 'lightning', route: '/solo', amountMsat: 2000, at: Date.now(), access: 'balance' }]);
  await ledger.recordSales([{ id: `${ta}:topup:${t.challenge.paymentHash}`, rail: 'lightning', route: '/solo', amountMsat: 2000, at: Date.now(), access: 'balance' }]);
  await ledger.recordSales([{ id: tb, rail: 'lightning', route: '/api/b', amountMsat: 20000, at: Date.now(), access: 'balance' }]);
  const data = await consoleData(ledger, { balanceOf: (id) => store.getBalance(storeKeys.balance(id)) });
  assert.equal(data.balances.supported, true);
  assert.deepEqual(
    data.balances.open.map((o) => [o.credential, o.route, o.balance_msat, o.credited_msat]),
    [[`${tb.slice(0, 12)}…`, '/api/b', 15000, 20000], [`${ta.slice(0, 12)}…`, '/solo', 1000, 4000]],
  );
  assert.ok(!JSON.stringify(data).includes(ta) && !JSON.stringify(data).includes(tb), 'credentials by prefix only');
});

test('the payment page can set the credential cookie for a plan credential and for its top-up preimage', async () => {
  const { checkForCookie } = await import('../../src/policy/credential-cookie.js');
  const d = deps();
  const plan = await buy('/api/a');
  const [mac, pre] = plan.auth.slice(5).split(':') as [string, string];
  const o = { service: 'l402', rootKeys: [MASTER], now: Math.floor(Date.now() / 1000) };
  const cookie = checkForCookie({ macaroon: Buffer.from(mac, 'base64'), preimage: Buffer.from(pre, 'hex') }, route('/api/b'), '/api/b', o);
  assert.deepEqual(cookie, { ok: true, maxAge: cookie.ok ? cookie.maxAge : 0, singleUse: false });
  for (let i = 0; i < 7; i++) await decide(req('/api/a', plan.auth), d);
  const t = await topup(d, '/api/a', plan.auth);
  assert.equal(checkForCookie({ macaroon: Buffer.from(mac, 'base64'), preimage: Buffer.from(t.preimage, 'hex') }, route('/api/a'), '/api/a', o).ok, true);
  // Not on another route's credential.
  const solo = await buy('/solo');
  assert.equal(checkForCookie({ macaroon: Buffer.from(solo.auth.slice(5).split(':')[0]!, 'base64'), preimage: Buffer.from(t.preimage, 'hex') }, route('/api/a'), '/api/a', o).ok, false);
});

test('config: a balance needs balance_msat >= amount_msat, a plan agrees on its balance, and no x402, auto-detect or dry run (MPP sessions: see mpp-session-config)', () => {
  const bad: Array<[string, RegExp]> = [
    ['{ match: /a, amount_msat: 1000, access: balance }', /balance_msat/],
    ['{ match: /a, amount_msat: 1000, access: balance, balance_msat: 999 }', /at least amount_msat/],
    ['{ match: /a, amount_msat: 1000, balance_msat: 5000 }', /needs access: balance/],
    ['{ match: /a, amount_msat: 1000, plan: p }', /needs access: balance/],
    ['{ match: /a, amount_msat: 1000, access: balance, balance_msat: 5000, schemes: [l402, x402] }', /not x402/],
    ['{ match: /a, amount_msat: 1000, access: balance, balance_msat: 5000, auto_detect_payment: true }', /auto_detect_payment/],
    ['{ match: /a, amount_msat: 1000, access: balance, balance_msat: 5000, dry_run: true }', /dry_run/],
    ['{ match: /a, id: "plan:x", amount_msat: 1000 }', /reserved for plans/],
    ['{ match: /a, amount_msat: 1000, access: balance, balance_msat: 5000, plan: p }\n  - { match: /b, amount_msat: 1000, access: balance, balance_msat: 6000, plan: p }', /same balance_msat/],
  ];
  for (const [route, re] of bad) assert.throws(() => parseConfig(`lightning: { type: dev }\nroutes:\n  - ${route}\n`, { env: {} }), re, route);
});

test('the manifest and /openapi.json describe a balance: what the invoice buys, the plan scope', async () => {
  const { buildManifest } = await import('../../src/server/manifest.js');
  const { buildOpenApi } = await import('../../src/server/openapi.js');
  const price = async (r: RouteConfig) => ({ amountMsat: r.amountMsat, source: 'static' as const, pathPriced: false });
  const m = JSON.parse(await buildManifest(cfg, 'dev', price)) as { routes: Array<{ path: string; balance_msat?: number; plan?: string; caveats_required: string[] }> };
  const a = m.routes.find((r) => r.path === '/api/a')!;
  assert.equal(a.balance_msat, 20000);
  assert.equal(a.plan, 'api');
  assert.ok(a.caveats_required.includes('route=plan:api') && a.caveats_required.includes('balance_msat=20000'), a.caveats_required.join(' '));
  const o = await buildOpenApi(cfg, price);
  assert.match(o, /"amount": "20000"/);
  assert.match(o, /prepaid balance of 20000 msat shared by plan api/);
});

test('ecash accepted while the store cannot credit it: 503, and the credit lands in the background (once)', async () => {
  const store = new MemoryStore();
  const real = store.creditBalance.bind(store);
  let failing = 0;
  store.creditBalance = async (...a: Parameters<typeof real>) => {
    if (a[2].startsWith('cashu:') && failing++ < 2) throw new Error('store down');
    return real(...a);
  };
  const cashu = { accept: async () => ({ ok: true as const, amountMsat: 5000 }) };
  const d = deps({ store, cashu });
  const { c, auth } = await buy('/solo');
  const r = await decide({ path: '/solo', method: 'GET', credentials: { authorization: auth, xCashu: 'cashuBlate' } }, d);
  assert.deepEqual([r.outcome, r.reason], ['unavailable', 'store_unavailable']);
  const key = storeKeys.balance(decodeTokenId(c.macaroon));
  for (let i = 0; i < 40 && (await store.getBalance(key)) < 5000; i++) await sleep(100);
  assert.equal(await store.getBalance(key), 5000, 'the ecash reached the balance');
  await sleep(700);
  assert.equal(await store.getBalance(key), 5000, 'once');
});

test("a draw that lands after the deadline while the event loop was held (a store waiting synchronously for a lock) is answered 503 and given back, never allow", async () => {
  const store = new MemoryStore();
  const d = deps({ store, deadlineMs: 200 });
  const { c, auth } = await buy('/api/a');
  const key = storeKeys.balance(decodeTokenId(c.macaroon));
  // The first request credits the payment and draws: 20000 - 3000.
  assert.equal(left(await decide(req('/api/a', auth), d)), 17000);
  // SQLite's busy wait holds the whole process, the deadline's timer included: the draw itself lands fine.
  const held: Store = Object.create(store);
  held.drawBalance = (...a: Parameters<NonNullable<Store['drawBalance']>>) => {
    const until = Date.now() + 400;
    while (Date.now() < until);
    return store.drawBalance!(...a);
  };
  const late = await decide(req('/api/a', auth, { requestId: randomBytes(16).toString('hex') }), { ...d, store: held });
  assert.deepEqual([late.outcome, late.reason], ['unavailable', 'store_unavailable']);
  // Given back (the give-back runs in the background: bounded wait).
  for (let i = 0; i < 50 && (await store.getBalance(key)) !== 17000; i++) await sleep(10);
  assert.equal(await store.getBalance(key), 17000);
});

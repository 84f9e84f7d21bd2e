// nginx retries an auth subrequest (same $request_id) when the l402d that had it went away before answering.
// On a balance route with ecash sent along, that first attempt may already have swapped the ecash and
// credited the balance: the retry must see its own top-up (as single-use claims do by the request id), not
// answer 400 cashu_rejected for ecash the gate took, and must neither credit nor draw a second time.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { parseConfig, type RouteConfig } from '../../src/config/config.js';
import { decide, type DecideDeps, type GateRequest } from '../../src/policy/decide.js';
import { createChallenge } from '../../src/policy/challenge.js';
import { RouteTable } from '../../src/policy/routes.js';
import { storeKeys } from '../../src/policy/store-keys.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { DevWallet } from '../../src/rails/lightning/dev/dev-wallet.js';
import { decodeMacaroonBase64 } from '../../src/protocol/macaroon.js';
import { decodeIdentifier } from '../../src/protocol/identifier.js';
import type { Store } from '../../src/store/store.js';
import { sleep } from '../../src/util/timeout.js';

const cfg = parseConfig(
  `lightning: { type: dev }
routes:
  - { match: /solo, amount_msat: 1000, access: balance, balance_msat: 2000, rails: [lightning, cashu] }
  - { match: /pay, amount_msat: 1000, rails: [lightning, cashu] }
  - { match: /dear, amount_msat: 9000, rails: [lightning, cashu] }
`,
  { env: {} },
);
const MASTER = randomBytes(32);
let dir: string;
let wallet: DevWallet;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'l402-cashu-retry-'));
  wallet = DevWallet.open(dir);
});
after(() => {
  wallet.close();
  rmSync(dir, { recursive: true, force: true });
});

const route = (): RouteConfig => cfg.routes[0]!;
/** The rail's contract as the core sees it: a token is accepted once, then refused as spent (400). */
function rail() {
  const spent = new Set<string>();
  let accepted = 0;
  return {
    get accepted() {
      return accepted;
    },
    accept: async (token: string) => {
      if (spent.has(token)) return { ok: false as const, status: 400 as const, reason: 'token already spent' };
      spent.add(token);
      accepted++;
      return { ok: true as const, amountMsat: 5000 };
    },
  };
}
function deps(store: Store, cashu: DecideDeps['cashu']): DecideDeps {
  return { routes: new RouteTable(cfg.routes), service: 'l402', rootKeys: [MASTER], store, storeTimeoutMs: 1000, cashu };
}
async function buy(): Promise<{ auth: string; key: string }> {
  const r = route();
  const c = await createChallenge(r, { path: '/solo', method: 'GET', amountMsat: r.amountMsat }, { backend: wallet, rootKey: MASTER, service: 'l402', location: 'l402', memo: 't', invoiceExpirySecs: 600, backendTimeoutMs: 2000 });
  const tokenId = decodeIdentifier(decodeMacaroonBase64(c.macaroon).identifier)!.tokenId;
  return { auth: `L402 ${c.macaroon}:${wallet.pay(c.invoice).toString('hex')}`, key: storeKeys.balance(tokenId) };
}
const withCashu = (auth: string, token: string, requestId?: string): GateRequest => ({ path: '/solo', method: 'GET', credentials: { authorization: auth, xCashu: token }, ...(requestId ? { requestId } : {}) });

for (const kind of ['memory', 'sqlite'] as const) {
  test(`${kind}: nginx's retry of a request whose ecash top-up was taken and credited passes, crediting and drawing once`, async () => {
    const store = kind === 'memory' ? new MemoryStore() : new SqliteStore(join(dir, `retry-${randomBytes(4).toString('hex')}.db`));
    try {
      const cashu = rail();
      const { auth, key } = await buy();
      const requestId = randomBytes(16).toString('hex');
      // The first l402d: ecash accepted, credited, drawn; its answer never reached nginx.
      const first = await decide(withCashu(auth, 'cashuBretry', requestId), deps(store, cashu));
      assert.deepEqual([first.outcome, 'balanceMsat' in first ? first.balanceMsat : undefined], ['allow', 6000]);
      // nginx's retry of the same request (another l402d on the same store): the same answer, nothing twice.
      const retry = await decide(withCashu(auth, 'cashuBretry', requestId), deps(store, cashu));
      assert.deepEqual([retry.outcome, retry.reason, 'balanceMsat' in retry ? retry.balanceMsat : undefined], ['allow', 'paid', 6000]);
      assert.equal(cashu.accepted, 1, 'the ecash was swapped once');
      assert.equal(await store.getBalance!(key), 6000, 'credited once, drawn once');
      // Another request sending the same ecash is a replay: refused by the rail, the balance untouched.
      const other = await decide(withCashu(auth, 'cashuBretry', randomBytes(16).toString('hex')), deps(store, cashu));
      assert.deepEqual([other.outcome, other.reason], ['cashu_rejected', 'cashu_rejected']);
      // So is the same request id with other ecash that the rail refuses: the request's record names its token.
      const otherToken = await decide(withCashu(auth, 'cashuBspent', requestId), deps(store, { accept: async () => ({ ok: false, status: 400, reason: 'token already spent' }) }));
      assert.deepEqual([otherToken.outcome, otherToken.reason], ['cashu_rejected', 'cashu_rejected']);
      assert.equal(await store.getBalance!(key), 6000);
    } finally {
      await store.close();
    }
  });
}

test('the retry credits ecash the first attempt accepted but could not credit (it died before the store write)', async () => {
  const store = new MemoryStore();
  const real = store.creditBalance.bind(store);
  let dead = true;
  // The first attempt's process stops right after the swap: none of its store writes for the credit land.
  store.creditBalance = async (...a: Parameters<typeof real>) => {
    if (dead && a[2].startsWith('cashu:')) throw new Error('process gone');
    return real(...a);
  };
  const cashu = rail();
  const { auth, key } = await buy();
  const requestId = randomBytes(16).toString('hex');
  const first = await decide(withCashu(auth, 'cashuBdied', requestId), deps(store, cashu));
  assert.equal(first.outcome, 'unavailable');
  dead = false;
  const retry = await decide(withCashu(auth, 'cashuBdied', requestId), deps(store, cashu));
  assert.deepEqual([retry.outcome, 'balanceMsat' in retry ? retry.balanceMsat : undefined], ['allow', 6000]);
  assert.equal(cashu.accepted, 1);
  assert.equal(await store.getBalance(key), 6000);
});

test("a Cashu payment on a route without balance: nginx's retry of the request is allowed again with the same payment id, a replay is not", async () => {
  const store = new SqliteStore(join(dir, `pay-${randomBytes(4).toString('hex')}.db`));
  try {
    // A store that takes its time to write (as one under load does).
    const claimOnce = store.claimOnce.bind(store);
    store.claimOnce = async (...a: Parameters<typeof claimOnce>) => {
      await sleep(20);
      return claimOnce(...a);
    };
    const cashu = rail();
    const requestId = randomBytes(16).toString('hex');
    const pay = (token: string, id?: string): GateRequest => ({ path: '/pay', method: 'GET', credentials: { xCashu: token }, ...(id ? { requestId: id } : {}) });
    const first = await decide(pay('cashuBpay', requestId), deps(store, cashu));
    assert.deepEqual([first.outcome, 'rail' in first ? first.rail : ''], ['allow', 'cashu']);
    // The record is written before the answer: an l402d that dies right after answering leaves it for the retry.
    assert.notEqual(await store.get(storeKeys.cashuTaken(requestId)), undefined, 'taken record written before the answer');
    const retry = await decide(pay('cashuBpay', requestId), deps(store, cashu));
    assert.deepEqual([retry.outcome, 'amountMsat' in retry ? retry.amountMsat : 0], ['allow', 5000]);
    assert.equal('paymentId' in first && 'paymentId' in retry && first.paymentId === retry.paymentId, true, 'one payment: one sale id');
    assert.equal(cashu.accepted, 1);
    // The same request id on another route (an internal redirect to a dearer location): the record pays for
    // /pay only, so the rail decides (spent), never the cheap route's payment.
    const redirected = await decide({ ...pay('cashuBpay', requestId), path: '/dear' }, deps(store, { accept: async () => ({ ok: false, status: 400, reason: 'token already spent' }) }));
    assert.deepEqual([redirected.outcome, redirected.reason], ['cashu_rejected', 'cashu_rejected']);
    // Another request with the same ecash, or this request id with other ecash: the rail decides (spent).
    for (const r of [pay('cashuBpay', randomBytes(16).toString('hex')), pay('cashuBpay'), pay('cashuBother', requestId)]) {
      const d = await decide(r, deps(store, { accept: async () => ({ ok: false, status: 400, reason: 'token already spent' }) }));
      assert.deepEqual([d.outcome, d.reason], ['cashu_rejected', 'cashu_rejected']);
    }
  } finally {
    await store.close();
  }
});

test('the Cashu record of a request pays for its price only: an internal redirect (same request id) to a dearer path of the same route goes to the rail', async () => {
  const store = new SqliteStore(join(dir, `path-${randomBytes(4).toString('hex')}.db`));
  try {
    const cashu = rail();
    const requestId = randomBytes(16).toString('hex');
    // /pay/dear has a price of its own (an operator's `price:path:` override), above the 5000 msat the ecash paid.
    const priced: DecideDeps['price'] = async (r, path) =>
      path === '/pay/dear' ? { amountMsat: 9000, source: 'dynamic', pathPriced: true } : { amountMsat: r.amountMsat, source: 'static', pathPriced: false };
    const withPrice = (c: DecideDeps['cashu']): DecideDeps => ({ ...deps(store, c), price: priced });
    const pay = (path: string): GateRequest => ({ path, method: 'GET', credentials: { xCashu: 'cashuBcheap' }, requestId });
    const first = await decide(pay('/pay/cheap'), withPrice(cashu));
    assert.deepEqual([first.outcome, 'amountMsat' in first ? first.amountMsat : 0], ['allow', 5000]);
    for (let i = 0; i < 50 && (await store.get(storeKeys.cashuTaken(requestId))) === undefined; i++) await new Promise((r) => setImmediate(r));
    const spent = { accept: async () => ({ ok: false as const, status: 400 as const, reason: 'token already spent' }) };
    // nginx's retry, or a redirect to a path the payment covers: the same payment.
    const same = await decide(pay('/pay/cheap'), withPrice(spent));
    assert.deepEqual([same.outcome, 'amountMsat' in same ? same.amountMsat : 0], ['allow', 5000]);
    // A redirect to a path priced above what the ecash paid: never on that payment.
    const dear = await decide(pay('/pay/dear'), withPrice(spent));
    assert.deepEqual([dear.outcome, dear.reason], ['cashu_rejected', 'cashu_rejected']);
    assert.equal(cashu.accepted, 1);
  } finally {
    await store.close();
  }
});

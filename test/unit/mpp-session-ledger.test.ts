// MPP Lightning sessions on every Store (memory, SQLite with two connections, a real redis-server with two
// clients): open credits the deposit once, bearer draws, top-ups credit once and one session only, close
// refunds the unspent part once to the return invoice bound at open (paid by the real dev wallet), concurrent
// closes and draws never pay drawn money, a record moved to another session, scope or invoice is refused.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryStore } from '../../src/store/memory-store.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { RedisStore } from '../../src/store/redis-store.js';
import type { Store } from '../../src/store/store.js';
import { DevWallet } from '../../src/rails/lightning/dev/dev-wallet.js';
import { checkSession, closedSession, closeSession, expireSession, openSession, topUpSession, type SessionLedgerDeps } from '../../src/policy/mpp-session-ledger.js';
import { storeKeys } from '../../src/policy/store-keys.js';
import { Cleanup, requireTool, startRedis } from '../integration/harness.js';

const cleanup = new Cleanup();
after(() => cleanup.run());
const dir = mkdtempSync(join(tmpdir(), 'l402-mpps-'));
cleanup.add(() => rmSync(dir, { recursive: true, force: true }));
const wallet = DevWallet.open(join(dir, 'wallet'));
cleanup.add(() => wallet.close());
const MASTER = randomBytes(32);

const makers: Array<[string, () => Promise<[Store, Store]>, string | false]> = [
  ['memory', async () => { const s = new MemoryStore(); return [s, s]; }, false],
  ['sqlite', async () => { const f = join(dir, `s${Math.random()}.db`); return [new SqliteStore(f), new SqliteStore(f)]; }, false],
  [
    'redis',
    async () => {
      const r = cleanup.use(await startRedis());
      const a = new RedisStore(r.url, 'test:', 2000);
      const b = new RedisStore(r.url, 'test:', 2000);
      await a.ping();
      await b.ping();
      return [a, b];
    },
    requireTool('redis-server') ? false : 'redis-server not installed',
  ],
];

const hash = () => createHash('sha256').update(randomBytes(32)).digest('hex');
const deps = (store: Store, over: Partial<SessionLedgerDeps> = {}): SessionLedgerDeps => ({
  store,
  masters: [MASTER],
  storeTimeoutMs: 2000,
  payInvoice: (r) => wallet.payInvoice(r),
  ...over,
});

for (const [name, make, skip] of makers) {
  test(`${name}: open, bearer draws, top-up, close refunds the unspent part once to the bound return invoice`, { skip }, async () => {
    const [s, t] = await make();
    cleanup.add(async () => { await s.close(); if (t !== s) await t.close(); });
    const a = deps(s);
    const b = deps(t);
    const id = hash();
    const ret = wallet.createAmountlessInvoice({ memo: 'refund', expirySecs: 86_400 });
    assert.deepEqual(await openSession(a, { sessionId: id, scopeId: '/api', returnInvoice: ret.bolt11, depositMsat: 100_000 }), { ok: true, credited: true, balanceMsat: 100_000 });
    // A repeated open (the client's retry, another process) credits nothing more and keeps the first return invoice.
    const other = wallet.createAmountlessInvoice({ memo: 'thief', expirySecs: 86_400 });
    assert.deepEqual(await openSession(b, { sessionId: id, scopeId: '/api', returnInvoice: other.bolt11, depositMsat: 100_000 }), { ok: true, credited: false, balanceMsat: 100_000 });
    assert.deepEqual(await checkSession(b, id, '/other'), { ok: false, failure: 'session_not_found' });
    assert.deepEqual(await checkSession(b, hash(), '/api'), { ok: false, failure: 'session_not_found' });
    const c = await checkSession(b, id, '/api');
    assert.ok(c.ok);
    for (let i = 0; i < 3; i++) assert.equal((await t.drawBalance(c.balanceKey, 7000, `r${i}`, 'o', 60)).ok, true);
    // Top-up: a new deposit, once; never the open deposit again, never to a second session.
    const up = hash();
    assert.deepEqual(await topUpSession(a, { sessionId: id, scopeId: '/api', depositHash: up, depositMsat: 50_000 }), { ok: true, credited: true, balanceMsat: 129_000 });
    assert.deepEqual(await topUpSession(b, { sessionId: id, scopeId: '/api', depositHash: up, depositMsat: 50_000 }), { ok: true, credited: false, balanceMsat: 129_000 }, 'credited once');
    const second = hash();
    assert.deepEqual(await openSession(a, { sessionId: second, scopeId: '/api', returnInvoice: other.bolt11, depositMsat: 10_000 }), { ok: true, credited: true, balanceMsat: 10_000 });
    assert.deepEqual(await topUpSession(a, { sessionId: second, scopeId: '/api', depositHash: up, depositMsat: 50_000 }), { ok: false, failure: 'unknown_challenge' });
    assert.deepEqual(await topUpSession(a, { sessionId: second, scopeId: '/api', depositHash: id, depositMsat: 100_000 }), { ok: false, failure: 'unknown_challenge' });
    assert.deepEqual(await openSession(a, { sessionId: up, scopeId: '/api', returnInvoice: other.bolt11, depositMsat: 50_000 }), { ok: false, failure: 'unknown_challenge' }, 'a top-up deposit opens no session');
    // Close: 129 sat unspent, paid to the invoice bound at the first open; twice refunds once.
    assert.deepEqual(await closeSession(b, { sessionId: id, scopeId: '/api' }), { ok: true, refundSats: 129, refundStatus: 'succeeded' });
    assert.equal(wallet.paidMsat(ret.paymentHash), 129_000);
    assert.equal(wallet.paidMsat(other.paymentHash), undefined);
    assert.deepEqual(await closeSession(a, { sessionId: id, scopeId: '/api' }), { ok: false, failure: 'session_closed' });
    assert.deepEqual(await checkSession(a, id, '/api'), { ok: false, failure: 'session_closed' });
    assert.deepEqual(await topUpSession(a, { sessionId: id, scopeId: '/api', depositHash: hash(), depositMsat: 1000 }), { ok: false, failure: 'session_closed' });
    assert.deepEqual(await openSession(a, { sessionId: id, scopeId: '/api', returnInvoice: ret.bolt11, depositMsat: 100_000 }), { ok: false, failure: 'session_closed' }, 'never reopened');
    assert.equal(await s.getBalance(storeKeys.mppSessionBalance(id)), 0);
  });

  test(`${name}: concurrent closes and draws: one refund, of exactly what the draws left`, { skip }, async () => {
    const [s, t] = await make();
    cleanup.add(async () => { await s.close(); if (t !== s) await t.close(); });
    for (let round = 0; round < 5; round++) {
      const id = hash();
      const ret = wallet.createAmountlessInvoice({ memo: 'refund', expirySecs: 86_400 });
      await openSession(deps(s), { sessionId: id, scopeId: 'plan:pro', returnInvoice: ret.bolt11, depositMsat: 60_000 });
      const key = storeKeys.mppSessionBalance(id);
      const draws = Array.from({ length: 12 }, (_, i) => (i % 2 ? s : t).drawBalance(key, 3000, `d${i}`, 'o', 60));
      const closes = Array.from({ length: 4 }, (_, i) => closeSession(deps(i % 2 ? s : t), { sessionId: id, scopeId: 'plan:pro' }));
      const [dr, cl] = await Promise.all([Promise.all(draws), Promise.all(closes)]);
      const drawn = dr.filter((r) => r.ok).length * 3000;
      const won = cl.filter((r) => r.ok);
      assert.equal(won.length, 1, 'exactly one close pays');
      assert.ok(cl.filter((r) => !r.ok).every((r) => !r.ok && r.failure === 'session_closed'));
      const w = won[0] as { refundSats: number; refundStatus: string };
      assert.equal(w.refundSats * 1000 + drawn, 60_000, 'refund plus draws is the deposit: nothing paid twice, nothing lost');
      assert.equal(wallet.paidMsat(ret.paymentHash), w.refundSats > 0 ? w.refundSats * 1000 : undefined);
    }
  });

  test(`${name}: a tampered record is no session; without a paying backend the refund is "failed", the session still closed`, { skip }, async () => {
    const [s, t] = await make();
    cleanup.add(async () => { await s.close(); if (t !== s) await t.close(); });
    const id = hash();
    const ret = wallet.createAmountlessInvoice({ memo: 'refund', expirySecs: 86_400 });
    await openSession(deps(s), { sessionId: id, scopeId: '/api', returnInvoice: ret.bolt11, depositMsat: 5500 });
    const key = storeKeys.mppSession(id);
    const raw = (await s.get(key))!;
    const evil = wallet.createAmountlessInvoice({ memo: 'evil', expirySecs: 86_400 });
    // Someone rewrites the return invoice (or the scope) in the store: the tag no longer binds it.
    for (const forged of [raw.replace(ret.bolt11, evil.bolt11), raw.replace('"/api"', '"/all"')]) {
      assert.ok(await s.replaceIfValue(key, raw, forged));
      assert.deepEqual(await closeSession(deps(s), { sessionId: id, scopeId: '/api' }), { ok: false, failure: 'session_not_found' });
      assert.deepEqual(await closeSession(deps(s), { sessionId: id, scopeId: '/all' }), { ok: false, failure: 'session_not_found' });
      assert.ok(await s.replaceIfValue(key, forged, raw));
    }
    assert.deepEqual(await checkSession(deps(s, { masters: [randomBytes(32)] }), id, '/api'), { ok: false, failure: 'session_not_found' }, 'another master key');
    assert.ok((await checkSession(deps(s, { masters: [randomBytes(32), MASTER] }), id, '/api')).ok, 'a previous master key still verifies');
    const failed: Array<[string, number]> = [];
    assert.deepEqual(await closeSession(deps(s, { payInvoice: undefined, onRefundFailed: (sid, sats) => failed.push([sid, sats]) }), { sessionId: id, scopeId: '/api' }), { ok: true, refundSats: 5, refundStatus: 'failed' });
    assert.deepEqual(failed, [[id, 5]]);
    assert.equal(wallet.paidMsat(ret.paymentHash), undefined);
    assert.equal(wallet.paidMsat(evil.paymentHash), undefined);
    assert.deepEqual(await checkSession(deps(s), id, '/api'), { ok: false, failure: 'session_closed' });
    // Nothing left: skipped, and no payment attempted.
    const empty = hash();
    await openSession(deps(s), { sessionId: empty, scopeId: '/api', returnInvoice: ret.bolt11, depositMsat: 1000 });
    assert.equal((await s.drawBalance(storeKeys.mppSessionBalance(empty), 1000, 'x', 'o', 60)).ok, true);
    let attempts = 0;
    assert.deepEqual(await closeSession(deps(s, { payInvoice: async () => { attempts++; } }), { sessionId: empty, scopeId: '/api' }), { ok: true, refundSats: 0, refundStatus: 'skipped' });
    assert.equal(attempts, 0);
  });
  test(`${name}: a top-up racing a close never credits a closed session: undone (its deposit usable again) or refunded`, { skip }, async () => {
    const [s, t] = await make();
    cleanup.add(async () => { await s.close(); if (t !== s) await t.close(); });
    for (const closeFirst of [true, false]) {
      const id = hash();
      const ret = wallet.createAmountlessInvoice({ memo: 'refund', expirySecs: 86_400 });
      await openSession(deps(s), { sessionId: id, scopeId: '/api', returnInvoice: ret.bolt11, depositMsat: 10_000 });
      const up = hash();
      let closed: Awaited<ReturnType<typeof closeSession>> | undefined;
      // The top-up found the session open; the close (another process) runs while its credit is on its way:
      // before the credit lands (closeFirst), or after it landed and before the top-up looks again.
      const racing = new Proxy(t, {
        get(target, prop, recv) {
          if (prop !== 'creditBalance') return Reflect.get(target, prop, recv) as unknown;
          return async (key: string, msat: number, creditId: string, ttl?: number) => {
            if (creditId !== `deposit:${up}`) return target.creditBalance(key, msat, creditId, ttl);
            if (closeFirst) closed = await closeSession(deps(s), { sessionId: id, scopeId: '/api' });
            const r = await target.creditBalance(key, msat, creditId, ttl);
            if (!closeFirst) closed = await closeSession(deps(s), { sessionId: id, scopeId: '/api' });
            return r;
          };
        },
      });
      assert.deepEqual(await topUpSession(deps(racing), { sessionId: id, scopeId: '/api', depositHash: up, depositMsat: 5000 }), { ok: false, failure: 'session_closed' });
      assert.equal(await s.getBalance(storeKeys.mppSessionBalance(id)), 0, 'nothing stays on a closed session');
      if (closeFirst) {
        assert.deepEqual(closed, { ok: true, refundSats: 10, refundStatus: 'succeeded' });
        assert.equal(await s.get(storeKeys.mppDeposit(up)), undefined, 'the deposit was given back: it can open a session');
        const fresh = await openSession(deps(s), { sessionId: up, scopeId: '/api', returnInvoice: wallet.createAmountlessInvoice({ memo: 'r', expirySecs: 86_400 }).bolt11, depositMsat: 5000 });
        assert.deepEqual(fresh, { ok: true, credited: true, balanceMsat: 5000 });
      } else {
        assert.deepEqual(closed, { ok: true, refundSats: 15, refundStatus: 'succeeded' }, 'the top-up was part of the refund');
        assert.equal(await s.get(storeKeys.mppDeposit(up)), id);
      }
      assert.deepEqual(await closedSession(deps(t), id, '/api'), { refundSats: closeFirst ? 10 : 15, refundStatus: 'succeeded' });
      assert.equal(await closedSession(deps(t), id, '/other'), undefined);
    }
  });
  test(`${name}: an idle session is refused as closed and closed by the server with its refund, once`, { skip }, async () => {
    const [s, t] = await make();
    cleanup.add(async () => { await s.close(); if (t !== s) await t.close(); });
    const a = deps(s, { idleSecs: 600 });
    const b = deps(t, { idleSecs: 600 });
    const id = hash();
    const ret = wallet.createAmountlessInvoice({ memo: 'refund', expirySecs: 86_400 });
    await openSession(a, { sessionId: id, scopeId: '/api', returnInvoice: ret.bolt11, depositMsat: 9000 });
    assert.equal(await expireSession(b, id), 'active');
    assert.ok((await checkSession(b, id, '/api')).ok);
    assert.equal((await t.drawBalance(storeKeys.mppSessionBalance(id), 2000, 'r1', 'o', 60)).ok, true);
    // A session younger than its idle timeout is never idle (a concurrent open's mark may be on its way).
    await s.del(storeKeys.mppActive(id));
    assert.ok((await checkSession(b, id, '/api')).ok);
    // The idle timeout passes: the activity mark expires, the session is older (set back here rather than waited for).
    await s.del(storeKeys.mppActive(id));
    const raw = (await s.get(storeKeys.mppSession(id)))!;
    assert.ok(await s.replaceIfValue(storeKeys.mppSession(id), raw, raw.replace(/"at":(\d+)/, (_m, at: string) => `"at":${Number(at) - 3600}`)));
    assert.deepEqual(await checkSession(b, id, '/api'), { ok: false, failure: 'session_closed' });
    assert.deepEqual(await topUpSession(a, { sessionId: id, scopeId: '/api', depositHash: hash(), depositMsat: 1000 }), { ok: false, failure: 'session_closed' });
    assert.equal(wallet.paidMsat(ret.paymentHash), undefined, 'refused, not closed yet');
    const closes = await Promise.all([expireSession(a, id), expireSession(b, id), expireSession(a, id)]);
    assert.deepEqual(closes.filter((r) => typeof r === 'object'), [{ refundSats: 7, refundStatus: 'succeeded' }], 'one server close pays');
    assert.equal(wallet.paidMsat(ret.paymentHash), 7000);
    assert.equal(await expireSession(b, id), 'not_open');
    assert.deepEqual(await closeSession(b, { sessionId: id, scopeId: '/api' }), { ok: false, failure: 'session_closed' });
    assert.equal(await expireSession(deps(s), hash()), 'not_open');
    // Without an idle timeout nothing is ever idle.
    const keep = hash();
    await openSession(deps(s), { sessionId: keep, scopeId: '/api', returnInvoice: ret.bolt11, depositMsat: 1000 });
    assert.equal(await expireSession(deps(s), keep), 'active');
  });
}

// Prepaid balances in every Store (memory, SQLite, a real redis-server): idempotent credits, atomic draws
// that never overdraw, draws recorded by request and given back once.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryStore } from '../../src/store/memory-store.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { RedisStore } from '../../src/store/redis-store.js';
import type { Store } from '../../src/store/store.js';
import { sleep } from '../../src/util/timeout.js';
import { Cleanup, requireTool, startRedis } from '../integration/harness.js';

const cleanup = new Cleanup();
after(() => cleanup.run());
let dir: string | undefined;
const tmp = () => {
  if (!dir) {
    dir = mkdtempSync(join(tmpdir(), 'l402-bal-'));
    cleanup.add(() => rmSync(dir!, { recursive: true, force: true }));
  }
  return dir;
};

const makers: Array<[string, () => Promise<[Store, Store]>, string | false]> = [
  ['memory', async () => { const s = new MemoryStore(); return [s, s]; }, false],
  [
    'sqlite',
    // Two connections to one file: what two l402d processes sharing it see.
    async () => { const f = join(tmp(), `s${Math.random()}.db`); return [new SqliteStore(f), new SqliteStore(f)]; },
    false,
  ],
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

for (const [name, make, skip] of makers) {
  test(`${name} store: balance credits once per id, draws never overdraw, refunds once`, { skip }, async () => {
    const [s, t] = await make();
    cleanup.add(async () => { await s.close(); if (t !== s) await t.close(); });
    const k = 'balance:{aa}';
    assert.equal(await s.getBalance(k), 0);
    assert.deepEqual(await s.drawBalance(k, 1, 'd0', 'o', 60), { ok: false, balanceMsat: 0 });
    assert.deepEqual(await s.creditBalance(k, 10_000, 'pay1'), { credited: true, balanceMsat: 10_000 });
    assert.deepEqual(await t.creditBalance(k, 10_000, 'pay1'), { credited: false, balanceMsat: 10_000 }, 'a payment is credited once');
    assert.deepEqual(await s.drawBalance(k, 3000, 'd1', 'o1', 60), { ok: true, balanceMsat: 7000 });
    // The same draw id (nginx's retry of one request) draws once; the record passes to the new owner.
    assert.deepEqual(await t.drawBalance(k, 3000, 'd1', 'o2', 60), { ok: true, balanceMsat: 7000 });
    assert.deepEqual(await s.refundDraw(k, 'd1', 'o1'), { refunded: false, balanceMsat: 7000 }, 'a superseded owner cannot give it back');
    assert.deepEqual(await s.refundDraw(k, 'd1'), { refunded: true, balanceMsat: 10_000 });
    assert.deepEqual(await t.refundDraw(k, 'd1'), { refunded: false, balanceMsat: 10_000 }, 'given back once');
    assert.deepEqual(await s.refundDraw(k, 'never'), { refunded: false, balanceMsat: 10_000 });
    // The same request at a higher price (nginx redirected it internally to a dearer route of the plan): only the
    // difference is drawn, and a refund gives back the whole; at a lower price nothing more is drawn.
    assert.deepEqual(await s.drawBalance(k, 1000, 'r1', 'o1', 60), { ok: true, balanceMsat: 9000 });
    assert.deepEqual(await t.drawBalance(k, 4000, 'r1', 'o2', 60), { ok: true, balanceMsat: 6000 });
    assert.deepEqual(await s.drawBalance(k, 2000, 'r1', 'o3', 60), { ok: true, balanceMsat: 6000 });
    assert.deepEqual(await s.refundDraw(k, 'r1', 'o2'), { refunded: false, balanceMsat: 6000 }, 'the record passed to o3');
    assert.deepEqual(await s.refundDraw(k, 'r1'), { refunded: true, balanceMsat: 10_000 }, 'the whole 4000 given back');
    // A difference that is not left: not served at that price, so the earlier draw goes back with its record.
    assert.deepEqual(await s.drawBalance(k, 9000, 'r2', 'o', 60), { ok: true, balanceMsat: 1000 });
    assert.deepEqual(await t.drawBalance(k, 10_500, 'r2', 'o', 60), { ok: false, balanceMsat: 10_000 });
    assert.deepEqual(await s.refundDraw(k, 'r2'), { refunded: false, balanceMsat: 10_000 }, 'nothing left to give back');
    assert.deepEqual(await s.drawBalance(k, 10_000, 'r2', 'o', 60), { ok: true, balanceMsat: 0 }, 'drawn afresh');
    assert.deepEqual(await s.refundDraw(k, 'r2'), { refunded: true, balanceMsat: 10_000 });
    // A storm of draws from two connections: exactly floor(10000/700) = 14 succeed, nothing is lost.
    const results = await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 ? s : t).drawBalance(k, 700, `storm${i}`, 'o', 60)));
    assert.equal(results.filter((r) => r.ok).length, 14);
    assert.equal(await s.getBalance(k), 10_000 - 14 * 700);
    assert.ok(results.every((r) => r.balanceMsat >= 0));
    // Concurrent top-up and draws: every credit lands, every successful draw is taken.
    const mixed = await Promise.all([
      ...Array.from({ length: 10 }, (_, i) => s.drawBalance(k, 100, `mix${i}`, 'o', 60).then((r) => (r.ok ? -100 : 0))),
      t.creditBalance(k, 5000, 'pay2').then((r) => (r.credited ? 5000 : 0)),
      s.creditBalance(k, 5000, 'pay2').then((r) => (r.credited ? 5000 : 0)),
    ]);
    assert.equal(await t.getBalance(k), 200 + mixed.reduce((a: number, b) => a + b, 0));
    assert.equal(mixed.filter((x) => x === 5000).length, 1);
    // A balance with a lifetime expires (and is not brought back by a late refund).
    assert.deepEqual(await s.creditBalance('balance:{bb}', 500, 'p', 1), { credited: true, balanceMsat: 500 });
    assert.equal((await s.drawBalance('balance:{bb}', 100, 'x', 'o', 60)).ok, true);
    await sleep(1100);
    assert.equal(await t.getBalance('balance:{bb}'), 0);
    assert.equal((await t.refundDraw('balance:{bb}', 'x')).refunded, false);
    assert.equal(await t.getBalance('balance:{bb}'), 0);
  });
}

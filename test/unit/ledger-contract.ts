// What every store's ledger must do (memory, SQLite: test/unit/revocation-ledger.test.ts; Redis:
// test/integration/ledger-redis.test.ts).
import assert from 'node:assert/strict';
import { bucketOf, EARNINGS_BUCKET_MS, type Ledger, type Sale } from '../../src/store/ledger.js';

export const hex = (c: string) => c.repeat(64);

export async function ledgerContract(ledger: Ledger): Promise<void> {
  const now = Date.now();
  const a: Sale = { id: hex('a'), rail: 'lightning', route: '/premium', amountMsat: 10_000, at: now - 2 * EARNINGS_BUCKET_MS, paymentHash: hex('1'), access: 'per-request' };
  const b: Sale = { id: hex('b'), rail: 'lightning', route: '/forever', amountMsat: 2_000, at: now - 1000, paymentHash: hex('2'), validUntil: Math.floor(now / 1000) + 60, access: 'indefinite' };
  const c: Sale = { id: 'cashu:0011', rail: 'cashu', route: '/premium', amountMsat: 10_000, at: now };
  assert.equal((await ledger.recordSales([a]))[0], true);
  assert.equal((await ledger.recordSales([b]))[0], true);
  assert.equal((await ledger.recordSales([{ ...b, amountMsat: 999_999 }]))[0], false, 'one sale per id');
  assert.equal((await ledger.recordSales([c]))[0], true);
  assert.deepEqual((await ledger.recentSales(10)).map((s) => s.id), [c.id, b.id, a.id]);
  assert.deepEqual((await ledger.recentSales(1)).map((s) => s.id), [c.id]);
  assert.deepEqual(await ledger.findSale(hex('2')), b, 'by payment hash');
  assert.deepEqual(await ledger.findSale(a.id), a, 'by id');
  assert.equal(await ledger.findSale(hex('f')), undefined);
  const rows = await ledger.earnings(now - 3 * EARNINGS_BUCKET_MS);
  const sum = (f: (r: (typeof rows)[number]) => boolean) => rows.filter(f).reduce((x, r) => x + r.msat, 0);
  assert.equal(sum(() => true), 22_000, 'the duplicate added nothing');
  assert.equal(sum((r) => r.route === '/premium'), 20_000);
  assert.equal(sum((r) => r.rail === 'cashu'), 10_000);
  assert.equal(rows.reduce((x, r) => x + r.sales, 0), 3);
  assert.equal(sum((r) => r.bucket >= now - EARNINGS_BUCKET_MS - (now % EARNINGS_BUCKET_MS)), 12_000, 'bucketed by hour');
  // A batch: each answered in order; a repeat inside the batch is recorded once.
  const d: Sale = { id: hex('d'), rail: 'lightning', route: '/forever', amountMsat: 1, at: now + 1, paymentHash: hex('4'), access: 'timed' };
  assert.deepEqual(await ledger.recordSales([a, d, { ...d, amountMsat: 5 }]), [false, true, false]);
  assert.deepEqual(await ledger.recordSales([]), []);
  assert.deepEqual((await ledger.recentSales(10)).map((s) => s.id), [d.id, c.id, b.id, a.id]);
  assert.equal((await ledger.earnings(now - 3 * EARNINGS_BUCKET_MS)).reduce((x, r) => x + r.msat, 0), 22_001, 'the batch added its one new sale once');
  // One batch over two hours and two routes: each (hour, route, rail) row gets exactly its own sales.
  const e1: Sale = { id: hex('e'), rail: 'lightning', route: '/premium', amountMsat: 100, at: now - 500, access: 'per-request' };
  const e2: Sale = { ...e1, id: hex('8'), amountMsat: 200 };
  const e3: Sale = { ...e1, id: hex('7'), amountMsat: 400, at: now - 2 * EARNINGS_BUCKET_MS };
  const e4: Sale = { ...e1, id: hex('6'), amountMsat: 800, route: '/forever' };
  const e5: Sale = { ...e3, id: hex('5'), amountMsat: 1600 };
  assert.deepEqual(await ledger.recordSales([e1, e2, e3, e4, e1, e5]), [true, true, true, true, false, true]);
  const after = await ledger.earnings(now - 3 * EARNINGS_BUCKET_MS);
  const all = [a, b, c, d, e1, e2, e3, e4, e5];
  for (const s of [e1, e3, e4]) {
    const mine = all.filter((x) => x.route === s.route && x.rail === s.rail && bucketOf(x.at) === bucketOf(s.at));
    const got = after.filter((r) => r.route === s.route && r.rail === s.rail && r.bucket === bucketOf(s.at));
    assert.deepEqual(got.map((r) => [r.msat, r.sales]), [[mine.reduce((x, m) => x + m.amountMsat, 0), mine.length]], `${s.route} at ${s.at}`);
  }

  const g0 = await ledger.revocationGeneration();
  assert.equal(await ledger.revoke({ value: b.id, at: now, until: b.validUntil! + 300 }), true);
  assert.equal(await ledger.revoke({ value: b.id, at: now + 1 }), false, 'already revoked');
  const g1 = await ledger.revocationGeneration();
  assert.notEqual(g1, g0, 'a revocation changes the generation');
  assert.equal(await ledger.revoke({ value: hex('9'), at: now + 5, until: Math.floor(now / 1000) - 10 }), true);
  const { generation, list } = await ledger.revocations();
  assert.notEqual(generation, g1);
  assert.deepEqual(list.map((r) => r.value), [b.id], 'an entry past its credential\'s expiry is not in force');
}

// Sales are written in batches off the request path (server/sales.ts). At shutdown (Gate.close, before the
// store closes) drain() must leave nothing behind: neither the batch still waiting for its timer nor sales
// whose earlier write failed and wait for a retry. And a sale is counted once, whatever is retried.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { SalesRecorder } from '../../src/server/sales.js';
import { createLogger } from '../../src/util/log.js';
import { PartialSalesError, type Sale } from '../../src/store/ledger.js';
import type { Metrics } from '../../src/server/metrics.js';

const quiet = createLogger('silent', new Writable({ write: (_c, _e, cb) => cb() }));
/** Lets the failed write settle (a few event-loop turns, bounded). */
async function settled(rec: SalesRecorder): Promise<void> {
  for (let i = 0; i < 50 && rec.pending === 0; i++) await new Promise((r) => setImmediate(r));
}
const sale = (n: number): Sale => ({ id: `${n}`.padStart(64, '0'), rail: 'lightning', route: 'r', amountMsat: 1000, at: Date.now() });

test('drain() at shutdown writes the pending batch and the sales waiting for a retry, each once', async () => {
  const store = new SqliteStore(':memory:');
  const ledger = store.ledger();
  const real = ledger.recordSales.bind(ledger);
  let failNext = 1;
  ledger.recordSales = async (s) => {
    if (failNext-- > 0) throw new Error('store busy');
    return real(s);
  };
  const rec = new SalesRecorder(ledger, 1000, quiet);
  try {
    // One sale whose write fails (kept for a retry), and nothing else happens before shutdown.
    rec.note(sale(1));
    rec.flush();
    await settled(rec);
    assert.equal(rec.pending, 1, 'the failed sale waits for a retry');
    await rec.drain();
    assert.deepEqual((await ledger.recentSales(10)).map((s) => s.id).sort(), [sale(1).id]);

    // A failed sale, then a sale noted just before shutdown (its batch timer not fired yet).
    failNext = 1;
    rec.note(sale(2));
    rec.flush();
    await settled(rec);
    rec.note(sale(3));
    await rec.drain();
    assert.deepEqual((await ledger.recentSales(10)).map((s) => s.id).sort(), [1, 2, 3].map((n) => sale(n).id));
    assert.equal(rec.pending, 0);
  } finally {
    await store.close();
  }
});

test('a batch the store wrote only in part: the written sales are counted once, only the others are tried again', async () => {
  const store = new SqliteStore(':memory:');
  const ledger = store.ledger();
  const real = ledger.recordSales.bind(ledger);
  let failSecond = true;
  // As Redis does when one sale's script fails: the others are written, and the error says which.
  ledger.recordSales = async (s) => {
    if (!failSecond || s.length < 2) return real(s);
    failSecond = false;
    const first = await real([s[0]!]);
    throw new PartialSalesError('one script failed', [first[0], undefined, ...(await real(s.slice(2)))]);
  };
  const counted: Array<[string, number | undefined]> = [];
  const metrics = { inc: (name: string, _l: unknown, by?: number) => void counted.push([name, by]) } as unknown as Metrics;
  const rec = new SalesRecorder(ledger, 1000, quiet, () => metrics);
  try {
    rec.note(sale(1));
    rec.note(sale(2));
    rec.note(sale(3));
    rec.flush();
    await settled(rec);
    assert.equal(rec.pending, 1, 'only the failed sale waits for a retry');
    await rec.drain();
    assert.deepEqual((await ledger.recentSales(10)).map((s) => s.id).sort(), [1, 2, 3].map((n) => sale(n).id));
    assert.equal(counted.filter(([n]) => n === 'l402_sales_total').length, 3, 'each sale counted once');
    assert.equal(counted.filter(([n]) => n === 'l402_revenue_msat_total').reduce((x, [, by]) => x + (by ?? 0), 0), 3000);
  } finally {
    await store.close();
  }
});
